// Durable Raft state: hard state and log in segment files, snapshots in SQLite and files. See docs/adr/0003-raft-storage.md.
import Foundation
import Identity
import Raft
import Storage
import Support

/// A snapshot's data written to its own file next to `raft.db` (see `RaftStorage.writeSnapshotFile`).
public struct SnapshotFile: Sendable, Equatable {
    public let name: String
    /// The contents' checksum as `raft.db` records it (`SnapshotDigest`).
    public let digest: String
}

/// The checksum of a snapshot file, recorded in `raft_snapshot.sha256` (the column keeps its
/// first name): `blake2b-256:` and 64 hex digits for files written since the ninth session
/// (BLAKE2b is about three times faster here), or 64 bare hex digits — SHA-256 — for files
/// written before, which are still checked by that rule.
public enum SnapshotDigest {
    static let prefix = "blake2b-256:"

    /// A hasher for a new file.
    public final class Writer {
        private let h = Blake2b256.Hasher()
        public init() {}
        public func update(_ bytes: UnsafeRawBufferPointer) { h.update(bytes) }
        public func finish() -> String { prefix + h.finalizeHex() }
    }

    /// The digest `Writer` gives for `bytes`.
    public static func of(_ bytes: UnsafeRawBufferPointer) -> String {
        let w = Writer()
        w.update(bytes)
        return w.finish()
    }

    /// Whether `bytes` match a recorded digest of either form.
    public static func matches(_ bytes: UnsafeRawBufferPointer, _ recorded: String) -> Bool {
        if recorded.hasPrefix(prefix) { return of(bytes) == recorded }
        var h = SHA256.Hasher()
        h.update(bytes)
        return h.finalizeHex() == recorded
    }
}

/// The error for damaged storage: what is wrong, where, and what the operator can do.
func storageCorrupt(_ path: String, _ what: String) -> P2POSError {
    P2POSError("RAFT_STORAGE_CORRUPT", "\(path): \(what)", hint: "restore the data directory from a backup or re-join the node")
}

/// Durable Raft state: the hard state and the log in append-only segment files (`SegmentLog`, in
/// `raft-log/` next to `raft.db`), the latest snapshot's metadata in SQLite (`raft.db`, WAL,
/// synchronous=FULL) and its data in a file of its own. Every `save` is one write and one
/// `fdatasync` of the log, so one sync covers a whole `Ready` (group commit). Not thread-safe:
/// one owner uses it.
public final class RaftStorage {
    public let db: SQLiteDB
    /// Where snapshot files and the log directory live (the database's directory).
    public let dir: String
    /// The log directory (`<database name>-log`).
    public let logDir: String
    /// Snapshot files are named `<database name>-snapshot-<index>-<random>.bin` (`raft-snapshot-…`
    /// for raft.db), so databases sharing a directory keep apart.
    let snapshotPrefix: String
    let log: SegmentLog
    /// The index of the recorded snapshot: log segments whose entries are all at or below it
    /// are deleted.
    private var truncateTarget: UInt64 = 0
    /// Deletes the files a compaction made obsolete (log segments, older snapshot files) after
    /// `compact` has returned: unlinking tens of megabytes took 2–6 ms, on the Raft thread of
    /// every node at every compaction. Whatever a crash leaves undeleted is removed at the next
    /// open (unrecorded snapshot files, segments the recorded snapshot covers).
    private let cleanup = DispatchQueue(label: "p2pos.raft-storage.cleanup", qos: .utility)

    /// Opens (creating if needed) the database file at `path` and its log directory.
    /// The file is this process's alone (the daemon holds the data directory's lock), so SQLite
    /// keeps its file lock instead of taking it per transaction.
    public convenience init(path: String) throws {
        try self.init(db: SQLiteDB(path: path, synchronous: "FULL", exclusive: true))
    }

    /// Uses an already open database file (its tables are prefixed `raft_`) and the log directory
    /// next to it. `syncLog: false` skips the log's fdatasync (simulations only: nothing is durable).
    /// `segmentBytes`: size at which a new log segment starts.
    public init(db: SQLiteDB, syncLog: Bool = true, segmentBytes: Int = 64 << 20) throws {
        self.db = db
        guard db.path != ":memory:" && !db.path.isEmpty else {
            throw P2POSError("RAFT_STORAGE", "Raft storage needs a database file (its log and snapshots live next to it)")
        }
        let d = (db.path as NSString).deletingLastPathComponent
        dir = d.isEmpty ? "." : d
        let base = ((db.path as NSString).lastPathComponent as NSString).deletingPathExtension
        snapshotPrefix = base + "-snapshot-"
        logDir = dir + "/" + base + "-log"
        try db.exec("""
            CREATE TABLE IF NOT EXISTS raft_hard_state (
                k INTEGER PRIMARY KEY CHECK (k = 1),
                term INTEGER NOT NULL,
                vote TEXT,
                commit_index INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS raft_snapshot (
                k INTEGER PRIMARY KEY CHECK (k = 1),
                idx INTEGER NOT NULL,
                term INTEGER NOT NULL,
                conf BLOB NOT NULL,
                data BLOB NOT NULL,
                file TEXT,
                sha256 TEXT);
            CREATE TABLE IF NOT EXISTS raft_log (
                idx INTEGER PRIMARY KEY,
                term INTEGER NOT NULL,
                kind INTEGER NOT NULL,
                data BLOB NOT NULL);
            """)
        // Databases made before snapshot files: add the columns (the old rows keep their data inline).
        let columns = Set(try db.query("SELECT name FROM pragma_table_info('raft_snapshot')").compactMap { $0.first?.text })
        if !columns.contains("file") { try db.exec("ALTER TABLE raft_snapshot ADD COLUMN file TEXT") }
        if !columns.contains("sha256") { try db.exec("ALTER TABLE raft_snapshot ADD COLUMN sha256 TEXT") }
        let snapRow = try db.query("SELECT idx, file FROM raft_snapshot WHERE k = 1").first
        truncateTarget = snapRow?[0].int.map { UInt64(bitPattern: $0) } ?? 0
        // Files left by a crash between writing a snapshot file and recording it, first thing
        // (before the log is read).
        RaftStorage.removeSnapshotFiles(dir: dir, prefix: snapshotPrefix, except: snapRow?[1].text, below: nil)
        try RaftStorage.moveLogOutOfDatabase(db: db, logDir: logDir, sync: syncLog)
        log = try SegmentLog(dir: logDir, snapshotIndex: truncateTarget, sync: syncLog, segmentBytes: segmentBytes)
        log.dropSegments(through: truncateTarget)
    }

    /// Storage written before the log had files of its own kept the hard state and the entries in
    /// `raft_hard_state` and `raft_log`. They are copied into a new log directory (written under a
    /// temporary name, synced, then renamed, so a crash leaves either the old tables in charge or
    /// the complete directory) and then deleted from the database. A new node gets an empty log
    /// the same way.
    static func moveLogOutOfDatabase(db: SQLiteDB, logDir: String, sync: Bool) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        if fm.fileExists(atPath: logDir, isDirectory: &isDir) {
            guard isDir.boolValue else { throw P2POSError("RAFT_STORAGE", "\(logDir) exists and is not a directory") }
            // A crash after the rename and before the tables were emptied: the directory wins.
            if try db.query("SELECT EXISTS(SELECT 1 FROM raft_log) OR EXISTS(SELECT 1 FROM raft_hard_state)").first?.first?.int == 1 {
                try db.transaction {
                    try db.run("DELETE FROM raft_log")
                    try db.run("DELETE FROM raft_hard_state")
                }
            }
            return
        }
        let tmp = logDir + ".tmp"
        if fm.fileExists(atPath: tmp) {
            do { try fm.removeItem(atPath: tmp) } catch {
                throw P2POSError("RAFT_STORAGE", "cannot remove the unfinished \(tmp): \(error.localizedDescription)")
            }
        }
        var hardState: HardState?
        if let row = try db.query("SELECT term, vote, commit_index FROM raft_hard_state WHERE k = 1").first {
            guard let t = row[0].int, let c = row[2].int else {
                throw storageCorrupt(db.path, "non-integer value in raft_hard_state")
            }
            hardState = HardState(term: UInt64(bitPattern: t), vote: row[1].text, commit: UInt64(bitPattern: c))
        }
        var entries: [Entry] = []
        for r in try db.query("SELECT idx, term, kind, data FROM raft_log ORDER BY idx") {
            guard let i = r[0].int, let t = r[1].int, let k = r[2].int, k >= 0, k < 256,
                  let kind = EntryKind(rawValue: UInt8(k)) else {
                throw storageCorrupt(db.path, "unreadable row in raft_log")
            }
            entries.append(Entry(term: UInt64(bitPattern: t), index: UInt64(bitPattern: i), kind: kind, data: r[3].blob ?? []))
        }
        try SegmentLog.create(dir: tmp, hardState: hardState, entries: entries, sync: sync)
        guard rename(tmp, logDir) == 0 else {
            throw P2POSError("RAFT_STORAGE", "cannot rename \(tmp) to \(logDir): \(String(cString: strerror(errno)))")
        }
        if sync { try SegmentLog.syncDirectory((logDir as NSString).deletingLastPathComponent) }
        try db.transaction {
            try db.run("DELETE FROM raft_log")
            try db.run("DELETE FROM raft_hard_state")
        }
        if !entries.isEmpty || hardState != nil {
            // Give the emptied table's pages back to the file system (once).
            try db.exec("VACUUM")
            Log.info("raft", "log_moved_to_files", ["dir": logDir, "entries": entries.count])
        }
    }

    // MARK: snapshot files

    /// Start a new snapshot file in `dir` under a temporary name; the caller writes the data a
    /// piece at a time and then `finish`es it (fsync, rename, fsync of the directory), so it is
    /// durable before any database row refers to it. Safe on any thread (it reads only
    /// immutable properties).
    public func createSnapshotFile(index: UInt64) throws -> SnapshotFileWriter {
        try SnapshotFileWriter(dir: dir, name: snapshotPrefix + "\(index)-\(UInt32.random(in: 0...UInt32.max)).bin")
    }

    /// Write `data` to a new snapshot file (see `createSnapshotFile`). Safe on any thread.
    public func writeSnapshotFile(index: UInt64, data: SnapshotData) throws -> SnapshotFile {
        let w = try createSnapshotFile(index: index)
        do {
            try data.withUnsafeBytes { try w.write($0) }
            return try w.finish()
        } catch {
            w.abandon()
            throw error
        }
    }

    public func writeSnapshotFile(index: UInt64, data: [UInt8]) throws -> SnapshotFile {
        try writeSnapshotFile(index: index, data: SnapshotData(data))
    }

    /// The bytes of a finished snapshot file, mapped read-only rather than read onto the heap (the
    /// file never changes once written). With `digest`, the contents are checked against it.
    /// Safe on any thread.
    public func mapSnapshotFile(_ name: String, digest: String?) throws -> SnapshotData {
        let path = dir + "/" + name
        let corrupt = { (why: String) in
            storageCorrupt(self.db.path, "snapshot file \(path) \(why)")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw corrupt("is missing or unreadable (\(String(cString: strerror(errno))))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw corrupt("cannot be examined (\(String(cString: strerror(errno))))") }
        let size = Int(st.st_size)
        let data: SnapshotData
        if size == 0 {
            data = SnapshotData([])
        } else {
            guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
                throw corrupt("cannot be mapped (\(String(cString: strerror(errno))))")
            }
            let addr = UInt(bitPattern: p)
            data = SnapshotData(mapping: UnsafeRawPointer(p), count: size) {
                munmap(UnsafeMutableRawPointer(bitPattern: addr), size)
            }
        }
        if let digest {
            guard data.withUnsafeBytes({ SnapshotDigest.matches($0, digest) }) else { throw corrupt("does not match its recorded checksum") }
        }
        return data
    }

    /// Delete a snapshot file that was written but will not be recorded. Safe on any thread.
    public func discardSnapshotFile(_ file: SnapshotFile) {
        unlink(dir + "/" + file.name)
    }

    /// Remove snapshot files other than `keep`. At open (`below == nil`) every other file goes,
    /// temporary ones included; later only finished files of an older index, because another
    /// thread may be writing the next snapshot's file while this one is recorded.
    private func removeSnapshotFiles(except keep: String?, below: UInt64? = nil) {
        RaftStorage.removeSnapshotFiles(dir: dir, prefix: snapshotPrefix, except: keep, below: below)
    }

    private static func removeSnapshotFiles(dir: String, prefix: String, except keep: String?, below: UInt64?) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        for n in names where n.hasPrefix(prefix) && n != keep {
            if let below {
                let rest = n.dropFirst(prefix.count)
                guard n.hasSuffix(".bin"), let index = rest.split(separator: "-").first.flatMap({ UInt64($0) }), index < below else { continue }
            }
            unlink(dir + "/" + n)
        }
    }

    /// Persists one `Ready`'s durable part: snapshot first, then entries, then hard state.
    @discardableResult
    public func save(_ rd: Ready) throws -> SnapshotFile? {
        try save(hardState: rd.hardState, entries: rd.entries, snapshot: rd.snapshot)
    }

    /// Writes everything durably. A snapshot replaces the whole stored log (its row is committed
    /// first, then the log restarts with a reset record); entries replace any stored entry at or
    /// after `entries.first.index`. Returns the file a snapshot's data went to (nil without a snapshot).
    /// `snapshotFile`: the snapshot's data is already durable in this file (written with
    /// `createSnapshotFile`), which is recorded instead of writing `snapshot.data` again.
    @discardableResult
    public func save(hardState: HardState?, entries: [Entry], snapshot: Snapshot? = nil, snapshotFile: SnapshotFile? = nil) throws -> SnapshotFile? {
        if hardState == nil && entries.isEmpty && snapshot == nil { return nil }
        guard let s = snapshot else {
            try log.append(entries: entries, hardState: hardState)
            return nil
        }
        // A received snapshot's data goes to its file before the row that records it.
        let file = try snapshotFile ?? writeSnapshotFile(index: s.metadata.index, data: s.data)
        try db.transaction { try writeSnapshot(s.metadata, data: s.data, file: file) }
        // (A failed COMMIT may still have reached the WAL, so a file it might name is never deleted
        // here; opening the database removes files no row names.) A crash here leaves the old log
        // with the new row: loading keeps only what is consistent with the snapshot.
        try log.reset(index: s.metadata.index, term: s.metadata.term, entries: entries, hardState: hardState)
        truncateTarget = s.metadata.index
        removeSnapshotFiles(except: file.name, below: s.metadata.index)
        return file
    }

    /// Stores a snapshot the application took (after `RaftNode.compact`): its data in a file; the
    /// log segments it covers are deleted (just after the call returns, see `cleanup`).
    public func compact(snapshot meta: SnapshotMetadata, data: [UInt8]) throws {
        try compact(snapshot: meta, data: SnapshotData(data))
    }

    public func compact(snapshot meta: SnapshotMetadata, data: SnapshotData) throws {
        try compact(snapshot: meta, file: try writeSnapshotFile(index: meta.index, data: data))
    }

    /// Record a snapshot whose data is already durable in `file` (written off the Raft thread
    /// with `writeSnapshotFile`). Only the small row changes here; the log segments whose entries
    /// it covers and older snapshot files are deleted on `cleanup` just after this returns (the
    /// log forgets the segments at once).
    public func compact(snapshot meta: SnapshotMetadata, file: SnapshotFile) throws {
        // Deletion trusts the recorded index, so it only moves forward.
        guard meta.index > truncateTarget else {
            throw P2POSError("RAFT_STORAGE", "snapshot at index \(meta.index) is not after the recorded one at \(truncateTarget)")
        }
        try db.transaction { try writeSnapshot(meta, data: [], file: file) }
        truncateTarget = meta.index
        let segments = log.detachSegments(through: meta.index)
        let (dir, prefix, keep, below) = (dir, snapshotPrefix, file.name, meta.index)
        cleanup.async {
            for path in segments { unlink(path) }
            RaftStorage.removeSnapshotFiles(dir: dir, prefix: prefix, except: keep, below: below)
        }
    }

    /// Returns once the files of every earlier `compact` are deleted.
    public func waitForCleanup() { cleanup.sync {} }

    /// An instance finishes its deletions before it goes: a storage opened again on the same
    /// directory in this process (the simulator's crash and restart) would otherwise list a
    /// segment file that is unlinked before it reads it.
    deinit { cleanup.sync {} }

    /// Number of log segments the log holds (the active one included); files of segments a
    /// compaction dropped may still be on disk until `cleanup` has run.
    public var logSegmentCount: Int { log.segmentCount }

    /// Everything needed to construct a `RaftNode` after a restart.
    public func load() throws -> RaftInitialState {
        var state = RaftInitialState()
        var from: UInt64 = 0
        var snapTerm: UInt64 = 0
        if let row = try db.query("SELECT idx, term, conf, data, file, sha256 FROM raft_snapshot WHERE k = 1").first {
            let conf: ConfState
            do { conf = try ConfState.decode(row[2].blob ?? []) } catch {
                throw storageCorrupt(db.path, "stored snapshot configuration is unreadable (\(error))")
            }
            let meta = SnapshotMetadata(index: try u64(row[0]), term: try u64(row[1]), conf: conf)
            let data: SnapshotData
            if let name = row[4].text {
                guard let sha = row[5].text else {
                    throw storageCorrupt(db.path, "snapshot file \(name) has no recorded checksum")
                }
                data = try mapSnapshotFile(name, digest: sha)
            } else {
                data = SnapshotData(row[3].blob ?? [])
            }
            state.snapshot = Snapshot(metadata: meta, data: data)
            from = meta.index
            snapTerm = meta.term
        }
        let replay = try log.read(after: from)
        state.hardState = replay.hardState ?? HardState()
        state.entries = replay.entries
        if let first = state.entries.first, first.index != from + 1 {
            throw storageCorrupt(logDir, "the log resumes at index \(first.index), after a snapshot at \(from)")
        }
        // A crash between recording a received snapshot and restarting the log leaves the old log:
        // entries after the snapshot stay only if the log agrees with it at its index.
        if from > 0, let t = replay.termAtAfter, t != snapTerm { state.entries = [] }
        return state
    }

    /// Stored entries with index > `after`, in order.
    public func entries(after: UInt64) throws -> [Entry] {
        try log.read(after: after).entries
    }

    /// Index of the last stored entry (or of the snapshot when the log is empty).
    public func lastIndex() throws -> UInt64 {
        max(log.lastIndex, truncateTarget)
    }

    private func writeSnapshot(_ meta: SnapshotMetadata, data: SnapshotData, file: SnapshotFile?) throws {
        try db.run("""
            INSERT INTO raft_snapshot (k, idx, term, conf, data, file, sha256) VALUES (1, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(k) DO UPDATE SET idx = excluded.idx, term = excluded.term, conf = excluded.conf,
                data = excluded.data, file = excluded.file, sha256 = excluded.sha256
            """, [.int(i64(meta.index)), .int(i64(meta.term)), .blob(meta.conf.encode()), .blob(file == nil ? data.array : []),
                  file.map { .text($0.name) } ?? .null, file.map { .text($0.digest) } ?? .null])
    }

    private func i64(_ v: UInt64) -> Int64 { Int64(bitPattern: v) }

    private func u64(_ v: SQLValue) throws -> UInt64 {
        guard let i = v.int else {
            throw storageCorrupt(db.path, "non-integer value in raft tables")
        }
        return UInt64(bitPattern: i)
    }
}

/// One snapshot file being written (see `RaftStorage.createSnapshotFile`): bytes go to a
/// temporary file and into its SHA-256; `finish` makes it durable under its final name,
/// `abandon` removes it. One thread uses it at a time.
public final class SnapshotFileWriter {
    let dir: String
    let name: String
    let tmp: String
    private var fd: Int32
    private let hasher = SnapshotDigest.Writer()
    /// Bytes written so far.
    public private(set) var size = 0

    init(dir: String, name: String) throws {
        self.dir = dir
        self.name = name
        tmp = dir + "/" + name + ".tmp"
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw P2POSError("RAFT_STORAGE", "cannot create \(tmp): \(String(cString: strerror(errno)))") }
    }

    deinit { abandon() }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard fd >= 0 else { throw P2POSError("RAFT_STORAGE", "snapshot file \(tmp) is already closed") }
        var off = 0
        while off < bytes.count {
            let n = Foundation.write(fd, bytes.baseAddress! + off, bytes.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw P2POSError("RAFT_STORAGE", "cannot write snapshot file \(tmp): \(String(cString: strerror(errno)))")
            }
            off += n
        }
        hasher.update(bytes)
        size += bytes.count
    }

    /// fsync, rename to the final name, fsync the directory. On failure nothing is left behind.
    public func finish() throws -> SnapshotFile {
        guard fd >= 0 else { throw P2POSError("RAFT_STORAGE", "snapshot file \(tmp) is already closed") }
        var err: Int32 = 0
        if fsync(fd) != 0 { err = errno }
        close(fd)
        fd = -1
        if err == 0 && rename(tmp, dir + "/" + name) != 0 { err = errno }
        guard err == 0 else {
            unlink(tmp)
            throw P2POSError("RAFT_STORAGE", "cannot write snapshot file \(tmp): \(String(cString: strerror(err)))")
        }
        // The rename must be durable before a row names the file.
        let dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0, fsync(dfd) == 0 else {
            let e = errno
            if dfd >= 0 { close(dfd) }
            unlink(dir + "/" + name)
            throw P2POSError("RAFT_STORAGE", "cannot sync directory \(dir) after writing \(name): \(String(cString: strerror(e)))")
        }
        close(dfd)
        return SnapshotFile(name: name, digest: hasher.finish())
    }

    /// Close and delete the unfinished file (nothing after `finish`).
    public func abandon() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
        unlink(tmp)
    }
}
