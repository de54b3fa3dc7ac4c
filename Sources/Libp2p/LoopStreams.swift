import Foundation
import Identity
import Support
import Wire

/// Listener side of multistream-select, pushed byte chunks on the event loop (no task per
/// stream): answer the header, then up to 16 proposals with `na` until one is supported.
final class ListenNegotiation {
    enum Outcome { case pending, picked(String, rest: [UInt8]), failed(String) }
    private var buf: [UInt8] = []
    private var sawHeader = false
    private var proposals = 0

    /// Feed bytes; `out` receives the bytes to send back.
    func feed(_ chunk: UnsafeBufferPointer<UInt8>, out: inout [UInt8], supports: (String) -> Bool) -> Outcome {
        buf.append(contentsOf: chunk)
        while true {
            let step: (text: String, consumed: Int)?
            do { step = try buf.withUnsafeBufferPointer { try Multistream.decode($0) } } catch {
                return .failed("\(error)")
            }
            guard let (text, consumed) = step else {
                return buf.count > Multistream.maxMessage + 3 ? .failed("multistream message too long") : .pending
            }
            buf.removeFirst(consumed)
            if !sawHeader {
                guard text == Multistream.protocolID else { return .failed("bad multistream header") }
                sawHeader = true
                out += Multistream.encode(Multistream.protocolID)
                continue
            }
            proposals += 1
            guard proposals <= 16 else { return .failed("too many protocol proposals") }
            if text != "ls" && supports(text) {
                out += Multistream.encode(text)
                return .picked(text, rest: buf)
            }
            out += Multistream.encode(Multistream.na)
        }
    }
}

/// A request/response protocol served on the event loop: one `\n`-terminated request line in,
/// one reply out (then FIN). See `Libp2pHost.setLineHandler`.
struct LineHandler: Sendable {
    let maxLength: Int
    let timeout: Double
    let handle: @Sendable (PeerID, [UInt8]) -> [UInt8]?
}

/// Loop-owned state of one stream while it is negotiated or served by a line handler. Holds the
/// user-facing handle so the stream stays open until it is done.
final class LoopStreamState: @unchecked Sendable {
    var stream: Libp2pStream?
    var timer: UInt64 = 0
    var line: [UInt8] = []
    init(_ s: Libp2pStream) { stream = s }
}

extension Libp2pHost {
    /// Serve a request/response protocol on the event loop, without tasks: the remote sends one
    /// `\n`-terminated request of at most `maxLength` bytes; `handle` runs on the loop thread
    /// (it must be quick and must not block) with the authenticated peer and the request line
    /// (without its newline) and returns the reply bytes, sent followed by FIN — or nil to reset
    /// the stream. A request that does not arrive within `timeout` seconds resets the stream.
    public func setLineHandler(_ protocolID: String, maxLength: Int, timeout: Double = 10,
                               _ handle: @escaping @Sendable (PeerID, [UInt8]) -> [UInt8]?) {
        setLineHandlerEntry(protocolID, LineHandler(maxLength: maxLength, timeout: timeout, handle: handle))
    }

    /// Loop thread: negotiate an inbound stream in push mode, then hand it to its handler.
    func negotiateInbound(_ s: Libp2pStream) {
        let core = s.core, conn = core.conn, loop = conn.loop
        let st = LoopStreamState(s)
        let neg = ListenNegotiation()
        st.timer = loop.schedule(after: config.streamNegotiationTimeout) {
            guard let s = st.stream else { return }
            Log.debug("LIBP2P", "stream_negotiation_failed", ["peer_id": s.remotePeer, "reason": "timed out"])
            core.uninstallReceiver(pushBack: [])
            conn.streamReset(core)
            st.stream = nil   // after the reset: dropping the handle would close gracefully
        }
        core.installReceiver({ [weak self] chunk in
            guard let self, let s = st.stream else { return }
            var out: [UInt8] = []
            let outcome = neg.feed(chunk, out: &out) { p in
                guard self.hasHandler(p) else { return false }
                if self.allowed(s.remotePeer, p) { return true }
                Log.debug("LIBP2P", "stream_unauthorized", ["peer_id": s.remotePeer, "protocol": p])
                return false
            }
            if !out.isEmpty { conn.streamSend(core, out, nil) }
            switch outcome {
            case .pending:
                return
            case .failed(let reason):
                loop.cancelTimer(st.timer)
                st.stream = nil
                Log.debug("LIBP2P", "stream_negotiation_failed", ["peer_id": s.remotePeer, "reason": reason])
                core.uninstallReceiver(pushBack: [])
                conn.streamReset(core)
            case .picked(let proto, let rest):
                loop.cancelTimer(st.timer)
                st.stream = nil
                core.protocolID = proto
                self.dispatchNegotiated(s, proto, rest: rest)
            }
        }, closed: { _ in
            loop.cancelTimer(st.timer)
            st.stream = nil
        })
    }

    /// Loop thread: start the handler of a negotiated stream; `rest` arrived after the proposal.
    private func dispatchNegotiated(_ s: Libp2pStream, _ proto: String, rest: [UInt8]) {
        let core = s.core
        if let lh = lineHandler(for: proto) {
            serveLine(s, lh, rest: rest)
            return
        }
        core.uninstallReceiver(pushBack: rest)
        guard let h = handler(for: proto) else { s.reset(); return }
        Task.detached {
            await h(s)
            await s.close()
        }
    }

    /// Loop thread: read one request line, answer it, close.
    private func serveLine(_ s: Libp2pStream, _ lh: LineHandler, rest: [UInt8]) {
        let core = s.core, conn = core.conn, loop = conn.loop
        let st = LoopStreamState(s)
        let peer = s.remotePeer
        st.timer = loop.schedule(after: lh.timeout) {
            guard st.stream != nil else { return }
            conn.streamReset(core)
            st.stream = nil
        }
        func finish(_ reply: [UInt8]?) {
            loop.cancelTimer(st.timer)
            core.uninstallReceiver(pushBack: [])
            if let reply {
                conn.streamSend(core, reply, nil)
                conn.streamCloseWrite(core, full: true, nil)
            } else {
                conn.streamReset(core)
            }
            st.stream = nil   // last: dropping the handle closes the stream
        }
        let receive: (UnsafeBufferPointer<UInt8>) -> Void = { chunk in
            guard st.stream != nil else { return }
            if let nl = chunk.firstIndex(of: 0x0a) {
                st.line.append(contentsOf: chunk[..<nl])
                guard st.line.count <= lh.maxLength else { finish(nil); return }
                finish(lh.handle(peer, st.line))
            } else {
                st.line.append(contentsOf: chunk)
                if st.line.count > lh.maxLength { finish(nil) }
            }
        }
        core.installReceiver(receive, closed: { _ in
            // The remote ended (or reset) before sending a whole line.
            guard st.stream != nil else { return }
            loop.cancelTimer(st.timer)
            conn.streamReset(core)
            st.stream = nil   // after the reset: dropping the handle would close gracefully
        })
        if !rest.isEmpty { rest.withUnsafeBufferPointer { receive($0) } }
    }
}

/// Dialer side of multistream-select for one proposed protocol, pushed byte chunks.
final class SelectNegotiation {
    enum Outcome { case pending, accepted(rest: [UInt8]), failed(Libp2pError) }
    let proposal: String
    private var buf: [UInt8] = []
    private var sawHeader = false
    init(_ proposal: String) { self.proposal = proposal }

    func feed(_ chunk: UnsafeBufferPointer<UInt8>) -> Outcome {
        buf.append(contentsOf: chunk)
        while true {
            let step: (text: String, consumed: Int)?
            do { step = try buf.withUnsafeBufferPointer { try Multistream.decode($0) } } catch {
                return .failed(.protocolViolation("\(error)"))
            }
            guard let (text, consumed) = step else {
                return buf.count > Multistream.maxMessage + 3 ? .failed(.protocolViolation("multistream message too long")) : .pending
            }
            buf.removeFirst(consumed)
            if !sawHeader {
                guard text == Multistream.protocolID else { return .failed(.protocolViolation("bad multistream header \(text.prefix(40))")) }
                sawHeader = true
                continue
            }
            if text == proposal { return .accepted(rest: buf) }
            if text == Multistream.na { return .failed(.protocolNotSupported([proposal])) }
            return .failed(.protocolViolation("unexpected multistream reply \(text.prefix(40))"))
        }
    }
}

extension Libp2pHost {
    /// One request/response exchange with a connected peer, driven on the event loop without
    /// tasks: open a stream, negotiate `protocolID`, send `request` (which should end with a
    /// newline) and FIN, and collect the reply until the remote's FIN (at most `maxReply`
    /// bytes). `completion` runs once, on the loop thread, with the reply or the error.
    /// `optimistic`: send the request right behind the protocol proposal instead of waiting for
    /// the acceptance (one round trip instead of two). Only for a protocol the peer is known to
    /// serve: a peer that answers `na` sees the request as garbage and resets the stream.
    public func requestLine(to peer: PeerID, protocolID: String, request: [UInt8], maxReply: Int = 64 << 10,
                            timeout: Double = 10, optimistic: Bool = false,
                            completion: @escaping @Sendable (Result<[UInt8], Libp2pError>) -> Void) {
        let hc = core
        // A closed host's loop no longer runs queued work: answer here instead of never.
        guard !isClosed else { completion(.failure(.connectionClosed("host is closed"))); return }
        let queued = loop.execute {
            guard let conn = hc.establishedConnection(peer) else { completion(.failure(.notConnected(peer.base58))); return }
            let core: StreamCore
            do { core = try conn.openStream() } catch let e as Libp2pError { completion(.failure(e)); return } catch {
                completion(.failure(.connectionClosed("\(error)"))); return
            }
            let s = Libp2pStream(core)
            let st = LoopStreamState(s)
            let neg = SelectNegotiation(protocolID)
            var accepted = false
            var done = false
            func finish(_ r: Result<[UInt8], Libp2pError>) {
                guard !done else { return }
                done = true
                conn.loop.cancelTimer(st.timer)
                core.uninstallReceiver(pushBack: [])
                if case .failure = r { conn.streamReset(core) } else { conn.streamCloseWrite(core, full: true, nil) }
                st.stream = nil
                completion(r)
            }
            st.timer = conn.loop.schedule(after: timeout) { finish(.failure(.timeout("\(protocolID) request"))) }
            func take(_ bytes: UnsafeBufferPointer<UInt8>) {
                st.line.append(contentsOf: bytes)
                if st.line.count > maxReply { finish(.failure(.tooLarge("reply over \(maxReply) bytes"))) }
            }
            core.installReceiver({ chunk in
                guard !done else { return }
                if accepted { take(chunk); return }
                switch neg.feed(chunk) {
                case .pending: return
                case .failed(let e): finish(.failure(e))
                case .accepted(let rest):
                    accepted = true
                    core.protocolID = protocolID
                    if !optimistic {
                        conn.streamSend(core, request, nil)
                        conn.streamCloseWrite(core, full: false, nil)
                    }
                    if !rest.isEmpty { rest.withUnsafeBufferPointer { take($0) } }
                }
            }, closed: { reset in
                guard !done else { return }
                if reset || !accepted { finish(.failure(reset ? .streamReset : .connectionClosed("stream closed during negotiation"))) }
                else { finish(.success(st.line)) }
            })
            conn.streamSend(core, Multistream.encode(Multistream.protocolID) + Multistream.encode(protocolID) + (optimistic ? request : []), nil)
            if optimistic { conn.streamCloseWrite(core, full: false, nil) }
        }
        if !queued { completion(.failure(.connectionClosed("host is closed"))) }
    }
}
