import Foundation
import Identity
import Wire

/// The state of one Yamux stream, shared by its connection's loop and the user-facing handle.
final class StreamCore: @unchecked Sendable {
    /// Negotiated protocol ID.
    public internal(set) var protocolID: String = ""
    /// Authenticated remote peer.
    public let remotePeer: PeerID
    /// True when this side opened the stream.
    public let isInitiator: Bool
    /// Yamux stream ID.
    public let streamID: UInt32
    let conn: Connection

    // Receive side, shared between the loop and readers.
    private let lock = PLock()
    private let recvBuf = ByteBuffer(capacity: 4096)
    private var remoteClosed = false
    private var isReset = false
    private var readClosed = false
    private var readWaiter: CheckedContinuation<Void, Never>? = nil
    private var unackedConsumed: UInt32 = 0
    private var updateScheduled = false
    /// Current receive window target (grows for bulk transfer).
    private var windowTarget: UInt32 = YamuxHeader.initialWindow
    /// Loop-owned: when set (`installReceiver`), arriving bytes go to it instead of `recvBuf`.
    private var receiver: ((UnsafeBufferPointer<UInt8>) -> Void)? = nil
    private var receiverClosed: ((Bool) -> Void)? = nil

    // Loop-owned send side.
    var sendWindow: UInt32 = YamuxHeader.initialWindow
    var recvWindow: UInt32 = YamuxHeader.initialWindow
    let pendingSend = ByteBuffer(capacity: 256)
    var writeWaiters: [CheckedContinuation<Void, Error>] = []
    var finRequested = false
    var finSent = false
    var rstSent = false
    var remoteFinSeen = false
    var established = false

    static let maxWindow: UInt32 = 16 * 1024 * 1024
    static let sendHighWater = 512 * 1024

    init(conn: Connection, id: UInt32, initiator: Bool, remote: PeerID) {
        self.conn = conn
        self.streamID = id
        self.isInitiator = initiator
        self.remotePeer = remote
    }

    // MARK: loop side

    /// Loop: data arrived for this stream.
    func deliver(_ p: UnsafePointer<UInt8>, _ n: Int) {
        if let r = receiver {
            // Credited before the receiver runs, so bytes it hands back (`uninstallReceiver`)
            // are taken off the credit instead of being credited twice.
            lock.lock()
            let upd = consumedLocked(n)
            lock.unlock()
            r(UnsafeBufferPointer(start: p, count: n))
            if upd { conn.sendWindowUpdate(self) }
            return
        }
        lock.lock()
        if readClosed || isReset {
            // Discarded, but credited so the sender is not stalled forever.
            unackedConsumed &+= UInt32(n)
            lock.unlock()
            return
        }
        recvBuf.append(p, n)
        let w = readWaiter
        readWaiter = nil
        lock.unlock()
        w?.resume()
    }

    /// Loop: remote sent FIN.
    func deliverFIN() {
        lock.lock()
        remoteClosed = true
        let w = readWaiter
        readWaiter = nil
        lock.unlock()
        w?.resume()
        endReceiver(reset: false)
    }

    /// Loop: the receiver sees its end once.
    private func endReceiver(reset: Bool) {
        guard let c = receiverClosed else { return }
        receiver = nil
        receiverClosed = nil
        c(reset)
    }

    /// Loop: back to buffered delivery for `read`; `pushBack` (bytes a receiver took but did
    /// not use) is put in front of anything that arrives later.
    func uninstallReceiver(pushBack: [UInt8]) {
        receiver = nil
        receiverClosed = nil
        guard !pushBack.isEmpty else { return }
        lock.lock()
        recvBuf.append(pushBack)
        // Those bytes were credited as consumed when the receiver took them; they are credited
        // again when read, so take back what has not been granted yet.
        unackedConsumed -= min(unackedConsumed, UInt32(pushBack.count))
        lock.unlock()
    }

    /// Loop: switch to push delivery. Bytes already buffered go to `receive` first; a stream
    /// that already ended reports it at once.
    func installReceiver(_ receive: @escaping (UnsafeBufferPointer<UInt8>) -> Void, closed: @escaping (Bool) -> Void) {
        lock.lock()
        let buffered = recvBuf.count > 0 ? recvBuf.read(recvBuf.count) : []
        let upd = buffered.isEmpty ? false : consumedLocked(buffered.count)
        let ended: Bool? = isReset ? true : (remoteClosed ? false : nil)
        lock.unlock()
        receiver = receive
        receiverClosed = closed
        if !buffered.isEmpty { buffered.withUnsafeBufferPointer { receive($0) } }
        if upd { conn.sendWindowUpdate(self) }
        if let e = ended { endReceiver(reset: e) }
    }

    /// Loop: stream reset (by remote, by us, or connection loss).
    func deliverReset() {
        lock.lock()
        // A stream whose remote already finished keeps its buffered data and clean EOF.
        if !remoteClosed { isReset = true }
        writeSideReset = true
        let w = readWaiter
        readWaiter = nil
        lock.unlock()
        w?.resume()
        let ws = writeWaiters
        writeWaiters.removeAll()
        for c in ws { c.resume(throwing: Libp2pError.streamReset) }
        pendingSend.clear()
        endReceiver(reset: true)
    }

    private var writeSideReset = false
    var wasReset: Bool { lock.lock(); defer { lock.unlock() }; return writeSideReset }

    /// Loop: take the accumulated credit for a window update. Grows the window for bulk transfers.
    func takeWindowCredit(allowGrowth: Bool = true) -> (delta: UInt32, grown: UInt32) {
        lock.lock()
        defer { lock.unlock() }
        updateScheduled = false
        var delta = unackedConsumed
        var grown: UInt32 = 0
        unackedConsumed = 0
        if allowGrowth && delta > 0 && windowTarget < StreamCore.maxWindow && !readClosed {
            let old = windowTarget
            windowTarget = min(windowTarget * 2, StreamCore.maxWindow)
            grown = windowTarget - old
            delta &+= grown
        }
        return (delta, grown)
    }

    /// Receive window growth granted to this stream beyond the initial window (loop-owned).
    var windowGrowth: Int = 0

    // MARK: reader side

    private func consumedLocked(_ n: Int) -> Bool {
        unackedConsumed &+= UInt32(n)
        if !updateScheduled && !remoteClosed && unackedConsumed >= windowTarget / 2 {
            updateScheduled = true
            return true
        }
        return false
    }

    private func scheduleUpdate() {
        let c = conn, s = self
        c.loop.execute { c.sendWindowUpdate(s) }
    }

    private enum Avail { case data, eof, reset }

    private func waitReadable() async -> Avail {
        while true {
            lock.lock()
            if !recvBuf.isEmpty { lock.unlock(); return .data }
            if isReset { lock.unlock(); return .reset }
            if remoteClosed || readClosed { lock.unlock(); return .eof }
            lock.unlock()
            if Task.isCancelled { reset(); return .reset }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                    lock.lock()
                    if !recvBuf.isEmpty || isReset || remoteClosed || readClosed {
                        lock.unlock()
                        c.resume()
                    } else {
                        readWaiter = c
                        lock.unlock()
                    }
                }
            } onCancel: {
                // Cancelling a task blocked on a stream resets that stream.
                self.reset()
            }
        }
    }

    /// Take up to `maxLength` bytes; nil at end of stream. Throws `streamReset`
    /// (also when the calling task is cancelled while waiting: the stream is then reset).
    public func read(maxLength: Int = 1 << 20) async throws -> [UInt8]? {
        switch await waitReadable() {
        case .reset: throw Libp2pError.streamReset
        case .eof: return nil
        case .data: break
        }
        lock.lock()
        let n = min(maxLength, recvBuf.count)
        let out = recvBuf.read(n)
        let upd = consumedLocked(n)
        lock.unlock()
        if upd { scheduleUpdate() }
        return out
    }

    /// Read and discard up to `maxLength` bytes; returns the count, 0 at end of stream.
    public func discard(maxLength: Int = 1 << 22) async throws -> Int {
        switch await waitReadable() {
        case .reset: throw Libp2pError.streamReset
        case .eof: return 0
        case .data: break
        }
        lock.lock()
        let n = min(maxLength, recvBuf.count)
        recvBuf.consume(n)
        let upd = consumedLocked(n)
        lock.unlock()
        if upd { scheduleUpdate() }
        return n
    }

    /// Read exactly `count` bytes; throws `connectionClosed` on early end of stream.
    public func readExactly(_ count: Int) async throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            switch await waitReadable() {
            case .reset: throw Libp2pError.streamReset
            case .eof: throw Libp2pError.connectionClosed("stream ended after \(out.count) of \(count) bytes")
            case .data: break
            }
            lock.lock()
            let n = min(count - out.count, recvBuf.count)
            out.append(contentsOf: UnsafeBufferPointer(start: recvBuf.readPointer, count: n))
            recvBuf.consume(n)
            let upd = consumedLocked(n)
            lock.unlock()
            if upd { scheduleUpdate() }
        }
        return out
    }

    /// Read one `\n`-terminated line (newline stripped); nil at a clean end of stream.
    public func readLine(maxLength: Int = 1 << 20) async throws -> String? {
        var out: [UInt8] = []
        while true {
            switch await waitReadable() {
            case .reset: throw Libp2pError.streamReset
            case .eof:
                if out.isEmpty { return nil }
                throw Libp2pError.connectionClosed("stream ended inside a line")
            case .data: break
            }
            lock.lock()
            var n = 0
            var found = false
            let avail = recvBuf.count
            let p = recvBuf.readPointer
            while n < avail {
                if p[n] == 0x0a { found = true; n += 1; break }
                n += 1
            }
            out.append(contentsOf: UnsafeBufferPointer(start: p, count: n))
            recvBuf.consume(n)
            let upd = consumedLocked(n)
            lock.unlock()
            if upd { scheduleUpdate() }
            if found {
                out.removeLast()
                return String(decoding: out, as: UTF8.self)
            }
            if out.count > maxLength { throw Libp2pError.tooLarge("line over \(maxLength) bytes") }
        }
    }

    /// Read an unsigned varint; nil at a clean end of stream.
    public func readUvarint() async throws -> UInt64? {
        var bytes: [UInt8] = []
        while true {
            switch await waitReadable() {
            case .reset: throw Libp2pError.streamReset
            case .eof:
                if bytes.isEmpty { return nil }
                throw Libp2pError.connectionClosed("stream ended inside a varint")
            case .data: break
            }
            lock.lock()
            let b = recvBuf[0]
            recvBuf.consume(1)
            let upd = consumedLocked(1)
            lock.unlock()
            if upd { scheduleUpdate() }
            bytes.append(b)
            if b & 0x80 == 0 {
                do { return try Varint.decode(bytes, at: 0).value } catch { throw Libp2pError.protocolViolation("bad varint") }
            }
            if bytes.count >= 10 { throw Libp2pError.protocolViolation("varint too long") }
        }
    }

    /// Read one uvarint-length-prefixed message; nil at a clean end of stream.
    public func readLengthPrefixed(maxLength: Int = 4 << 20) async throws -> [UInt8]? {
        guard let len = try await readUvarint() else { return nil }
        guard len <= UInt64(maxLength) else { throw Libp2pError.tooLarge("message of \(len) bytes, limit \(maxLength)") }
        return try await readExactly(Int(len))
    }

    /// Read everything until the remote closes its write side (bounded).
    public func readToEnd(maxLength: Int = 4 << 20) async throws -> [UInt8] {
        var out: [UInt8] = []
        while let chunk = try await read(maxLength: maxLength + 1 - out.count) {
            out += chunk
            if out.count > maxLength { throw Libp2pError.tooLarge("stream over \(maxLength) bytes") }
        }
        return out
    }

    // MARK: writer side

    /// Queue bytes for sending; suspends while more than the high-water mark is queued.
    /// Cancelling the calling task while it waits resets the stream.
    public func write(_ bytes: [UInt8]) async throws {
        if bytes.isEmpty { return }
        let c = conn, s = self
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, Error>) in
                if !c.loop.execute({ c.streamWrite(s, bytes, cont) }) { cont.resume(throwing: Libp2pError.streamReset) }
            }
        } onCancel: {
            s.reset()
        }
    }

    /// Write a uvarint length prefix and the message.
    public func writeLengthPrefixed(_ bytes: [UInt8]) async throws {
        try await write(Varint.encode(UInt64(bytes.count)) + bytes)
    }

    /// Write a line (a `\n` is appended).
    public func writeLine(_ text: String) async throws {
        try await write(Array(text.utf8) + [0x0a])
    }

    /// Half-close: send FIN after queued data; reads continue to work.
    public func closeWrite() async throws {
        try await closeWrite(full: false)
    }

    func closeWrite(full: Bool) async throws {
        let c = conn, s = self
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, Error>) in
            if !c.loop.execute({ c.streamCloseWrite(s, full: full, cont) }) { cont.resume(throwing: Libp2pError.streamReset) }
        }
    }

    /// The handle was dropped: close gracefully unless already reset (queued data is still sent).
    func released() {
        lock.lock()
        let done = isReset || writeSideReset
        readClosed = true
        let pending = recvBuf.count
        recvBuf.clear()
        let upd = pending > 0 ? consumedLocked(pending) : false
        lock.unlock()
        if done { return }
        if upd { scheduleUpdate() }
        let c = conn, s = self
        c.loop.run { c.streamCloseWrite(s, full: true, nil) }
    }

    /// Close both directions gracefully (FIN; further incoming data is discarded).
    public func close() async {
        lock.lock()
        readClosed = true
        let pending = recvBuf.count
        recvBuf.clear()
        let upd = pending > 0 ? consumedLocked(pending) : false
        lock.unlock()
        if upd { scheduleUpdate() }
        try? await closeWrite(full: true)
    }

    /// Abort the stream in both directions (RST).
    public func reset() {
        let c = conn, s = self
        c.loop.execute { c.streamReset(s) }
    }
}

/// One multiplexed libp2p stream (a Yamux stream after protocol negotiation).
/// Reads and writes may be called from any task; one reader and one writer at a time.
/// Writes suspend while too much data is queued (backpressure); reads suspend until data arrives.
/// Dropping the last reference closes the stream gracefully (like `close()`).
public final class Libp2pStream: @unchecked Sendable {
    let core: StreamCore

    init(_ core: StreamCore) { self.core = core }
    deinit { core.released() }

    /// Negotiated protocol ID.
    public var protocolID: String { core.protocolID }
    /// Authenticated remote peer.
    public var remotePeer: PeerID { core.remotePeer }
    /// True when this side opened the stream.
    public var isInitiator: Bool { core.isInitiator }
    /// Yamux stream ID.
    public var streamID: UInt32 { core.streamID }
    /// Address of the remote end of the underlying connection.
    public var remoteAddress: Multiaddr? { core.conn.remoteAddr }

    /// Take up to `maxLength` bytes; nil at end of stream. Throws `streamReset`
    /// (also when the calling task is cancelled while waiting: the stream is then reset).
    public func read(maxLength: Int = 1 << 20) async throws -> [UInt8]? { try await core.read(maxLength: maxLength) }
    /// Read and discard up to `maxLength` bytes; returns the count, 0 at end of stream.
    public func discard(maxLength: Int = 1 << 22) async throws -> Int { try await core.discard(maxLength: maxLength) }
    /// Read exactly `count` bytes; throws `connectionClosed` on early end of stream.
    public func readExactly(_ count: Int) async throws -> [UInt8] { try await core.readExactly(count) }
    /// Read one `\n`-terminated line (newline stripped); nil at a clean end of stream.
    public func readLine(maxLength: Int = 1 << 20) async throws -> String? { try await core.readLine(maxLength: maxLength) }
    /// Read an unsigned varint; nil at a clean end of stream.
    public func readUvarint() async throws -> UInt64? { try await core.readUvarint() }
    /// Read one uvarint-length-prefixed message; nil at a clean end of stream.
    public func readLengthPrefixed(maxLength: Int = 4 << 20) async throws -> [UInt8]? { try await core.readLengthPrefixed(maxLength: maxLength) }
    /// Read everything until the remote closes its write side (bounded).
    public func readToEnd(maxLength: Int = 4 << 20) async throws -> [UInt8] { try await core.readToEnd(maxLength: maxLength) }
    /// Queue bytes for sending; suspends while more than the high-water mark is queued.
    /// Cancelling the calling task while it waits resets the stream.
    public func write(_ bytes: [UInt8]) async throws { try await core.write(bytes) }
    /// Write a uvarint length prefix and the message.
    public func writeLengthPrefixed(_ bytes: [UInt8]) async throws { try await core.writeLengthPrefixed(bytes) }
    /// Write a line (a `\n` is appended).
    public func writeLine(_ text: String) async throws { try await core.writeLine(text) }
    /// Half-close: send FIN after queued data; reads continue to work.
    public func closeWrite() async throws { try await core.closeWrite() }
    /// Close both directions gracefully (FIN; further incoming data is discarded).
    public func close() async { await core.close() }
    /// Abort the stream in both directions (RST).
    public func reset() { core.reset() }

    /// Push delivery instead of `read`: from now on `receive` gets each arriving chunk on the
    /// connection's event-loop thread (it must return quickly and must not block), and `closed`
    /// runs once when the stream ends (`true` when it was reset). Bytes already buffered are
    /// delivered first. The read methods must not be used afterwards. Keep this handle alive
    /// for as long as data should arrive.
    public func setReceiver(_ receive: @escaping @Sendable (UnsafeBufferPointer<UInt8>) -> Void,
                            closed: @escaping @Sendable (Bool) -> Void) {
        let c = core
        c.conn.loop.run { c.installReceiver(receive, closed: closed) }
    }

    /// Queue bytes without waiting (any thread). `queued`, if given, runs as event-loop work
    /// once the bytes are queued — on the loop thread, or on the calling thread when the loop
    /// was idle and the bytes went out right away (`EventLoop.runNowIfIdle`) — with the stream's
    /// unsent backlog in bytes (the caller's backpressure signal), or nil when the stream can no
    /// longer send (reset or closed).
    public func send(_ bytes: [UInt8], queued: (@Sendable (Int?) -> Void)? = nil) {
        let c = core
        c.conn.loop.runNowIfIdle { c.conn.streamSend(c, bytes, queued) }
    }
}
