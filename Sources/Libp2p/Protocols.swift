import Foundation
import Identity
import Support
import Wire

/// multistream-select on a Yamux stream.
enum StreamNegotiation {
    static func readMessage(_ s: Libp2pStream) async throws -> String? {
        guard let len = try await s.readUvarint() else { return nil }
        guard len >= 1, len <= UInt64(Multistream.maxMessage) else { throw Libp2pError.protocolViolation("multistream message length \(len)") }
        let body = try await s.readExactly(Int(len))
        guard body.last == 0x0a, let text = String(bytes: body.dropLast(), encoding: .utf8) else {
            throw Libp2pError.protocolViolation("multistream message not newline-terminated text")
        }
        return text
    }

    /// Initiator: propose protocols in order; returns the accepted one.
    static func select(_ s: Libp2pStream, _ protocols: [String]) async throws -> String {
        try await s.write(Multistream.encode(Multistream.protocolID) + Multistream.encode(protocols[0]))
        guard let header = try await readMessage(s) else { throw Libp2pError.connectionClosed("stream closed during negotiation") }
        guard header == Multistream.protocolID else { throw Libp2pError.protocolViolation("bad multistream header \(header.prefix(40))") }
        var i = 0
        while true {
            guard let resp = try await readMessage(s) else { throw Libp2pError.connectionClosed("stream closed during negotiation") }
            if resp == protocols[i] { return resp }
            guard resp == Multistream.na else { throw Libp2pError.protocolViolation("unexpected multistream reply \(resp.prefix(40))") }
            i += 1
            guard i < protocols.count else { throw Libp2pError.protocolNotSupported(protocols) }
            try await s.write(Multistream.encode(protocols[i]))
        }
    }
}

/// Built-in protocols: identify, ping, perf, and an echo protocol for tests.
public enum Protocols {
    public static let identify = "/ipfs/id/1.0.0"
    public static let ping = "/ipfs/ping/1.0.0"
    public static let perf = "/perf/1.0.0"
    public static let echo = "/p2pos/echo/1.0.0"

    /// Echo 32-byte ping payloads until the stream ends.
    static func servePing(_ s: Libp2pStream) async {
        do {
            while true {
                var buf: [UInt8] = []
                while buf.count < 32 {
                    guard let chunk = try await s.read(maxLength: 32 - buf.count) else { return }
                    buf += chunk
                }
                try await s.write(buf)
            }
        } catch {}
    }

    /// One ping on an open ping stream: round-trip seconds.
    public static func pingOnce(_ s: Libp2pStream) async throws -> Double {
        let payload = Sodium.randomBytes(32)
        let t0 = Monotonic.nanos()
        try await s.write(payload)
        let back = try await s.readExactly(32)
        let rtt = Double(Monotonic.nanos() - t0) / 1e9
        guard back == payload else { throw Libp2pError.protocolViolation("ping reply differs from request") }
        return rtt
    }

    static let zeros = [UInt8](repeating: 0, count: 1 << 20)

    /// Perf server: read the requested download size, swallow the upload, then send that many bytes.
    static func servePerf(_ s: Libp2pStream) async {
        do {
            let hdr = try await s.readExactly(8)
            var n: UInt64 = 0
            for b in hdr { n = n << 8 | UInt64(b) }
            while try await s.discard() > 0 {}
            try await sendZeros(s, n)
            try await s.closeWrite()
        } catch {
            s.reset()
        }
    }

    static func sendZeros(_ s: Libp2pStream, _ count: UInt64) async throws {
        var left = count
        while left > 0 {
            let k = Int(min(left, UInt64(zeros.count)))
            try await s.write(k == zeros.count ? zeros : Array(zeros[0..<k]))
            left -= UInt64(k)
        }
    }

    /// Perf client on an open `/perf/1.0.0` stream: upload then download; returns seconds for each phase.
    public static func perfClient(_ s: Libp2pStream, upload: UInt64, download: UInt64) async throws -> (upload: Double, download: Double) {
        var hdr = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { hdr[i] = UInt8(truncatingIfNeeded: download >> (56 - 8 * UInt64(i))) }
        let t0 = Monotonic.nanos()
        try await s.write(hdr)
        try await sendZeros(s, upload)
        try await s.closeWrite()
        let t1 = Monotonic.nanos()
        var got: UInt64 = 0
        while true {
            let n = try await s.discard()
            if n == 0 { break }
            got += UInt64(n)
        }
        let t2 = Monotonic.nanos()
        guard got == download else { throw Libp2pError.protocolViolation("perf: expected \(download) bytes, got \(got)") }
        return (Double(t1 - t0) / 1e9, Double(t2 - t1) / 1e9)
    }

    /// Echo everything back until the remote closes, then close.
    public static func serveEcho(_ s: Libp2pStream) async {
        do {
            while let chunk = try await s.read(maxLength: 1 << 20) { try await s.write(chunk) }
            try await s.closeWrite()
        } catch {
            s.reset()
        }
    }
}
