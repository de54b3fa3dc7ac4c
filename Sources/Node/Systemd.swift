import Foundation
import Support

/// `sd_notify` without libsystemd: datagrams to `$NOTIFY_SOCKET` (READY=1, STOPPING=1, WATCHDOG=1, STATUS=…).
public enum SystemdNotify {
    /// Send a notification; a no-op when not started by systemd.
    @discardableResult
    public static func send(_ message: String) -> Bool {
        guard var path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return false }
        if path.hasPrefix("@") { path = "\0" + path.dropFirst() }  // abstract namespace
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
        }
        let len = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (path.hasPrefix("\0") ? 0 : 1))
        let msg = Array(message.utf8)
        let n = withUnsafePointer(to: &addr) { ap in
            ap.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                msg.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, len) }
            }
        }
        return n == msg.count
    }

    /// Watchdog interval requested by systemd (`WATCHDOG_USEC`), if any.
    public static var watchdogInterval: Double? {
        guard let s = ProcessInfo.processInfo.environment["WATCHDOG_USEC"], let us = Double(s), us > 0 else { return nil }
        if let pid = ProcessInfo.processInfo.environment["WATCHDOG_PID"], let p = Int32(pid), p != getpid() { return nil }
        return us / 1_000_000
    }
}

/// Runs named tasks on start and at intervals on a serial queue; a failing task is logged and retried.
public final class Scheduler: @unchecked Sendable {
    public struct Task: Sendable {
        public let name: String
        public let interval: Double
        public let runOnStart: Bool
        public let body: @Sendable () throws -> Void
        public init(name: String, interval: Double, runOnStart: Bool = true, body: @escaping @Sendable () throws -> Void) {
            self.name = name
            self.interval = interval
            self.runOnStart = runOnStart
            self.body = body
        }
    }

    private let queue: DispatchQueue
    private var timers: [DispatchSourceTimer] = []
    private var failures: [String: Int] = [:]

    public init(label: String = "p2pos.scheduler") {
        queue = DispatchQueue(label: label)
    }

    public func add(_ task: Task) {
        let t = DispatchSource.makeTimerSource(queue: queue)
        let first: DispatchTime = task.runOnStart ? .now() : .now() + task.interval
        t.schedule(deadline: first, repeating: task.interval, leeway: .milliseconds(Int(max(1, task.interval * 50))))
        t.setEventHandler { [weak self] in self?.run(task) }
        timers.append(t)
        t.resume()
    }

    private func run(_ task: Task) {
        do {
            try task.body()
            if let n = failures[task.name], n > 0 {
                Log.info("scheduler", "task_recovered", ["task": task.name, "after_failures": n])
                failures[task.name] = 0
            }
        } catch {
            failures[task.name, default: 0] += 1
            Log.warn("scheduler", "task_failed", ["task": task.name, "reason": "\(error)", "failures": failures[task.name]!])
        }
    }

    public func stop() {
        for t in timers { t.cancel() }
        timers = []
    }
}
