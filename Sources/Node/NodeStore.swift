import Foundation
import Membership
import Storage
import Support

/// One peer's presence row.
public struct PresenceRecord: Sendable, Equatable {
    public var peerID: String
    public var lastRemoteAddr: String
    public var lastSeenAt: Timestamp
    public var rttMs: Double?
    public var reachability: String
    public var observedBy: String

    public init(peerID: String, lastRemoteAddr: String, lastSeenAt: Timestamp, rttMs: Double?, reachability: String, observedBy: String) {
        self.peerID = peerID
        self.lastRemoteAddr = lastRemoteAddr
        self.lastSeenAt = lastSeenAt
        self.rttMs = rttMs
        self.reachability = reachability
        self.observedBy = observedBy
    }

    public var json: [String: Any] {
        var o: [String: Any] = ["peer_id": peerID, "last_remote_addr": lastRemoteAddr, "last_seen_at": lastSeenAt.rfc3339Nano,
                                "reachability": reachability, "observed_by": observedBy]
        if let r = rttMs { o["rtt_ms"] = (r * 1000).rounded() / 1000 }
        return o
    }
}

/// The daemon's own tables (membership snapshot, presence) in `<data_dir>/p2pos.db`.
/// Presence updates are buffered and flushed in one write transaction per flush.
public final class NodeStore: @unchecked Sendable {
    let db: SQLiteDB
    /// Guards the database connection (held across a whole write transaction, fsync included).
    private let lock = NSLock()
    /// Guards only the presence buffers, so recording a heartbeat (on the event loop) never
    /// waits for a flush's fsync.
    private let pendingLock = NSLock()
    private var pending: [String: PresenceRecord] = [:]
    /// The batch a flush is writing (still visible to `presence()` until it is written).
    private var flushing: [String: PresenceRecord] = [:]
    public private(set) var flushes = 0

    public init(path: String) throws {
        db = try SQLiteDB(path: path)
        try db.exec("""
        CREATE TABLE IF NOT EXISTS membership (id INTEGER PRIMARY KEY CHECK (id = 1), issued_at TEXT NOT NULL, json BLOB NOT NULL);
        CREATE TABLE IF NOT EXISTS presence (
            peer_id TEXT PRIMARY KEY, last_remote_addr TEXT NOT NULL, last_seen_ns INTEGER NOT NULL,
            rtt_ms REAL, reachability TEXT NOT NULL, observed_by TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """)
    }

    public func loadSnapshot() throws -> MembershipSnapshot? {
        lock.lock(); defer { lock.unlock() }
        guard let row = try db.query("SELECT json FROM membership WHERE id = 1").first, let b = row[0].blob else { return nil }
        return try MembershipSnapshot.decode(Data(b))
    }

    public func saveSnapshot(_ s: MembershipSnapshot) throws {
        lock.lock(); defer { lock.unlock() }
        try db.run("INSERT INTO membership (id, issued_at, json) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET issued_at = excluded.issued_at, json = excluded.json",
                   [.text(s.issuedAt), .blob([UInt8](s.jsonData()))])
    }

    public func meta(_ key: String) throws -> String? {
        lock.lock(); defer { lock.unlock() }
        return try db.query("SELECT value FROM meta WHERE key = ?", [.text(key)]).first?[0].text
    }

    public func setMeta(_ key: String, _ value: String) throws {
        lock.lock(); defer { lock.unlock() }
        try db.run("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [.text(key), .text(value)])
    }

    /// Buffer a presence update (newest wins per peer); written by the next flush.
    public func recordPresence(_ r: PresenceRecord) {
        pendingLock.lock()
        defer { pendingLock.unlock() }
        if let old = pending[r.peerID], old.lastSeenAt > r.lastSeenAt { return }
        var merged = r
        if merged.rttMs == nil { merged.rttMs = pending[r.peerID]?.rttMs }
        pending[r.peerID] = merged
    }

    /// Write all buffered presence in one transaction. Returns the number of rows written.
    @discardableResult
    public func flushPresence() throws -> Int {
        lock.lock(); defer { lock.unlock() }
        let batch: [String: PresenceRecord] = pendingLock.withLock {
            let b = pending
            pending = [:]
            flushing = b
            return b
        }
        guard !batch.isEmpty else { return 0 }
        defer { pendingLock.withLock { flushing = [:] } }
        try db.transaction {
            for r in batch.values {
                try db.run("""
                INSERT INTO presence (peer_id, last_remote_addr, last_seen_ns, rtt_ms, reachability, observed_by) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(peer_id) DO UPDATE SET
                  last_remote_addr = excluded.last_remote_addr, last_seen_ns = excluded.last_seen_ns,
                  rtt_ms = COALESCE(excluded.rtt_ms, presence.rtt_ms), reachability = excluded.reachability, observed_by = excluded.observed_by
                WHERE excluded.last_seen_ns >= presence.last_seen_ns
                """, [.text(r.peerID), .text(r.lastRemoteAddr), .int(r.lastSeenAt.seconds * 1_000_000_000 + Int64(r.lastSeenAt.nanos)),
                      r.rttMs.map { .double($0) } ?? .null, .text(r.reachability), .text(r.observedBy)])
            }
        }
        flushes += 1
        return batch.count
    }

    /// Presence rows (buffered updates included), newest first.
    public func presence() throws -> [PresenceRecord] {
        lock.lock(); defer { lock.unlock() }
        var out: [String: PresenceRecord] = [:]
        for row in try db.query("SELECT peer_id, last_remote_addr, last_seen_ns, rtt_ms, reachability, observed_by FROM presence") {
            let ns = row[2].int ?? 0
            var rtt: Double? = nil
            if case .double(let d) = row[3] { rtt = d }
            out[row[0].text ?? ""] = PresenceRecord(peerID: row[0].text ?? "", lastRemoteAddr: row[1].text ?? "",
                                                    lastSeenAt: Timestamp(seconds: ns / 1_000_000_000, nanos: Int32(ns % 1_000_000_000)),
                                                    rttMs: rtt, reachability: row[4].text ?? "", observedBy: row[5].text ?? "")
        }
        pendingLock.withLock {
            for buffer in [flushing, pending] {
                for (k, v) in buffer where (out[k]?.lastSeenAt ?? Timestamp(seconds: 0)) <= v.lastSeenAt { out[k] = v }
            }
        }
        return out.values.sorted { $0.lastSeenAt > $1.lastSeenAt }
    }
}

extension NodeStore {
    /// Remember a peer's advertised listen addresses (for reconnecting after restarts).
    public func setAddrs(_ peer: String, _ addrs: [String]) throws {
        try setMeta("addrs:" + peer, addrs.joined(separator: " "))
    }

    /// Forget the stored addresses of every peer not in `keep`.
    public func pruneAddrs(keep: Set<String>) throws {
        lock.lock(); defer { lock.unlock() }
        for row in try db.query("SELECT key FROM meta WHERE key LIKE 'addrs:%'") {
            guard let k = row[0].text, !keep.contains(String(k.dropFirst(6))) else { continue }
            try db.run("DELETE FROM meta WHERE key = ?", [.text(k)])
        }
    }

    public func allAddrs() throws -> [String: [String]] {
        lock.lock(); defer { lock.unlock() }
        var out: [String: [String]] = [:]
        for row in try db.query("SELECT key, value FROM meta WHERE key LIKE 'addrs:%'") {
            guard let k = row[0].text, let v = row[1].text else { continue }
            out[String(k.dropFirst(6))] = v.split(separator: " ").map(String.init)
        }
        return out
    }
}
