import XCTest
import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import Support

final class BackgroundThreadTests: XCTestCase {
    private func niceOfCallingThread() -> Int32 { getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) }

    /// The work runs at the raised nice value, on a thread of its own; the caller's thread (and
    /// so the rest of the process) keeps its own.
    func testWorkRunsNicedAndTheCallerDoesNot() {
        let base = niceOfCallingThread()
        let worker = BackgroundThread(name: "test-bg", niceIncrement: 7)
        defer { worker.stop() }
        let seen = worker.run { () -> (nice: Int32, main: Bool) in
            (getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0), Thread.isMainThread)
        }
        XCTAssertEqual(seen.nice, min(19, base + 7))
        XCTAssertFalse(seen.main)
        XCTAssertEqual(worker.nice, min(19, base + 7))
        XCTAssertEqual(niceOfCallingThread(), base, "only the worker thread is niced")
        // A second job reuses the same thread: still niced.
        XCTAssertEqual(worker.run { getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) }, min(19, base + 7))
    }

    /// Jobs run one at a time in the order they were queued; `run` waits for its own job and
    /// everything queued before it.
    func testJobsRunInOrder() {
        let worker = BackgroundThread(name: "test-bg-order")
        defer { worker.stop() }
        final class Log: @unchecked Sendable {
            let lock = NSLock()
            var items: [Int] = []
            func add(_ i: Int) { lock.withLock { items.append(i) } }
        }
        let log = Log()
        for i in 0..<50 { worker.async { log.add(i) } }
        let count = worker.run { log.lock.withLock { log.items.count } }
        XCTAssertEqual(count, 50)
        XCTAssertEqual(log.items, Array(0..<50))
    }

    /// After `stop`, queued work still runs and later work runs inline on the caller's thread
    /// (never lost, never waiting for a thread that has exited).
    func testAfterStopWorkRunsInline() {
        let worker = BackgroundThread(name: "test-bg-stop")
        XCTAssertEqual(worker.run { 41 + 1 }, 42)
        worker.stop()
        let caller = pthread_self()
        XCTAssertNotEqual(pthread_equal(worker.run { pthread_self() }, caller), 0)
    }
}
