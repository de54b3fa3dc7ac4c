// Durable Raft state (hard state, log, snapshot) in SQLite. See docs/adr/0003-raft-storage.md.
import Raft
import Storage
import Support

/// Durable Raft hard state, log entries and latest snapshot in one SQLite database
/// (WAL, synchronous=FULL). Every `save` is one transaction, so one fsync covers a whole
/// `Ready` (group commit). Not thread-safe: one owner uses it.
public final class RaftStorage {
    public let db: SQLiteDB

    /// Opens (creating if needed) the database file at `path`.
    /// The file is this process's alone (the daemon holds the data directory's lock), so SQLite
    /// keeps its file lock instead of taking it per transaction.
    public convenience init(path: String) throws {
        try self.init(db: SQLiteDB(path: path, synchronous: "FULL", exclusive: true))
    }

    /// Uses an already open database (its tables are prefixed `raft_`).
    public init(db: SQLiteDB) throws {
        self.db = db
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
                data BLOB NOT NULL);
            CREATE TABLE IF NOT EXISTS raft_log (
                idx INTEGER PRIMARY KEY,
                term INTEGER NOT NULL,
                kind INTEGER NOT NULL,
                data BLOB NOT NULL);
            """)
    }

    /// Persists one `Ready`'s durable part: snapshot first, then entries, then hard state.
    public func save(_ rd: Ready) throws {
        try save(hardState: rd.hardState, entries: rd.entries, snapshot: rd.snapshot)
    }

    /// Writes everything in one transaction. A snapshot replaces the whole stored log; entries
    /// replace any stored entry at or after `entries.first.index`.
    public func save(hardState: HardState?, entries: [Entry], snapshot: Snapshot? = nil) throws {
        if hardState == nil && entries.isEmpty && snapshot == nil { return }
        try db.transaction {
            if let s = snapshot {
                try writeSnapshot(s.metadata, data: s.data)
                try db.run("DELETE FROM raft_log")
            }
            if let first = entries.first {
                try db.run("DELETE FROM raft_log WHERE idx >= ?", [.int(i64(first.index))])
                for e in entries {
                    try db.run("INSERT INTO raft_log (idx, term, kind, data) VALUES (?, ?, ?, ?)",
                               [.int(i64(e.index)), .int(i64(e.term)), .int(Int64(e.kind.rawValue)), .blob(e.data)])
                }
            }
            if let hs = hardState {
                try db.run("""
                    INSERT INTO raft_hard_state (k, term, vote, commit_index) VALUES (1, ?, ?, ?)
                    ON CONFLICT(k) DO UPDATE SET term = excluded.term, vote = excluded.vote,
                        commit_index = excluded.commit_index
                    """, [.int(i64(hs.term)), hs.vote.map { .text($0) } ?? .null, .int(i64(hs.commit))])
            }
        }
    }

    /// Stores a snapshot the application took (after `RaftNode.compact`) and deletes the
    /// entries it covers, in one transaction.
    public func compact(snapshot meta: SnapshotMetadata, data: [UInt8]) throws {
        try db.transaction {
            try writeSnapshot(meta, data: data)
            try db.run("DELETE FROM raft_log WHERE idx <= ?", [.int(i64(meta.index))])
        }
    }

    /// Everything needed to construct a `RaftNode` after a restart.
    public func load() throws -> RaftInitialState {
        var state = RaftInitialState()
        if let row = try db.query("SELECT term, vote, commit_index FROM raft_hard_state WHERE k = 1").first {
            state.hardState = HardState(term: try u64(row[0]), vote: row[1].text, commit: try u64(row[2]))
        }
        var from: UInt64 = 0
        if let row = try db.query("SELECT idx, term, conf, data FROM raft_snapshot WHERE k = 1").first {
            let conf: ConfState
            do { conf = try ConfState.decode(row[2].blob ?? []) } catch {
                throw P2POSError("RAFT_STORAGE_CORRUPT", "\(db.path): stored snapshot configuration is unreadable (\(error))",
                                 hint: "restore the data directory from a backup or re-join the node")
            }
            let meta = SnapshotMetadata(index: try u64(row[0]), term: try u64(row[1]), conf: conf)
            state.snapshot = Snapshot(metadata: meta, data: row[3].blob ?? [])
            from = meta.index
        }
        state.entries = try entries(after: from)
        return state
    }

    /// Stored entries with index > `after`, in order.
    public func entries(after: UInt64) throws -> [Entry] {
        let rows = try db.query("SELECT idx, term, kind, data FROM raft_log WHERE idx > ? ORDER BY idx",
                                [.int(i64(after))])
        var out: [Entry] = []
        out.reserveCapacity(rows.count)
        for r in rows {
            guard let k = r[2].int, let kind = EntryKind(rawValue: UInt8(truncatingIfNeeded: k)), k >= 0, k < 256 else {
                throw P2POSError("RAFT_STORAGE_CORRUPT", "\(db.path): entry with unknown kind",
                                 hint: "restore the data directory from a backup or re-join the node")
            }
            out.append(Entry(term: try u64(r[1]), index: try u64(r[0]), kind: kind, data: r[3].blob ?? []))
        }
        return out
    }

    /// Index of the last stored entry (or of the snapshot when the log is empty).
    public func lastIndex() throws -> UInt64 {
        if let v = try db.query("SELECT MAX(idx) FROM raft_log").first?.first?.int { return UInt64(bitPattern: v) }
        if let v = try db.query("SELECT idx FROM raft_snapshot WHERE k = 1").first?.first?.int { return UInt64(bitPattern: v) }
        return 0
    }

    private func writeSnapshot(_ meta: SnapshotMetadata, data: [UInt8]) throws {
        try db.run("""
            INSERT INTO raft_snapshot (k, idx, term, conf, data) VALUES (1, ?, ?, ?, ?)
            ON CONFLICT(k) DO UPDATE SET idx = excluded.idx, term = excluded.term, conf = excluded.conf,
                data = excluded.data
            """, [.int(i64(meta.index)), .int(i64(meta.term)), .blob(meta.conf.encode()), .blob(data)])
    }

    private func i64(_ v: UInt64) -> Int64 { Int64(bitPattern: v) }

    private func u64(_ v: SQLValue) throws -> UInt64 {
        guard let i = v.int else {
            throw P2POSError("RAFT_STORAGE_CORRUPT", "\(db.path): non-integer value in raft tables",
                             hint: "restore the data directory from a backup or re-join the node")
        }
        return UInt64(bitPattern: i)
    }
}
