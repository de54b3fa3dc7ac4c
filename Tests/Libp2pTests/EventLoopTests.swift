import Foundation
@testable import Libp2p
import XCTest

/// The loop's own guarantees: work handed to it runs in order whichever way it was handed over,
/// `runNowIfIdle` runs on the caller's thread only while the loop sleeps, and a stopped loop
/// neither runs nor wakes anything.
final class EventLoopTests: XCTestCase {
    final class Box: @unchecked Sendable {
        let lock = NSLock()
        var order: [Int] = []
        var onCaller = 0
        func add(_ i: Int) { lock.withLock { order.append(i) } }
    }

    func testWorkRunsInOrderWhetherQueuedOrRunInline() throws {
        let loop = try EventLoop(name: "test-loop")
        defer { loop.stop() }
        let box = Box()
        let n = 2_000
        for i in 0..<n {
            if i % 3 == 0 {
                loop.execute { box.add(i) }
            } else {
                let caller = pthread_self()
                loop.runNowIfIdle {
                    if pthread_equal(caller, pthread_self()) != 0 { box.lock.withLock { box.onCaller += 1 } }
                    XCTAssertTrue(loop.inLoop)
                    box.add(i)
                }
            }
        }
        let done = expectation(description: "all ran")
        loop.execute { done.fulfill() }
        wait(for: [done], timeout: 10)
        XCTAssertEqual(box.order, Array(0..<n))
        XCTAssertGreaterThan(box.onCaller, 0, "some sends found the loop idle and ran on the caller's thread")
        XCTAssertFalse(loop.inLoop)
    }

    func testTimerSetInlineWakesTheLoop() throws {
        let loop = try EventLoop(name: "test-loop")
        defer { loop.stop() }
        Thread.sleep(forTimeInterval: 0.05)    // the loop is asleep in epoll_wait, with no timer
        let fired = expectation(description: "timer fired")
        loop.runNowIfIdle { loop.schedule(after: 0.01) { fired.fulfill() } }
        wait(for: [fired], timeout: 5)
    }

    func testStoppedLoopRunsNothing() throws {
        let loop = try EventLoop(name: "test-loop")
        let stopped = expectation(description: "stopped")
        loop.execute { stopped.fulfill() }
        loop.stop()
        wait(for: [stopped], timeout: 5)
        Thread.sleep(forTimeInterval: 0.1)     // the thread exits and closes its descriptors
        let box = Box()
        loop.execute { box.add(1) }
        loop.runNowIfIdle { box.add(2) }
        Thread.sleep(forTimeInterval: 0.1)
        XCTAssertEqual(box.order, [])
    }
}
