import Foundation
import Glibc
import Support

/// epoll and eventfd through the C library (the Glibc module map does not export them).
enum Epoll {
    static let IN: UInt32 = 0x001, OUT: UInt32 = 0x004, ERR: UInt32 = 0x008, HUP: UInt32 = 0x010, RDHUP: UInt32 = 0x2000
    static let ctlAdd: Int32 = 1, ctlDel: Int32 = 2, ctlMod: Int32 = 3
    static let cloexec: Int32 = 0x80000
    static let efdNonblock: Int32 = 0x800
    #if arch(x86_64)
    /// `struct epoll_event` is packed on x86-64.
    static let eventSize = 12, dataOffset = 4
    #else
    static let eventSize = 16, dataOffset = 8
    #endif

    typealias Create1 = @convention(c) (Int32) -> Int32
    typealias Ctl = @convention(c) (Int32, Int32, Int32, UnsafeMutableRawPointer?) -> Int32
    typealias Wait = @convention(c) (Int32, UnsafeMutableRawPointer?, Int32, Int32) -> Int32
    typealias EventFD = @convention(c) (UInt32, Int32) -> Int32

    nonisolated(unsafe) static let handle = dlopen(nil, RTLD_NOW)
    static let create1: Create1 = unsafeBitCast(dlsym(handle, "epoll_create1"), to: Create1.self)
    static let ctl: Ctl = unsafeBitCast(dlsym(handle, "epoll_ctl"), to: Ctl.self)
    static let wait: Wait = unsafeBitCast(dlsym(handle, "epoll_wait"), to: Wait.self)
    static let eventfd: EventFD = unsafeBitCast(dlsym(handle, "eventfd"), to: EventFD.self)

    static func control(_ epfd: Int32, _ op: Int32, _ fd: Int32, _ events: UInt32) -> Int32 {
        var raw = [UInt8](repeating: 0, count: 16)
        return raw.withUnsafeMutableBytes { b -> Int32 in
            b.storeBytes(of: events, toByteOffset: 0, as: UInt32.self)
            b.storeBytes(of: UInt64(UInt32(bitPattern: fd)), toByteOffset: dataOffset, as: UInt64.self)
            return ctl(epfd, op, fd, b.baseAddress)
        }
    }
}

/// Something registered with an event loop for readiness of one file descriptor.
protocol FDHandler: AnyObject {
    func onReadable()
    func onWritable()
    func onHangup()
}

/// A single-threaded epoll event loop. Sockets registered with it are owned by its thread;
/// other threads hand it work with `execute`. Timers run on the loop thread.
///
/// Loop state is only ever touched by the holder of `turnLock`: the loop thread holds it for
/// everything but its `epoll_wait`, and `runNowIfIdle` lets another thread take it while the
/// loop sleeps and do a short piece of loop work itself (a send) instead of waking the loop
/// thread for it — one thread hand-off less on every Raft message.
final class EventLoop: @unchecked Sendable {
    private let epfd: Int32
    private let wakeFD: Int32
    private let lock = NSLock()
    private let turnLock = NSLock()
    /// Per thread: the loop whose turn lock this thread holds outside the loop thread.
    nonisolated(unsafe) private static var turnKey: pthread_key_t = {
        var k = pthread_key_t()
        precondition(pthread_key_create(&k, nil) == 0, "pthread_key_create failed")
        return k
    }()
    private var pending: [() -> Void] = []
    private var wakePending = false
    /// Set (under `lock`) once the loop thread has exited and closed its descriptors: nothing
    /// more is queued or woken (the eventfd's number may belong to another file by then).
    private var exited = false
    private var handlers: [Int32: FDHandler] = [:]
    /// Timer callbacks by ID, and a min-heap of (deadline, ID); cancelled IDs are skipped lazily.
    private var timers: [UInt64: () -> Void] = [:]
    private var heap: [(deadline: UInt64, id: UInt64)] = []
    private var nextTimerID: UInt64 = 1
    private var stopped = false
    private var threadID: pthread_t? = nil
    /// Called at the end of every loop turn (coalesced flushes).
    private var turnEndHooks: [() -> Void] = []
    private var flushQueue: [() -> Void] = []
    private let name: String

    init(name: String = "p2pos-loop") throws {
        epfd = Epoll.create1(Epoll.cloexec)
        guard epfd >= 0 else { throw P2POSError("LOOP", "epoll_create1 failed: errno \(errno)") }
        wakeFD = Epoll.eventfd(0, Epoll.efdNonblock | Epoll.cloexec)
        guard wakeFD >= 0 else { throw P2POSError("LOOP", "eventfd failed: errno \(errno)") }
        self.name = name
        _ = Epoll.control(epfd, Epoll.ctlAdd, wakeFD, Epoll.IN)
        let t = Thread { [self] in self.run() }
        t.name = name
        t.stackSize = 1 << 20
        t.start()
    }

    /// True on the loop thread, and on a thread inside `runNowIfIdle` of this loop.
    var inLoop: Bool {
        if let t = threadID, pthread_equal(t, pthread_self()) != 0 { return true }
        return pthread_getspecific(EventLoop.turnKey) == Unmanaged.passUnretained(self).toOpaque()
    }

    /// Run `fn` on the calling thread, as loop work, if the loop thread is waiting for events
    /// (then work queued earlier runs first, so the order of everything handed to the loop
    /// holds); otherwise queue it like `execute`. Only for short, non-blocking work.
    func runNowIfIdle(_ fn: @escaping @Sendable () -> Void) {
        if inLoop { fn(); return }
        guard turnLock.try() else { execute(fn); return }
        // A stopped loop runs work only as it exits (see `run`): queue it for that.
        guard !stopped else { turnLock.unlock(); execute(fn); return }
        // Another loop's marker, when this thread is inside that loop's turn: put back after.
        let outer = pthread_getspecific(EventLoop.turnKey)
        pthread_setspecific(EventLoop.turnKey, Unmanaged.passUnretained(self).toOpaque())
        let soonest = heap.first?.deadline ?? .max
        runPending()
        fn()
        drainFlushes()
        // Work queued meanwhile skipped the wake-up (`inLoop` was true here), and a new
        // earlier timer needs a new timeout: wake the loop for either.
        let wake = lock.withLock { !pending.isEmpty } || (heap.first?.deadline ?? .max) < soonest
        pthread_setspecific(EventLoop.turnKey, outer)
        turnLock.unlock()
        if wake { lock.withLock { wakeLocked() } }
    }

    /// Run `fn` on the loop thread (queued; safe from any thread).
    /// Returns false, and drops `fn`, once the loop has exited: a caller holding a continuation
    /// must then answer it itself (work queued before the exit still runs, see `run`).
    @discardableResult
    func execute(_ fn: @escaping @Sendable () -> Void) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard !exited else { return false }
        pending.append(fn)
        let needWake = !wakePending
        wakePending = true
        // The loop thread itself needs no wake-up: it runs pending work before it waits again.
        // (Written under the lock, so the descriptor cannot be closed meanwhile.)
        if needWake && !inLoop { wakeLocked() }
        return true
    }

    /// Wake the loop thread (caller holds `lock`; not after the loop has exited).
    private func wakeLocked() {
        guard !exited else { return }
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    /// Run on the loop thread now if already there, otherwise queue.
    func run(_ fn: @escaping @Sendable () -> Void) {
        if inLoop { fn() } else { execute(fn) }
    }

    /// Queue a callback for the end of this loop turn (loop thread only).
    func atTurnEnd(_ fn: @escaping () -> Void) { flushQueue.append(fn) }

    /// Schedule `fn` after `seconds` (loop thread only). Returns an ID for `cancelTimer`.
    @discardableResult
    func schedule(after seconds: Double, _ fn: @escaping () -> Void) -> UInt64 {
        let id = nextTimerID
        nextTimerID += 1
        timers[id] = fn
        heapPush((Monotonic.nanos() + UInt64(max(0, seconds) * 1e9), id))
        return id
    }

    func cancelTimer(_ id: UInt64) { timers[id] = nil }

    private func heapPush(_ e: (deadline: UInt64, id: UInt64)) {
        heap.append(e)
        var i = heap.count - 1
        while i > 0 {
            let p = (i - 1) / 2
            if heap[p].deadline <= heap[i].deadline { break }
            heap.swapAt(p, i)
            i = p
        }
    }

    private func heapPop() -> (deadline: UInt64, id: UInt64)? {
        guard !heap.isEmpty else { return nil }
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < heap.count && heap[l].deadline < heap[m].deadline { m = l }
                if r < heap.count && heap[r].deadline < heap[m].deadline { m = r }
                if m == i { break }
                heap.swapAt(i, m)
                i = m
            }
        }
        return top
    }

    /// Drop cancelled timers from the top of the heap.
    private func pruneHeap() {
        while let top = heap.first, timers[top.id] == nil { _ = heapPop() }
    }

    func register(_ fd: Int32, _ h: FDHandler, write: Bool = false) {
        handlers[fd] = h
        _ = Epoll.control(epfd, Epoll.ctlAdd, fd, Epoll.IN | Epoll.RDHUP | (write ? Epoll.OUT : 0))
    }

    func setWriteInterest(_ fd: Int32, _ on: Bool) {
        _ = Epoll.control(epfd, Epoll.ctlMod, fd, Epoll.IN | Epoll.RDHUP | (on ? Epoll.OUT : 0))
    }

    func setReadInterest(_ fd: Int32, read: Bool, write: Bool) {
        _ = Epoll.control(epfd, Epoll.ctlMod, fd, (read ? Epoll.IN | Epoll.RDHUP : 0) | (write ? Epoll.OUT : 0))
    }

    func deregister(_ fd: Int32) {
        handlers[fd] = nil
        _ = Epoll.control(epfd, Epoll.ctlDel, fd, 0)
    }

    func stop() { execute { [self] in self.stopped = true } }

    private func run() {
        threadID = pthread_self()
        let maxEvents = 256
        let events = UnsafeMutableRawPointer.allocate(byteCount: maxEvents * Epoll.eventSize, alignment: 8)
        defer { events.deallocate() }
        turnLock.lock()
        while !stopped {
            var timeout: Int32 = -1
            pruneHeap()
            if let soonest = heap.first?.deadline {
                let now = Monotonic.nanos()
                timeout = soonest <= now ? 0 : Int32(min((soonest - now + 999_999) / 1_000_000, 60_000))
            }
            lock.lock()
            if !pending.isEmpty { timeout = 0 }
            lock.unlock()
            turnLock.unlock()
            let n = Epoll.wait(epfd, events, Int32(maxEvents), timeout)
            turnLock.lock()
            if n > 0 {
                for i in 0..<Int(n) {
                    let e = events.loadUnaligned(fromByteOffset: i * Epoll.eventSize, as: UInt32.self)
                    let fd = Int32(truncatingIfNeeded: events.loadUnaligned(fromByteOffset: i * Epoll.eventSize + Epoll.dataOffset, as: UInt64.self))
                    if fd == wakeFD {
                        var v: UInt64 = 0
                        _ = Glibc.read(wakeFD, &v, 8)
                        continue
                    }
                    if e & (Epoll.ERR | Epoll.HUP) != 0 && e & Epoll.IN == 0 {
                        handlers[fd]?.onHangup()
                        continue
                    }
                    if e & Epoll.OUT != 0 { handlers[fd]?.onWritable() }
                    if e & (Epoll.IN | Epoll.RDHUP | Epoll.HUP | Epoll.ERR) != 0 {
                        handlers[fd]?.onReadable()
                    }
                }
            }
            runPending()
            if !heap.isEmpty { runTimers() }
            drainFlushes()
        }
        for (fd, h) in handlers { _ = fd; h.onHangup() }
        handlers.removeAll()
        // Work queued before the exit still runs: it finds its connections closed and answers
        // whoever waits on it (a task suspended in a stream write, say) with an error instead of
        // never. Work queued from now on is refused (`execute` returns false).
        let leftover = lock.withLock { () -> [() -> Void] in
            exited = true
            let p = pending
            pending.removeAll()
            return p
        }
        for fn in leftover { fn() }
        drainFlushes()
        for (_, h) in handlers { h.onHangup() }    // anything that work opened meanwhile
        handlers.removeAll()
        turnLock.unlock()
        close(epfd)
        close(wakeFD)
    }

    private func runPending() {
        lock.lock()
        let work = pending
        pending.removeAll(keepingCapacity: true)
        wakePending = false
        lock.unlock()
        for fn in work { fn() }
        drainFlushes()
    }

    private func drainFlushes() {
        var rounds = 0
        while !flushQueue.isEmpty && rounds < 8 {
            let q = flushQueue
            flushQueue.removeAll(keepingCapacity: true)
            for fn in q { fn() }
            rounds += 1
        }
    }

    private func runTimers() {
        let now = Monotonic.nanos()
        while let top = heap.first, top.deadline <= now {
            _ = heapPop()
            if let fn = timers.removeValue(forKey: top.id) { fn() }
        }
    }
}
