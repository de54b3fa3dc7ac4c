import Foundation
import Glibc
import Identity
import Support
import Wire

/// What a connection reports to its owner (the host core), on the loop thread.
protocol ConnectionDelegate: AnyObject {
    func connectionEstablished(_ c: Connection)
    func connectionClosed(_ c: Connection, reason: String)
    func inboundStream(_ c: Connection, _ s: StreamCore)
    func streamCountChanged(_ c: Connection)
    /// Whether `peer` is exempt from the inbound stream rate limit (the host's protected peers).
    func isRateExempt(_ peer: PeerID) -> Bool
}

/// Limits applied to each connection.
struct ConnectionLimits {
    var maxStreams = 256
    var writeHighWater = 4 * 1024 * 1024
    var writeLowWater = 1 * 1024 * 1024
    var maxSecurityAttempts = 8
    /// Inbound stream opening rate per connection (token bucket).
    var inboundStreamsPerSecond: Double = 100
    var inboundStreamBurst: Double = 200
    /// Receive windows grow past 256 KiB only while the connection's total growth is below this.
    var maxWindowGrowth = 64 * 1024 * 1024
}

/// One TCP connection upgraded in stages: multistream → Noise → multistream → Yamux.
/// Everything here runs on the owning loop's thread.
final class Connection: FDHandler, @unchecked Sendable {
    enum Stage { case connecting, msSecurity, noise, msMuxer, yamux, closed }

    let fd: Int32
    let loop: EventLoop
    let isDialer: Bool
    let identity: PrivateKey
    weak var delegate: ConnectionDelegate?
    let limits: ConnectionLimits
    /// Peer the dialer expects (from `/p2p/`), checked against the Noise identity.
    let expectedPeer: PeerID?
    let remoteAddr: Multiaddr?
    /// The remote IP (IPv6: its /64) of an inbound connection, for per-IP limits.
    var ipGroup: String? = nil
    /// Closed by the host to make room for another handshake (not the peer's failure).
    var evicted = false
    /// Whether any byte has arrived (a handshake that sent nothing is the first to be dropped).
    private(set) var receivedAny = false
    let localAddr: Multiaddr?
    let serial: UInt64
    let openedAt = Monotonic.nanos()
    /// Last time bytes arrived (keepalive).
    var lastActivity = Monotonic.nanos()
    /// Last time a stream was opened, written or closed (idle timeout; pings do not count).
    var lastStreamActivity = Monotonic.nanos()
    /// When an unanswered keepalive ping was sent.
    var keepaliveSentAt: UInt64? = nil

    private(set) var stage: Stage
    private(set) var remotePeer: PeerID? = nil
    private var hs: NoiseHandshake? = nil
    private var sendCipher: TransportCipher? = nil
    private var recvCipher: TransportCipher? = nil
    private var msHeaderSeen = false
    private var msAttempts = 0

    // Small at rest (idle connections are cheap); they grow under load and shrink when idle.
    private let rawIn = ByteBuffer(capacity: 64 * 1024)
    private let plainIn = ByteBuffer(capacity: 16 * 1024)
    private let plainOut = ByteBuffer(capacity: 16 * 1024)
    private let out = ByteBuffer(capacity: 16 * 1024)
    private var flushScheduled = false
    private var writeInterest = false
    /// Reading stopped because the peer does not read what we owe it (see `onReadable`).
    private var readPaused = false
    private var pumping = false

    // Yamux state.
    private(set) var streams: [UInt32: StreamCore] = [:]
    private var nextStreamID: UInt32
    private var goAwayReceived = false
    private var goAwaySent = false
    /// Data frame being received: stream, bytes left, flags to apply at the end.
    private var inData: (sid: UInt32, left: Int, flags: UInt16)? = nil
    private var blocked: [UInt32] = []
    private var blockedSet = Set<UInt32>()
    private var pingWaiters: [UInt32: (UInt64, (Double) -> Void)] = [:]
    private var nextPing: UInt32 = 1
    /// Sum of receive-window growth granted to live streams (bounded by `limits.maxWindowGrowth`).
    private var windowGrowthTotal = 0
    private lazy var streamTokens: Double = limits.inboundStreamBurst
    private var tokensAt = Monotonic.nanos()
    var draining = false

    static let maxNoiseFrame = 65535
    static let maxNoisePlain = 65535 - 16
    static let maxDataFrame = 64 * 1024 - 12
    init(serial: UInt64, fd: Int32, loop: EventLoop, dialer: Bool, identity: PrivateKey, expected: PeerID?, limits: ConnectionLimits,
         remoteAddr: Multiaddr?, localAddr: Multiaddr?, connecting: Bool) {
        self.fd = fd
        self.loop = loop
        self.isDialer = dialer
        self.identity = identity
        self.expectedPeer = expected
        self.limits = limits
        self.remoteAddr = remoteAddr
        self.localAddr = localAddr
        self.serial = serial
        nextStreamID = dialer ? 1 : 2
        stage = connecting ? .connecting : .msSecurity
    }

    var isEstablished: Bool { stage == .yamux }
    var isClosed: Bool { stage == .closed }
    var streamCount: Int { streams.count }
    var directionName: String { isDialer ? "outbound" : "inbound" }

    /// Start after registration (or after a non-blocking connect completes).
    func start() {
        stage = .msSecurity
        if isDialer {
            out.append(Multistream.encode(Multistream.protocolID))
            out.append(Multistream.encode("/noise"))
            flushSocket()
        }
    }

    // MARK: FDHandler

    func onReadable() {
        if stage == .connecting { onWritable(); return }
        var budget = 4 * 1024 * 1024
        var eof = false
        while budget > 0 {
            rawIn.reserve(64 * 1024)
            let n = Glibc.read(fd, rawIn.writePointer, rawIn.writableCount)
            if n > 0 {
                rawIn.commitWrite(n)
                receivedAny = true
                budget -= n
                if n < 16 * 1024 { break }
            } else if n == 0 {
                eof = true
                break
            } else {
                if errno == EAGAIN || errno == EWOULDBLOCK { break }
                if errno == EINTR { continue }
                fail("read error errno=\(errno)")
                return
            }
        }
        lastActivity = Monotonic.nanos()
        process()
        if eof && stage != .closed { fail("remote closed the connection"); return }
        // Input makes output (ping answers, resets, window updates): a peer that sends without
        // reading would grow our output without bound. Stop reading until it drains.
        if stage == .yamux && !readPaused && out.count + plainOut.count >= limits.writeHighWater {
            flush(pumpAfter: false)
            if stage != .closed && out.count + plainOut.count >= limits.writeHighWater {
                readPaused = true
                writeInterest = true
                loop.setReadInterest(fd, read: false, write: true)
            }
        }
    }

    func onWritable() {
        if stage == .connecting {
            var err: Int32 = 0
            var len = socklen_t(4)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            if err != 0 {
                fail("connect failed: \(String(cString: strerror(err)))")
                return
            }
            loop.setWriteInterest(fd, false)
            writeInterest = false
            start()
            return
        }
        flushSocket()
    }

    func onHangup() {
        if stage == .connecting { onWritable(); return }
        onReadable()
        if stage != .closed { fail("connection hung up") }
    }

    // MARK: inbound processing

    private func process() {
        do {
            while stage != .closed {
                let before = rawIn.count
                switch stage {
                case .connecting, .closed: return
                case .msSecurity: try processSecurityNegotiation()
                case .noise: try processNoise()
                case .msMuxer, .yamux: try decryptTransport(); try processPlain()
                }
                if rawIn.count == before { break }
            }
        } catch {
            fail("\(error)", protocolError: true)
        }
    }

    private func nextMSMessage(_ buf: ByteBuffer) throws -> String? {
        guard let (text, used) = try Multistream.decode(UnsafeBufferPointer(start: buf.readPointer, count: buf.count)) else { return nil }
        buf.consume(used)
        return text
    }

    private func processSecurityNegotiation() throws {
        while stage == .msSecurity, let msg = try nextMSMessage(rawIn) {
            if !msHeaderSeen {
                guard msg == Multistream.protocolID else { throw Libp2pError.protocolViolation("expected multistream header, got \(msg.prefix(40))") }
                msHeaderSeen = true
                if !isDialer { out.append(Multistream.encode(Multistream.protocolID)) }
                continue
            }
            if isDialer {
                guard msg == "/noise" else { throw Libp2pError.protocolViolation("remote refused /noise (\(msg.prefix(40)))") }
                msHeaderSeen = false
                stage = .noise
                let h = NoiseHandshake(initiator: true, identity: identity)
                hs = h
                writeHandshakeFrame(h.writeMessage1())
            } else {
                msAttempts += 1
                guard msAttempts <= limits.maxSecurityAttempts else { throw Libp2pError.protocolViolation("too many security proposals") }
                if msg == "/noise" {
                    out.append(Multistream.encode("/noise"))
                    msHeaderSeen = false
                    stage = .noise
                    hs = NoiseHandshake(initiator: false, identity: identity)
                } else {
                    out.append(Multistream.encode(Multistream.na))
                }
            }
        }
        flushSocket()
    }

    private func writeHandshakeFrame(_ m: [UInt8]) {
        out.appendByte(UInt8(m.count >> 8))
        out.appendByte(UInt8(m.count & 0xff))
        out.append(m)
    }

    private func nextNoiseFrame() -> [UInt8]? {
        guard rawIn.count >= 2 else { return nil }
        let len = Int(rawIn[0]) << 8 | Int(rawIn[1])
        guard rawIn.count >= 2 + len else { return nil }
        rawIn.consume(2)
        return rawIn.read(len)
    }

    private func processNoise() throws {
        guard let h = hs else { throw Libp2pError.protocolViolation("no handshake state") }
        while stage == .noise, let m = nextNoiseFrame() {
            if h.initiator {
                guard h.step == 1 else { throw NoiseError.badMessage("unexpected handshake message") }
                let peer = try h.readMessage2(m)
                if let exp = expectedPeer, exp != peer { throw NoiseError.peerMismatch(expected: exp.base58, got: peer.base58) }
                writeHandshakeFrame(try h.writeMessage3())
                finishHandshake(h, peer)
                writePlain(Multistream.encode(Multistream.protocolID) + Multistream.encode("/yamux/1.0.0"))
            } else {
                if h.step == 0 {
                    try h.readMessage1(m)
                    writeHandshakeFrame(try h.writeMessage2())
                } else if h.step == 2 {
                    let peer = try h.readMessage3(m)
                    finishHandshake(h, peer)
                } else {
                    throw NoiseError.badMessage("unexpected handshake message")
                }
            }
        }
        flushSocket()
    }

    private func finishHandshake(_ h: NoiseHandshake, _ peer: PeerID) {
        let (s, r) = h.split()
        sendCipher = s
        recvCipher = r
        remotePeer = peer
        hs = nil
        stage = .msMuxer
    }

    private func decryptTransport() throws {
        guard let rc = recvCipher else { return }
        while rawIn.count >= 2 {
            let len = Int(rawIn[0]) << 8 | Int(rawIn[1])
            guard rawIn.count >= 2 + len else { break }
            let p = rawIn.readPointer + 2
            let m = try rc.openInPlace(p, len)
            plainIn.append(p, m)
            rawIn.consume(2 + len)
        }
    }

    private func processPlain() throws {
        if stage == .msMuxer {
            while stage == .msMuxer, let msg = try nextMSMessage(plainIn) {
                if !msHeaderSeen {
                    guard msg == Multistream.protocolID else { throw Libp2pError.protocolViolation("expected multistream header") }
                    msHeaderSeen = true
                    if !isDialer { writePlain(Multistream.encode(Multistream.protocolID)) }
                    continue
                }
                if isDialer {
                    guard msg == "/yamux/1.0.0" else { throw Libp2pError.protocolViolation("remote refused /yamux/1.0.0") }
                    becomeEstablished()
                } else {
                    msAttempts += 1
                    guard msAttempts <= limits.maxSecurityAttempts * 2 else { throw Libp2pError.protocolViolation("too many muxer proposals") }
                    if msg == "/yamux/1.0.0" {
                        writePlain(Multistream.encode("/yamux/1.0.0"))
                        becomeEstablished()
                    } else {
                        writePlain(Multistream.encode(Multistream.na))
                    }
                }
            }
        }
        if stage == .yamux { try processYamux() }
        plainIn.shrinkIfIdle(to: 16 * 1024)
    }

    /// Whether the connection reached Yamux before it closed.
    private(set) var isEstablishedBeforeClose = false

    private func becomeEstablished() {
        stage = .yamux
        isEstablishedBeforeClose = true
        delegate?.connectionEstablished(self)
    }

    // MARK: yamux receive

    private func processYamux() throws {
        while stage == .yamux {
            if let d = inData {
                let n = min(d.left, plainIn.count)
                if n == 0 && d.left > 0 { return }
                if n > 0 {
                    if let s = streams[d.sid] {
                        guard UInt32(n) <= s.recvWindow else { throw YamuxError.protocolError("stream \(d.sid) exceeded its receive window") }
                        s.recvWindow -= UInt32(n)
                        s.deliver(plainIn.readPointer, n)
                    }
                    plainIn.consume(n)
                }
                let left = d.left - n
                if left > 0 { inData = (d.sid, left, d.flags); return }
                inData = nil
                applyCloseFlags(d.sid, d.flags)
                continue
            }
            guard plainIn.count >= YamuxHeader.size else { return }
            let h = try YamuxHeader.decode(plainIn.readPointer)
            plainIn.consume(YamuxHeader.size)
            try handleFrame(h)
        }
    }

    private func handleFrame(_ h: YamuxHeader) throws {
        switch h.type {
        case .ping:
            if h.flags & YamuxHeader.syn != 0 {
                sendFrame(YamuxHeader(type: .ping, flags: YamuxHeader.ack, streamID: 0, length: h.length))
            } else if h.flags & YamuxHeader.ack != 0, let (sent, cb) = pingWaiters.removeValue(forKey: h.length) {
                cb(Double(Monotonic.nanos() - sent) / 1e9)
            }
        case .goAway:
            goAwayReceived = true
            if streams.isEmpty { fail("remote sent GoAway code \(h.length)") }
        case .data, .windowUpdate:
            guard h.streamID != 0 else { throw YamuxError.protocolError("stream frame on stream 0") }
            if h.type == .data && h.length > StreamCore.maxWindow { throw YamuxError.protocolError("data frame of \(h.length) bytes") }
            if h.flags & YamuxHeader.syn != 0 {
                try acceptRemoteStream(h.streamID)
            }
            let s = streams[h.streamID]
            if let s = s, h.flags & YamuxHeader.ack != 0 { s.established = true }
            if h.type == .windowUpdate {
                if let s = s {
                    s.sendWindow = s.sendWindow &+ h.length
                    if s.sendWindow > 1 << 31 { throw YamuxError.protocolError("send window overflow") }
                    pump(s)
                }
                applyCloseFlags(h.streamID, h.flags)
            } else {
                if h.length == 0 {
                    applyCloseFlags(h.streamID, h.flags)
                } else {
                    inData = (h.streamID, Int(h.length), h.flags)
                }
            }
        }
    }

    private func acceptRemoteStream(_ sid: UInt32) throws {
        guard let peer = remotePeer else { return }
        guard sid % 2 != (isDialer ? 1 : 0) else { throw YamuxError.protocolError("remote opened stream \(sid) with our parity") }
        guard streams[sid] == nil else { throw YamuxError.protocolError("duplicate SYN for stream \(sid)") }
        let now = Monotonic.nanos()
        streamTokens = min(limits.inboundStreamBurst, streamTokens + Double(now - tokensAt) / 1e9 * limits.inboundStreamsPerSecond)
        tokensAt = now
        // Protected peers (the daemon's members: a follower forwards every write it is sent
        // as a stream of its own) are held only to the cap on concurrent streams.
        let rateLimited = streamTokens < 1 && !(delegate?.isRateExempt(peer) ?? false)
        if streams.count >= limits.maxStreams || goAwaySent || rateLimited {
            sendFrame(YamuxHeader(type: .windowUpdate, flags: YamuxHeader.rst, streamID: sid, length: 0))
            Log.debug("LIBP2P", "stream_refused", ["peer_id": peer, "reason": rateLimited ? "stream rate limit" : "stream limit"])
            return
        }
        streamTokens = max(0, streamTokens - 1)
        let s = StreamCore(conn: self, id: sid, initiator: false, remote: peer)
        lastStreamActivity = Monotonic.nanos()
        s.established = true
        streams[sid] = s
        sendFrame(YamuxHeader(type: .windowUpdate, flags: YamuxHeader.ack, streamID: sid, length: 0))
        delegate?.inboundStream(self, s)
    }

    private func applyCloseFlags(_ sid: UInt32, _ flags: UInt16) {
        guard let s = streams[sid] else { return }
        if flags & YamuxHeader.rst != 0 {
            s.deliverReset()
            removeStream(s)
            return
        }
        if flags & YamuxHeader.fin != 0 && !s.remoteFinSeen {
            s.remoteFinSeen = true
            s.deliverFIN()
            if s.finSent { removeStream(s) }
        }
    }

    private func removeStream(_ s: StreamCore) {
        guard streams.removeValue(forKey: s.streamID) != nil else { return }
        windowGrowthTotal -= s.windowGrowth
        lastStreamActivity = Monotonic.nanos()
        delegate?.streamCountChanged(self)
        if streams.isEmpty && goAwayReceived { fail("remote sent GoAway") }
    }

    // MARK: yamux send

    /// Open an outbound stream (loop thread).
    func openStream() throws -> StreamCore {
        guard stage == .yamux, let peer = remotePeer else { throw Libp2pError.connectionClosed("connection not ready") }
        guard !goAwayReceived else { throw Libp2pError.connectionClosed("remote is going away") }
        guard streams.count < limits.maxStreams else { throw Libp2pError.limit("\(limits.maxStreams) streams on one connection") }
        let sid = nextStreamID
        guard sid < UInt32.max - 2 else { throw Libp2pError.limit("stream IDs exhausted") }
        nextStreamID += 2
        let s = StreamCore(conn: self, id: sid, initiator: true, remote: peer)
        streams[sid] = s
        sendFrame(YamuxHeader(type: .windowUpdate, flags: YamuxHeader.syn, streamID: sid, length: 0))
        lastStreamActivity = Monotonic.nanos()
        return s
    }

    func sendFrame(_ h: YamuxHeader) {
        guard stage == .yamux else { return }
        plainOut.reserve(YamuxHeader.size)
        h.encode(into: plainOut.writePointer)
        plainOut.commitWrite(YamuxHeader.size)
        markDirty()
    }

    private func writePlain(_ bytes: [UInt8]) {
        plainOut.append(bytes)
        markDirty()
    }

    private var congested: Bool { out.count + plainOut.count >= limits.writeHighWater }

    func streamWrite(_ s: StreamCore, _ bytes: [UInt8], _ cont: CheckedContinuation<Void, Error>) {
        if s.wasReset || stage == .closed || s.rstSent { cont.resume(throwing: Libp2pError.streamReset); return }
        if s.finRequested { cont.resume(throwing: Libp2pError.writeClosed); return }
        queueSend(s, bytes)
        if s.pendingSend.count <= StreamCore.sendHighWater {
            cont.resume()
        } else {
            s.writeWaiters.append(cont)
            markBlocked(s)
        }
    }

    /// `Libp2pStream.send`: queue without waiting; report the backlog (nil: cannot send).
    func streamSend(_ s: StreamCore, _ bytes: [UInt8], _ queued: (@Sendable (Int?) -> Void)?) {
        if s.wasReset || stage == .closed || s.rstSent || s.finRequested { queued?(nil); return }
        if !bytes.isEmpty { queueSend(s, bytes) }
        queued?(s.pendingSend.count)
    }

    private func queueSend(_ s: StreamCore, _ bytes: [UInt8]) {
        lastStreamActivity = Monotonic.nanos()
        var offset = 0
        if s.pendingSend.isEmpty {
            bytes.withUnsafeBufferPointer { b in
                offset = emitData(s, b.baseAddress!, b.count)
            }
        }
        if offset < bytes.count {
            s.pendingSend.append(bytes[offset...])
            markBlocked(s)
        }
    }

    /// Emit as much as the window and connection allow; returns bytes taken.
    private func emitData(_ s: StreamCore, _ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        var done = 0
        while done < n && s.sendWindow > 0 && !congested {
            let k = min(n - done, Int(s.sendWindow), Connection.maxDataFrame)
            plainOut.reserve(YamuxHeader.size + k)
            YamuxHeader(type: .data, flags: 0, streamID: s.streamID, length: UInt32(k)).encode(into: plainOut.writePointer)
            plainOut.commitWrite(YamuxHeader.size)
            plainOut.append(p + done, k)
            s.sendWindow -= UInt32(k)
            done += k
            if plainOut.count >= 512 * 1024 { flush(pumpAfter: false) }
        }
        if done > 0 { markDirty() }
        if done < n { markBlocked(s) }
        return done
    }

    private func markBlocked(_ s: StreamCore) {
        if blockedSet.insert(s.streamID).inserted { blocked.append(s.streamID) }
    }

    /// Move queued data of one stream out, send a pending FIN, wake writers.
    func pump(_ s: StreamCore) {
        guard stage == .yamux, !s.rstSent else { return }
        while !s.pendingSend.isEmpty && s.sendWindow > 0 && !congested {
            let n = emitData(s, s.pendingSend.readPointer, s.pendingSend.count)
            if n == 0 { break }
            s.pendingSend.consume(n)
        }
        if s.pendingSend.isEmpty && s.finRequested && !s.finSent {
            s.finSent = true
            sendFrame(YamuxHeader(type: .data, flags: YamuxHeader.fin, streamID: s.streamID, length: 0))
            if s.remoteFinSeen { removeStream(s) }
        }
        if s.pendingSend.count <= StreamCore.sendHighWater && !s.writeWaiters.isEmpty {
            let ws = s.writeWaiters
            s.writeWaiters.removeAll()
            for c in ws { c.resume() }
        }
        if !s.pendingSend.isEmpty || !s.writeWaiters.isEmpty { markBlocked(s) }
    }

    private func pumpBlocked() {
        guard !blocked.isEmpty else { return }
        let list = blocked
        blocked.removeAll()
        blockedSet.removeAll()
        for sid in list {
            if let s = streams[sid] { pump(s) }
            if congested { break }
        }
        // Keep those not reached for the next round.
        for sid in list where !blockedSet.contains(sid) {
            if let s = streams[sid], !s.pendingSend.isEmpty || !s.writeWaiters.isEmpty { markBlocked(s) }
        }
    }

    func streamCloseWrite(_ s: StreamCore, full: Bool, _ cont: CheckedContinuation<Void, Error>?) {
        if s.wasReset || s.rstSent { cont?.resume(throwing: Libp2pError.streamReset); return }
        if !s.finRequested {
            s.finRequested = true
            if stage == .yamux { pump(s) }
        }
        if full && streams[s.streamID] != nil {
            // Both sides closed locally: give the remote a while to finish, then reset.
            loop.schedule(after: 10) { [weak self, weak s] in
                guard let self = self, let s = s, self.streams[s.streamID] === s else { return }
                self.streamReset(s)
            }
        }
        cont?.resume()
    }

    func streamReset(_ s: StreamCore) {
        guard streams[s.streamID] != nil, !s.rstSent else { return }
        s.rstSent = true
        sendFrame(YamuxHeader(type: .windowUpdate, flags: YamuxHeader.rst, streamID: s.streamID, length: 0))
        s.deliverReset()
        removeStream(s)
    }

    func sendWindowUpdate(_ s: StreamCore) {
        guard streams[s.streamID] != nil, !s.remoteFinSeen else { _ = s.takeWindowCredit(allowGrowth: false); return }
        let (delta, grown) = s.takeWindowCredit(allowGrowth: windowGrowthTotal < limits.maxWindowGrowth)
        windowGrowthTotal += Int(grown)
        s.windowGrowth += Int(grown)
        guard delta > 0 else { return }
        s.recvWindow &+= delta
        sendFrame(YamuxHeader(type: .windowUpdate, flags: 0, streamID: s.streamID, length: delta))
    }

    /// Send a Yamux ping; `done` gets the round-trip time in seconds.
    func ping(_ done: @escaping (Double) -> Void) {
        let id = nextPing
        nextPing &+= 1
        pingWaiters[id] = (Monotonic.nanos(), done)
        sendFrame(YamuxHeader(type: .ping, flags: YamuxHeader.syn, streamID: 0, length: id))
    }

    // MARK: output

    private func markDirty() {
        if !flushScheduled {
            flushScheduled = true
            loop.atTurnEnd { [self] in self.flushScheduled = false; self.flush() }
        }
    }

    /// Encrypt queued plaintext into Noise frames and write to the socket.
    func flush(pumpAfter: Bool = true) {
        guard stage != .closed else { return }
        if let sc = sendCipher, !plainOut.isEmpty {
            while !plainOut.isEmpty {
                let n = min(plainOut.count, Connection.maxNoisePlain)
                out.reserve(n + 18)
                let w = out.writePointer
                w[0] = UInt8((n + 16) >> 8)
                w[1] = UInt8((n + 16) & 0xff)
                sc.seal(plainOut.readPointer, n, into: w + 2)
                out.commitWrite(n + 18)
                plainOut.consume(n)
            }
        }
        flushSocket(pumpAfter: pumpAfter)
    }

    private func flushSocket(pumpAfter: Bool = true) {
        guard stage != .closed else { return }
        while !out.isEmpty {
            let n = Glibc.send(fd, out.readPointer, out.count, Int32(MSG_NOSIGNAL))
            if n > 0 {
                out.consume(n)
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                break
            } else {
                fail("write error errno=\(errno)")
                return
            }
        }
        if readPaused && out.count + plainOut.count < limits.writeLowWater {
            readPaused = false
            writeInterest = !out.isEmpty
            loop.setReadInterest(fd, read: true, write: writeInterest)
        }
        if out.isEmpty {
            out.shrinkIfIdle(to: 16 * 1024)
            if writeInterest { writeInterest = false; loop.setWriteInterest(fd, false) }
        } else if !writeInterest {
            writeInterest = true
            if readPaused { loop.setReadInterest(fd, read: false, write: true) } else { loop.setWriteInterest(fd, true) }
        }
        if pumpAfter && !pumping && stage == .yamux && out.count < limits.writeLowWater {
            pumping = true
            pumpBlocked()
            pumping = false
        }
    }

    // MARK: closing

    /// Close gracefully: GoAway, flush what we can, close the socket.
    func close(reason: String) {
        guard stage != .closed else { return }
        if stage == .yamux && !goAwaySent {
            goAwaySent = true
            sendFrame(YamuxHeader(type: .goAway, flags: 0, streamID: 0, length: 0))
            flush()
        }
        fail(reason)
    }

    /// Tear down immediately.
    func fail(_ reason: String, protocolError: Bool = false) {
        guard stage != .closed else { return }
        if protocolError && stage == .yamux && !goAwaySent {
            goAwaySent = true
            sendFrame(YamuxHeader(type: .goAway, flags: 0, streamID: 0, length: 1))
            flush()
        }
        stage = .closed
        loop.deregister(fd)
        Glibc.close(fd)
        let ss = streams
        streams.removeAll()
        for (_, s) in ss { s.deliverReset() }
        pingWaiters.removeAll()
        delegate?.connectionClosed(self, reason: reason)
    }
}
