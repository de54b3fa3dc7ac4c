// Compact binary codec for Raft messages and configuration entries (see docs/raft.md).

/// Why bytes could not be decoded.
public enum RaftCodecError: Error, Equatable, Sendable {
    case tooLarge(Int)
    case truncated
    case unsupportedVersion(UInt8)
    case unknownMessageType(UInt8)
    case badVarint
    case badString
    case invalid(String)
    case trailingBytes(Int)
}

struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func blob(_ b: [UInt8]) {
        varint(UInt64(b.count))
        bytes.append(contentsOf: b)
    }

    mutating func string(_ s: String) { blob(Array(s.utf8)) }
}

struct ByteReader {
    let bytes: [UInt8]
    var pos = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - pos }

    mutating func u8() throws(RaftCodecError) -> UInt8 {
        guard pos < bytes.count else { throw .truncated }
        defer { pos += 1 }
        return bytes[pos]
    }

    mutating func varint() throws(RaftCodecError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try u8()
            if shift == 63 && b > 1 { throw .badVarint }
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 {
                // Reject non-minimal encodings (a trailing zero byte) so every value has one form.
                if b == 0 && shift > 0 { throw .badVarint }
                return result
            }
            shift += 7
            if shift > 63 { throw .badVarint }
        }
    }

    mutating func count(max: Int) throws(RaftCodecError) -> Int {
        let v = try varint()
        guard v <= UInt64(max) else { throw .invalid("count \(v) exceeds \(max)") }
        return Int(v)
    }

    mutating func blob(max: Int) throws(RaftCodecError) -> [UInt8] {
        let n = try count(max: max)
        guard n <= remaining else { throw .truncated }
        defer { pos += n }
        return Array(bytes[pos..<(pos + n)])
    }

    mutating func string(max: Int = RaftMessage.maxNodeIDBytes) throws(RaftCodecError) -> String {
        let b = try blob(max: max)
        guard let s = String(validating: b, as: UTF8.self) else { throw .badString }
        return s
    }
}

extension ConfState {
    /// Binary form used as the data of `.config` entries and inside snapshot metadata.
    public func encode() -> [UInt8] {
        var w = ByteWriter()
        encode(into: &w)
        return w.bytes
    }

    func encode(into w: inout ByteWriter) {
        w.varint(UInt64(voters.count))
        for v in voters { w.string(v) }
        w.varint(UInt64(learners.count))
        for l in learners { w.string(l) }
    }

    /// Decodes `encode()` output; rejects anything else.
    public static func decode(_ bytes: [UInt8]) throws(RaftCodecError) -> ConfState {
        var r = ByteReader(bytes)
        let c = try decode(from: &r)
        guard r.remaining == 0 else { throw .trailingBytes(r.remaining) }
        return c
    }

    static func decode(from r: inout ByteReader) throws(RaftCodecError) -> ConfState {
        let nv = try r.count(max: RaftMessage.maxMembers)
        var voters: [NodeID] = []
        for _ in 0..<nv { voters.append(try r.string()) }
        let nl = try r.count(max: RaftMessage.maxMembers)
        var learners: [NodeID] = []
        for _ in 0..<nl { learners.append(try r.string()) }
        let c = ConfState(voters: voters, learners: learners)
        // Canonical form only: sorted, unique, disjoint, non-empty IDs.
        guard c.voters == voters, c.learners == learners, !voters.contains(""), !learners.contains("") else {
            throw .invalid("member lists not sorted, unique and disjoint")
        }
        return c
    }
}

extension RaftMessage {
    /// Default upper bound on one encoded message.
    public static let defaultMaxSize = 16 << 20
    public static let maxNodeIDBytes = 256
    public static let maxMembers = 1024
    static let version: UInt8 = 1

    /// Binary encoding: version, type, then the fields (see docs/raft.md).
    public func encode() -> [UInt8] {
        var w = ByteWriter()
        w.bytes.reserveCapacity(64 + entries.reduce(0) { $0 + $1.data.count + 8 } + (snapshot?.data.count ?? 0))
        w.u8(Self.version)
        w.u8(type.rawValue)
        w.string(from)
        w.string(to)
        w.varint(term)
        w.varint(logTerm)
        w.varint(index)
        w.varint(commit)
        w.varint(rejectHint)
        w.varint(context)
        w.u8((reject ? 1 : 0) | (snapshot != nil ? 2 : 0))
        w.varint(UInt64(entries.count))
        for e in entries {
            w.varint(e.term)
            w.varint(e.index)
            w.u8(e.kind.rawValue)
            w.blob(e.data)
        }
        if let s = snapshot {
            w.varint(s.metadata.index)
            w.varint(s.metadata.term)
            s.metadata.conf.encode(into: &w)
            w.varint(s.offset)
            w.varint(s.totalSize)
            w.blob(s.data)
        }
        return w.bytes
    }

    /// Decodes one message; throws on anything malformed, oversized or with trailing bytes.
    public static func decode(_ bytes: [UInt8], maxSize: Int = defaultMaxSize) throws(RaftCodecError) -> RaftMessage {
        guard bytes.count <= maxSize else { throw .tooLarge(bytes.count) }
        var r = ByteReader(bytes)
        let ver = try r.u8()
        guard ver == version else { throw .unsupportedVersion(ver) }
        let t = try r.u8()
        guard let type = MessageType(rawValue: t) else { throw .unknownMessageType(t) }
        let from = try r.string()
        let to = try r.string()
        let term = try r.varint()
        let logTerm = try r.varint()
        let index = try r.varint()
        let commit = try r.varint()
        let rejectHint = try r.varint()
        let context = try r.varint()
        let flags = try r.u8()
        guard flags & ~3 == 0 else { throw .invalid("unknown flags \(flags)") }
        // Each entry takes at least 4 bytes, which bounds the count by the input size.
        let n = try r.count(max: r.remaining / 4)
        var entries: [Entry] = []
        entries.reserveCapacity(n)
        for _ in 0..<n {
            let et = try r.varint()
            let ei = try r.varint()
            let k = try r.u8()
            guard let kind = EntryKind(rawValue: k) else { throw .invalid("entry kind \(k)") }
            let data = try r.blob(max: r.remaining)
            entries.append(Entry(term: et, index: ei, kind: kind, data: data))
        }
        var snap: SnapshotChunk?
        if flags & 2 != 0 {
            let si = try r.varint()
            let st = try r.varint()
            let conf = try ConfState.decode(from: &r)
            let off = try r.varint()
            let total = try r.varint()
            let data = try r.blob(max: r.remaining)
            guard off <= total, UInt64(data.count) <= total - off else { throw .invalid("snapshot chunk out of range") }
            snap = SnapshotChunk(metadata: SnapshotMetadata(index: si, term: st, conf: conf),
                                 offset: off, totalSize: total, data: data)
        }
        guard r.remaining == 0 else { throw .trailingBytes(r.remaining) }
        return RaftMessage(type: type, from: from, to: to, term: term, logTerm: logTerm, index: index,
                           commit: commit, reject: flags & 1 != 0, rejectHint: rejectHint, context: context,
                           entries: entries, snapshot: snap)
    }
}
