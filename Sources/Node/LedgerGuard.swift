import Foundation
import Support

/// Decides, before the ledger is opened, whether `ledger.db` can be trusted.
///
/// The ledger is derived state: it can always be rebuilt from the Raft snapshot and log, which
/// are fsynced. So it is written without fsync (`synchronous=OFF`). Its WAL appends and
/// checkpoints then stay in the page cache and reach the disk in the kernel's own time, instead
/// of competing with the Raft log's fsyncs for the device on every checkpoint.
///
/// A killed process (kill -9, OOM) loses nothing: the kernel already holds every write it made.
/// Only a crash of the machine itself (power loss, kernel panic) can leave `ledger.db` torn or
/// behind the page cache it was written to. `ledger.state` tells these cases apart:
/// - `open <boot id>` is written (fsynced) when the ledger is opened;
/// - `clean` is written after a clean stop, once the ledger is checkpointed and fsynced.
///
/// At the next start, `clean` or the same boot id means the file is sound. A different boot id
/// means the machine went down while the ledger was open. Then `ledger.db` is removed, and the
/// node rebuilds it from the Raft snapshot and the log, as a new member would.
enum LedgerGuard {
    static let stateFile = "ledger.state"

    /// The kernel's id for this boot, or nil where there is none to read.
    static func bootID() -> String? {
        guard let s = try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8) else { return nil }
        let t = s.trimmingCharacters(in: .whitespacesAndNewlines)
        return t.isEmpty ? nil : t
    }

    /// Check the last state, discard a ledger that a machine crash may have torn, and record
    /// that the ledger is open in this boot. Returns why the ledger was discarded, if it was.
    @discardableResult
    static func open(dataDir: String) throws -> String? {
        let path = dataDir + "/" + stateFile
        let boot = bootID()
        var discarded: String? = nil
        if let last = try? String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) {
            if last == "clean" {
                // Stopped cleanly: checkpointed and fsynced.
            } else if last.hasPrefix("open "), let b = boot, String(last.dropFirst(5)) == b {
                // The process died, the machine did not: the kernel kept every write.
            } else {
                discarded = last.hasPrefix("open ")
                    ? "the machine restarted (boot id changed) while the ledger was open"
                    : "unreadable \(stateFile)"
            }
        } else if FileManager.default.fileExists(atPath: path) {
            discarded = "unreadable \(stateFile)"
        }
        // No state file and a ledger: written by a version that fsynced it; trusted.
        if let why = discarded {
            for suffix in ["", "-wal", "-shm"] {
                let f = dataDir + "/ledger.db" + suffix
                if FileManager.default.fileExists(atPath: f) { try FileManager.default.removeItem(atPath: f) }
            }
            Log.warn("ledger", "ledger_rebuild", ["reason": why, "from": "raft snapshot and log"])
        }
        try SecureFile.write(path, "open \(boot ?? "unknown")\n", overwrite: true)
        return discarded
    }

    /// After a clean stop, once the ledger is committed and checkpointed: fsync `ledger.db` and
    /// its WAL, then record `clean` (not recorded when a sync fails).
    static func markClean(dataDir: String) {
        for f in ["/ledger.db", "/ledger.db-wal"] where FileManager.default.fileExists(atPath: dataDir + f) {
            let fd = Foundation.open(dataDir + f, O_RDONLY | O_CLOEXEC)
            let synced = fd >= 0 && fsync(fd) == 0
            if fd >= 0 { close(fd) }
            guard synced else {
                Log.warn("ledger", "sync_failed", ["file": String(f.dropFirst()), "reason": String(cString: strerror(errno))])
                return
            }
        }
        do { try SecureFile.write(dataDir + "/" + stateFile, "clean\n", overwrite: true) } catch {
            Log.warn("ledger", "state_write_failed", ["reason": "\(error)"])
        }
    }
}
