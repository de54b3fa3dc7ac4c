import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One dedicated thread that runs bulk work at a lower CPU priority (a higher nice value) than
/// the rest of the process, so that the work fills idle CPU time instead of taking it from the
/// threads on the latency path. Used for compaction snapshots: building one reads the whole
/// ledger, and on a busy node it competed with admission, replication and apply (measured:
/// docs/benchmarks.md, fifteenth session).
///
/// The nice value is per thread on Linux (`setpriority(PRIO_PROCESS, 0, …)` changes only the
/// calling thread), and an unprivileged process cannot lower it again, which is why this is a
/// thread of its own and not a pooled dispatch worker that other work would reuse afterwards.
/// Work still progresses under full load, only slower: against one busy thread at nice 0 the
/// scheduler gives a nice-10 thread about a tenth of a core, a nice-19 thread (what snapshots
/// use) about 1.5 %.
public final class BackgroundThread: @unchecked Sendable {
    public let name: String
    /// The nice value added to the process's (the kernel caps the result at 19).
    public let niceIncrement: Int32
    private let cond = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var thread: Thread?
    private var stopping = false
    private var appliedNice: Int32?
    /// The thread's nice value once it has started and set it (nil before, or if that failed).
    public var nice: Int32? {
        cond.lock()
        defer { cond.unlock() }
        return appliedNice
    }

    public init(name: String, niceIncrement: Int32 = 10) {
        self.name = name
        self.niceIncrement = niceIncrement
    }

    /// Run `body` on the background thread, wait until it has finished, and return its result.
    public func run<T>(_ body: @escaping @Sendable () -> T) -> T {
        let box = Box<T>()
        let done = DispatchSemaphore(value: 0)
        enqueue {
            box.value = body()
            done.signal()
        }
        done.wait()
        return box.value!
    }

    private final class Box<T>: @unchecked Sendable {
        var value: T?
    }

    /// Queue `body` for the background thread and return at once (FIFO with `run`).
    public func async(_ body: @escaping @Sendable () -> Void) {
        enqueue(body)
    }

    /// Let the thread finish the queued work and exit. Later calls run their work inline.
    public func stop() {
        cond.lock()
        stopping = true
        cond.broadcast()
        cond.unlock()
    }

    private func enqueue(_ body: @escaping @Sendable () -> Void) {
        cond.lock()
        if stopping {
            cond.unlock()
            body()
            return
        }
        jobs.append(body)
        if thread == nil {
            let t = Thread { [self] in loop() }
            t.name = name
            thread = t
            t.start()
        }
        cond.signal()
        cond.unlock()
    }

    private func loop() {
        // The kernel's name for this thread (15 bytes at most), so that `top -H` and /proc show
        // it (`pthread_setname_np` is not visible to Swift here; this is what it does on Linux).
        let fd = open("/proc/thread-self/comm", O_WRONLY)
        if fd >= 0 {
            let bytes = Array(name.utf8.prefix(15))
            _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        // Only this thread: on Linux the nice value is a per-thread attribute.
        let base = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        let target = min(19, base + niceIncrement)
        if setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, target) == 0 {
            cond.lock()
            appliedNice = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
            cond.unlock()
        } else {
            Log.warn("support", "nice_failed", ["thread": name, "reason": String(cString: strerror(errno))])
        }
        while true {
            cond.lock()
            while jobs.isEmpty && !stopping { cond.wait() }
            if jobs.isEmpty {
                thread = nil
                cond.unlock()
                return
            }
            let job = jobs.removeFirst()
            cond.unlock()
            job()
        }
    }
}
