// This process's resource use, for /metrics (Linux /proc and getrusage).
import Foundation

public enum ProcessStats {
    /// Resident set size in bytes (VmRSS), nil where /proc is unavailable.
    public static func residentBytes() -> Int? { statusField("VmRSS:").map { $0 * 1024 } }

    /// Peak resident set size in bytes (VmHWM) of this process, or of process `pid`.
    public static func peakResidentBytes(pid: Int32? = nil) -> Int? { statusField("VmHWM:", pid: pid).map { $0 * 1024 } }

    /// Virtual memory size in bytes (VmSize).
    public static func virtualBytes() -> Int? { statusField("VmSize:").map { $0 * 1024 } }

    /// Open file descriptors (entries of /proc/self/fd), nil where unavailable.
    public static func openFDs() -> Int? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return nil }
        return max(0, names.count - 1)    // the directory handle used to list it
    }

    /// User plus system CPU time used so far, in seconds.
    public static func cpuSeconds() -> Double {
        var u = rusage()
        guard getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u) == 0 else { return 0 }
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1_000_000 }
        return s(u.ru_utime) + s(u.ru_stime)
    }

    /// User plus system CPU time used so far by process `pid` (all its threads, from
    /// /proc/<pid>/stat), in seconds; nil when the process is gone or /proc is unavailable.
    public static func cpuSeconds(pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // After the command name (which may hold spaces and parentheses): state is field 3,
        // utime and stime are fields 14 and 15.
        let fields = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        return hz > 0 ? (user + system) / hz : nil
    }

    /// Summed `cpuSeconds(pid:)` of several processes; nil if any of them cannot be read.
    public static func cpuSeconds(pids: [Int32]) -> Double? {
        var total = 0.0
        for p in pids {
            guard let s = cpuSeconds(pid: p) else { return nil }
            total += s
        }
        return total
    }

    /// Size in bytes of the file at `path`, nil when it does not exist.
    public static func fileBytes(_ path: String) -> Int? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Int(st.st_size)
    }

    /// A "Name:   value kB" line of /proc/self/status (or /proc/<pid>/status), as the number.
    static func statusField(_ name: String, pid: Int32? = nil) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid.map { String($0) } ?? "self")/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return nil }
        return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
    }
}

/// The open-file limit (RLIMIT_NOFILE). Many distributions start processes with a soft limit of
/// 1,024 and a much higher hard limit; a node serving hundreds of connections raises its own
/// soft limit (as Go programs do by default) instead of failing `accept` with EMFILE.
public enum FileLimits {
    /// (soft, hard), nil where unavailable.
    public static func current() -> (soft: UInt64, hard: UInt64)? {
        var r = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &r) == 0 else { return nil }
        return (UInt64(r.rlim_cur), UInt64(r.rlim_max))
    }

    /// Raise the soft limit to at least `wanted` (never above the hard limit, never lowered).
    /// Returns the soft limit in force afterwards.
    @discardableResult
    public static func raiseSoftLimit(to wanted: UInt64) -> UInt64? {
        guard let (soft, hard) = current() else { return nil }
        if soft >= wanted { return soft }
        var r = rlimit()
        r.rlim_cur = rlim_t(min(wanted, hard))
        r.rlim_max = rlim_t(hard)
        guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &r) == 0 else { return soft }
        return UInt64(r.rlim_cur)
    }
}
