import Identity
import Storage
import Support
import Wire

/// The outcome of applying (or re-submitting) one tx.
public struct TxResult: Equatable, Sendable {
    /// `applied` changed state and appended an event; `rejected` changed nothing but the record of the tx.
    public enum Status: String, Sendable { case applied, rejected }

    /// nil when the bytes were not a decodable, signed tx.
    public var txID: String?
    public var status: Status
    /// Set when rejected.
    public var code: RejectCode?
    public var message: String
    /// The raft index at which this tx was first applied (0 when it never reached state).
    public var raftIndex: UInt64
    /// The event appended by this tx, when applied.
    public var eventSeq: Int64?
    /// True when answered from the record of an earlier application of the same tx_id.
    public var duplicate: Bool

    public var isApplied: Bool { status == .applied }

    /// `{"tx_id","status","code","message","raft_index","event_seq","duplicate"}` (absent fields omitted).
    public var json: JSONValue {
        var o = JSONObject()
        if let t = txID { o["tx_id"] = .string(t) }
        o["status"] = .string(status.rawValue)
        if let c = code { o["code"] = .string(c.rawValue) }
        o["message"] = .string(message)
        o["raft_index"] = .int(Int64(raftIndex))
        if let e = eventSeq { o["event_seq"] = .int(e) }
        if duplicate { o["duplicate"] = .bool(true) }
        return .object(o)
    }

    public static func rejected(_ r: TxRejection, txID: String?, raftIndex: UInt64) -> TxResult {
        TxResult(txID: txID, status: .rejected, code: r.code, message: r.message, raftIndex: raftIndex, eventSeq: nil, duplicate: false)
    }
}

/// One committed raft entry to apply.
public struct LedgerEntry: Sendable {
    public let raftIndex: UInt64
    public let txBytes: [UInt8]
    /// `txBytes` already parsed (by admission or an off-queue pre-decode). The caller guarantees
    /// it was decoded from exactly these bytes (or is the tx whose canonical encoding they are),
    /// so apply behaves exactly as if it parsed them itself.
    public let decoded: Tx?
    public init(raftIndex: UInt64, txBytes: [UInt8], decoded: Tx? = nil) {
        self.raftIndex = raftIndex
        self.txBytes = txBytes
        self.decoded = decoded
    }
}

/// A storage-level failure of the ledger (never a tx rejection).
public struct LedgerError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The replicated collaboration state machine, stored in SQLite tables prefixed `ledger_`.
///
/// Deterministic: the result of `apply` depends only on the prior state, the tx bytes and the
/// raft index — never on a clock, randomness or the node. Not thread-safe: one owner uses it.
public final class Ledger: @unchecked Sendable {
    public let db: SQLiteDB
    public let clusterID: String

    /// Deferred commits: `applyBatch` and `markApplied` leave their write transaction open so that
    /// many batches share one commit (a page touched by many txs is written once); the owner
    /// ends it with `commitPending()`. Reads on this connection see everything applied; other
    /// connections see it after the commit. Only for a ledger that can be rebuilt from the Raft
    /// log: a crash loses the uncommitted part, which is replayed after `lastAppliedIndex()`.
    public var deferCommits = false
    /// Monotonic time (ns) at which the open write transaction began, if one is open.
    public private(set) var pendingSince: UInt64? = nil
    /// Raft entries applied in the open write transaction.
    public private(set) var pendingEntries = 0

    /// End the open write transaction, if any.
    public func commitPending() throws {
        guard pendingSince != nil else { return }
        pendingSince = nil
        pendingEntries = 0
        do { try db.run("COMMIT") } catch {
            // SQLite may keep the transaction open after a failed COMMIT: end it, so the next
            // BEGIN works and nothing reads the rows that were not committed.
            _ = try? db.run("ROLLBACK")
            forgetKnown()
            throw error
        }
    }

    /// Forget what `known` and `counters` hold (a write failed, or the tables were replaced):
    /// they are read back from the tables when next needed.
    func forgetKnown() {
        known = nil
        counters = nil
        signerIDs.removeAll()
    }

    /// Signer ids read or assigned by this instance once it has written (the only writer: on a
    /// connection that only reads, a restore by the writer could renumber them unseen); cleared
    /// with `known`, since a rolled-back transaction may have assigned some.
    private var signerIDs: [String: Int64] = [:]
    var writes = false

    /// The last applied index and next event sequence as of the last successful write on this
    /// connection (the only writer), so a batch need not read them back; nil = read them.
    private var known: (last: UInt64, nextSeq: Int64?)? = nil
    /// Set on the instance that applies: it keeps the row counts up to date (`counters`), so
    /// `stats()` does not scan the tables.
    public var keepsCounters = false
    /// Row counts kept up to date by apply on this connection (with `keepsCounters`); nil = count
    /// them (once) when asked.
    var counters: LedgerCounters? = nil

    /// Run `body` in a write transaction: its own, or the open deferred one.
    func write<T>(entries: Int, _ body: () throws -> T) throws -> T {
        writes = true
        guard deferCommits else {
            do {
                try commitPending()
                return try db.transaction(body)
            } catch {
                forgetKnown()
                throw error
            }
        }
        if pendingSince == nil {
            try db.run("BEGIN IMMEDIATE")
            pendingSince = Monotonic.nanos()
        }
        do {
            let r = try body()
            pendingEntries += entries
            return r
        } catch {
            // A storage failure: everything since BEGIN is gone and will be replayed.
            forgetKnown()
            pendingSince = nil
            pendingEntries = 0
            _ = try? db.run("ROLLBACK")
            throw error
        }
    }

    static let schemaVersion = "3"

    /// Open the ledger in `db`, creating its tables when missing and upgrading a ledger of schema
    /// version 1 or 2 (see Migration.swift). A ledger of a version this code does not know is refused.
    public init(db: SQLiteDB, clusterID: String) throws {
        self.db = db
        self.clusterID = clusterID
        let hasMeta = try db.queryExists("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ledger_meta'")
        let version = hasMeta ? try db.queryText("SELECT value FROM ledger_meta WHERE key = 'schema_version'") : nil
        switch version {
        case nil, Ledger.schemaVersion?:
            try db.exec(Ledger.schema)
        case "1"?, "2"?:
            try migrate(from: version!)
        case let v?:
            throw LedgerError("\(db.path) has ledger schema version \(Limits.clip(v)); this p2pos knows versions 1 to \(Ledger.schemaVersion) (a newer p2pos wrote it?)")
        }
        try db.run("INSERT OR IGNORE INTO ledger_meta(key, value) VALUES ('schema_version', ?)", [.text(Ledger.schemaVersion)])
        try db.run("INSERT OR IGNORE INTO ledger_meta(key, value) VALUES ('last_applied_index', '0')")
    }

    /// The ledger's tables as snapshots carry them, each with the SELECT that reads its stored
    /// rows in snapshot order. The snapshot has the rows in the form of schema version 2
    /// (`p2pos-ledger-snapshot/2`, see Migration.swift): `snapshot()` writes tx_ids as hex and
    /// signer ids as public keys (the columns `V2Rows.forms` names), and sorts the participants of
    /// a session and the votes of a decision by public key, as version 2's keys ordered them.
    /// `ledger_signers` is not carried (restore rebuilds it), so a snapshot's bytes are the same
    /// whichever version wrote it.
    static let tables: [(name: String, export: String)] = [
        ("ledger_meta", "SELECT key, CASE key WHEN 'schema_version' THEN '\(snapshotSchemaVersion)' ELSE value END FROM ledger_meta ORDER BY key"),
        ("ledger_sessions", "SELECT * FROM ledger_sessions ORDER BY session_id"),
        ("ledger_participants", "SELECT * FROM ledger_participants ORDER BY session_id"),
        ("ledger_steps", "SELECT * FROM ledger_steps ORDER BY step_id"),
        ("ledger_artifacts", "SELECT * FROM ledger_artifacts ORDER BY artifact_id"),
        ("ledger_decisions", "SELECT * FROM ledger_decisions ORDER BY decision_id"),
        ("ledger_votes", "SELECT * FROM ledger_votes ORDER BY decision_id"),
        ("ledger_events", "SELECT * FROM ledger_events ORDER BY seq"),
        ("ledger_applied", "SELECT * FROM ledger_applied ORDER BY seq"),
    ]

    /// `INSERT INTO table VALUES (?, …)` with `columns` parameters.
    static func insertSQL(_ table: String, columns: Int) -> String {
        "INSERT INTO \(table) VALUES (\(Array(repeating: "?", count: columns).joined(separator: ", ")))"
    }

    /// Every table of the stored schema (what a restore empties).
    static let storedTables = tables.map(\.name) + ["ledger_signers"]

    // Schema version 3. Rows are narrow because a ledger commit writes every page it touched: a
    // tx_id is a 32-byte blob (not 64 hex digits), and a signer — repeated in the record, the event,
    // the session and the participant of a tx — is a small integer id into `ledger_signers`
    // (assigned when a signer is first recorded; ids are local to this file and never leave it:
    // queries and snapshots show the public key). Version 2 stored both as text: ~40 % more bytes
    // per tx, and as many more pages to write at each commit.
    static let schema = """
    CREATE TABLE IF NOT EXISTS ledger_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS ledger_signers(id INTEGER PRIMARY KEY, signer TEXT NOT NULL UNIQUE);
    CREATE TABLE IF NOT EXISTS ledger_sessions(
        session_id TEXT PRIMARY KEY, title TEXT NOT NULL, owner_id INTEGER NOT NULL, status TEXT NOT NULL,
        step_count INTEGER NOT NULL, resolved_count INTEGER NOT NULL,
        created_index INTEGER NOT NULL, completed_index INTEGER, created_tx BLOB NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS ledger_participants(
        session_id TEXT NOT NULL, actor_id INTEGER NOT NULL, joined_index INTEGER NOT NULL,
        PRIMARY KEY(session_id, actor_id)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS ledger_steps(
        step_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, position INTEGER NOT NULL, title TEXT NOT NULL,
        status TEXT NOT NULL, claimant_id INTEGER, outcome TEXT, updated_index INTEGER NOT NULL,
        resolved_index INTEGER) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS ledger_steps_by_session ON ledger_steps(session_id, position);
    CREATE TABLE IF NOT EXISTS ledger_artifacts(
        artifact_id TEXT PRIMARY KEY, step_id TEXT NOT NULL, kind TEXT NOT NULL, uri TEXT NOT NULL,
        sha256 TEXT, added_by_id INTEGER NOT NULL, added_index INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS ledger_artifacts_by_step ON ledger_artifacts(step_id, added_index);
    CREATE TABLE IF NOT EXISTS ledger_decisions(
        decision_id TEXT PRIMARY KEY, step_id TEXT NOT NULL, question TEXT NOT NULL, options TEXT NOT NULL,
        quorum INTEGER NOT NULL, status TEXT NOT NULL, outcome TEXT, opened_by_id INTEGER NOT NULL,
        opened_index INTEGER NOT NULL, decided_index INTEGER) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS ledger_decisions_by_step ON ledger_decisions(step_id, opened_index);
    CREATE TABLE IF NOT EXISTS ledger_votes(
        decision_id TEXT NOT NULL, voter_id INTEGER NOT NULL, option TEXT NOT NULL, cast_index INTEGER NOT NULL,
        PRIMARY KEY(decision_id, voter_id)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS ledger_events(
        seq INTEGER PRIMARY KEY, raft_index INTEGER NOT NULL, op TEXT NOT NULL, actor_id INTEGER NOT NULL,
        tx_id BLOB NOT NULL, session_id TEXT NOT NULL, ts TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS ledger_events_by_session ON ledger_events(session_id, seq);
    CREATE TABLE IF NOT EXISTS ledger_applied(
        seq INTEGER PRIMARY KEY, tx_key INTEGER NOT NULL, tx_id BLOB NOT NULL, raft_index INTEGER NOT NULL,
        signer_id INTEGER NOT NULL, nonce_key INTEGER, nonce TEXT, status TEXT NOT NULL, code TEXT,
        message TEXT NOT NULL, event_seq INTEGER);
    CREATE INDEX IF NOT EXISTS ledger_applied_replayed_by_tx ON ledger_applied(tx_key) WHERE nonce_key IS NULL;
    CREATE INDEX IF NOT EXISTS ledger_applied_by_nonce ON ledger_applied(nonce_key) WHERE nonce_key IS NOT NULL;
    """

    // MARK: The record of applied txs
    //
    // `ledger_applied` holds one row per recorded tx, appended in apply order (`seq`), so its
    // pages fill one after another. The two lookups — by tx_id (idempotent retry) and by
    // (signer, nonce) (REPLAYED) — go through indexes of 47-bit keys (6 bytes in a record, and
    // within JSON's exact integers for snapshots): about 200 entries per page, so the random
    // inserts of a commit group share few, dense pages. (Schema version 1 kept the
    // records and the nonces in two tables keyed by the 64-character tx_id and by (signer,
    // nonce): every tx dirtied two pages of ~25 rows at random, and writing those pages — into the
    // WAL and again at the checkpoint — was a seventh of the CPU per tx at 64 clients.)
    //
    // A key is only a hint: rows with the same key are told apart by the full tx_id or (signer,
    // nonce). `nonce_key` and `nonce` are set on the row of the tx that holds its nonce (applied,
    // or rejected by a business rule) and null on a REPLAYED rejection.
    //
    // A tx_id fixes its signer and nonce (both are in the signed bytes), so a tx's own record is
    // either the row holding its nonce (found through `ledger_applied_by_nonce`; its tx_id is
    // then this one) or a REPLAYED rejection of it. Only those rows — rare: a signer reusing a
    // nonce — are indexed by tx_id (`ledger_applied_replayed_by_tx`, partial), so an ordinary tx
    // inserts into one random-keyed index, not two. (Early version-2 ledgers had a full
    // `ledger_applied_by_tx`; the upgrade to version 3 drops it with every old index.) A commit group dirties nearly every page of a random-keyed index
    // once the group holds more txs than the index has pages, so each such index costs page
    // writes that grow with the ledger.

    /// Keys are the top 47 bits of a 64-bit value.
    static func key(_ v: UInt64) -> Int64 { Int64(v >> 17) }

    /// The index key of a tx_id: from its first 16 hex digits (a tx_id is a SHA-256 digest), or
    /// for anything that is not a tx_id from a hash of it.
    static func txKey(_ txID: String) -> Int64 {
        if let b = Hex.decode(String(txID.prefix(16))), b.count == 8 {
            return key(b.reduce(0) { $0 << 8 | UInt64($1) })
        }
        return key(Blake2b256.key64(Array(txID.utf8)))
    }

    /// The index key of a signer's nonce: from a BLAKE2b hash of `signer`, a zero byte (a signer
    /// is base64, so never contains one) and `nonce`.
    static func nonceKey(signer: String, nonce: String) -> Int64 {
        var b = Array(signer.utf8)
        b.append(0)
        b.append(contentsOf: nonce.utf8)
        return key(Blake2b256.key64(b))
    }

    // MARK: Raft index

    /// The raft index of the last entry applied (0 for an empty ledger). Restart resumes after it.
    public func lastAppliedIndex() throws -> UInt64 {
        let rows = try db.query("SELECT value FROM ledger_meta WHERE key = 'last_applied_index'")
        guard let t = rows.first?.first?.text, let v = UInt64(t) else { throw LedgerError("ledger_meta.last_applied_index missing or corrupt") }
        return v
    }

    private func setLastApplied(_ index: UInt64) throws {
        try db.run("UPDATE ledger_meta SET value = ? WHERE key = 'last_applied_index'", [.text(String(index))])
    }

    /// Record that a non-tx raft entry (no-op, configuration change) at `raftIndex` was applied.
    public func markApplied(raftIndex: UInt64) throws {
        try write(entries: 1) {
            let last = try known?.last ?? lastAppliedIndex()
            if raftIndex > last { try setLastApplied(raftIndex) }
            known = (max(last, raftIndex), known?.nextSeq)
        }
    }

    // MARK: Apply

    /// Apply one committed entry in its own SQLite transaction.
    /// Throws only on storage failure; a rejected tx is a normal `TxResult`.
    public func apply(txBytes: [UInt8], raftIndex: UInt64) throws -> TxResult {
        try applyBatch([LedgerEntry(raftIndex: raftIndex, txBytes: txBytes)])[0]
    }

    /// Apply many committed entries (ascending raft indexes) in one SQLite transaction (group
    /// apply). `appliedThrough`, when given, records that every raft entry up to that index is
    /// applied (the batch may end with entries that are not transactions).
    public func applyBatch(_ entries: [LedgerEntry], appliedThrough: UInt64? = nil) throws -> [TxResult] {
        try write(entries: entries.count) {
            var out: [TxResult] = []
            out.reserveCapacity(entries.count)
            let start = try known?.last ?? lastAppliedIndex()
            var batch = BatchState(last: start, nextSeq: known?.nextSeq)
            known = nil    // until this batch has succeeded
            // Signatures not checked before (a node catching up, a pre-verification still
            // running) are checked here as one batch; apply then finds them known good.
            var decoded = entries.map { $0.decoded ?? (try? Tx.decodeUnverified($0.txBytes)) }
            if entries.count > 1 { SignatureMemo.shared.verifyBatch(decoded.compactMap { $0 }) }
            for (i, e) in entries.enumerated() {
                out.append(try applyInTransaction(e.txBytes, e.raftIndex, decoded: decoded[i], &batch))
                decoded[i] = nil
            }
            if let through = appliedThrough, through > batch.last { batch.last = through }
            if batch.last != start { try setLastApplied(batch.last) }
            known = (batch.last, batch.nextSeq)
            return out
        }
    }

    /// What one batch keeps in memory instead of re-reading per tx.
    struct BatchState {
        /// The last applied raft index (written once, at the end of the batch).
        var last: UInt64
        /// The next event sequence number, once read.
        var nextSeq: Int64? = nil
    }

    /// The recorded result of `tx`, if it was applied (or rejected after its signature checked).
    public func result(of tx: Tx) throws -> TxResult? {
        guard let holder = try nonceHolder(tx, signer: nil, key: Ledger.nonceKey(signer: tx.signer, nonce: tx.nonce)) else { return nil }
        return try holder.own ?? replayedRecord(txID: tx.txID)
    }

    /// Before proposing an admitted tx: the answer it would get without changing anything, if
    /// known now — its recorded result (`duplicate`) when its tx_id was applied, or `REPLAYED`
    /// when the signer's nonce is taken by another tx. nil means: propose it.
    /// (Apply re-checks both; this only saves log entries that are certain to be no-ops.)
    public func precheck(_ tx: Tx) throws -> TxResult? {
        // One lookup in the common case: every recorded tx left its (signer, nonce) row (its
        // own, or another tx's when it was rejected as REPLAYED), so no row means no record.
        guard let holder = try nonceHolder(tx, signer: nil, key: Ledger.nonceKey(signer: tx.signer, nonce: tx.nonce)) else { return nil }
        if let original = try holder.own ?? replayedRecord(txID: tx.txID) { return original }
        return .rejected(TxRejection(.replayed, "nonce \"\(tx.nonce)\" of this signer was already used by tx \(holder.txID)"), txID: tx.txID, raftIndex: 0)
    }

    /// The record holding the signer's nonce, if any (`signer`: the signer's id when known, else
    /// it is looked up in the same statement; `key`: the `nonceKey`): the tx_id that holds it, and
    /// the recorded result when that tx is `tx` itself.
    func nonceHolder(_ tx: Tx, signer: Int64?, key: Int64) throws -> (txID: String, own: TxResult?)? {
        let rows = try signer.map {
            try db.query("SELECT tx_id, raft_index, status, code, message, event_seq FROM ledger_applied WHERE nonce_key = ? AND signer_id = ? AND nonce = ?",
                         [.int(key), .int($0), .text(tx.nonce)])
        } ?? db.query("""
            SELECT tx_id, raft_index, status, code, message, event_seq FROM ledger_applied
            WHERE nonce_key = ? AND signer_id = (SELECT id FROM ledger_signers WHERE signer = ?) AND nonce = ?
            """, [.int(key), .text(tx.signer), .text(tx.nonce)])
        guard let r = rows.first, let id = r[0].blob else { return nil }
        let holder = Hex.encode(id)
        return (holder, holder == tx.txID ? Ledger.recordedResult(txID: holder, r[1...]) : nil)
    }

    /// The REPLAYED rejection recorded for `txID`, if any (the rows that hold no nonce, indexed by tx_id).
    func replayedRecord(txID: String) throws -> TxResult? {
        guard let id = Ledger.txIDBlob(txID) else { return nil }    // not a tx_id: never recorded
        let rows = try db.query("SELECT raft_index, status, code, message, event_seq FROM ledger_applied WHERE tx_key = ? AND tx_id = ? AND nonce_key IS NULL",
                                [.int(Ledger.txKey(txID)), .blob(id)])
        return rows.first.map { Ledger.recordedResult(txID: txID, $0[...]) }
    }

    /// A tx_id as stored: its 32 bytes; nil for anything that is not 64 lowercase hex digits.
    static func txIDBlob(_ txID: String) -> [UInt8]? {
        Hex.isLowercase(txID, count: 64) ? Hex.decode(txID) : nil
    }

    // MARK: Signer ids

    /// The id of `signer` in `ledger_signers`, nil when it was never recorded. Signers are base64
    /// text (ASCII: apply takes them from decoded keys, restore checks them), so the cache's
    /// String keys compare byte for byte, as SQLite does.
    func signerID(_ signer: String) throws -> Int64? {
        if writes, let id = signerIDs[signer] { return id }
        guard let id = try db.query("SELECT id FROM ledger_signers WHERE signer = ?", [.text(signer)]).first?.first?.int else { return nil }
        remember(signer, id)
        return id
    }

    /// The id of `signer`, added to `ledger_signers` when new (in the caller's write transaction).
    func signerIDAdding(_ signer: String) throws -> Int64 {
        if let id = try signerID(signer) { return id }
        // (No RETURNING: it needs SQLite 3.35; this connection is the only writer.)
        try db.run("INSERT INTO ledger_signers(signer) VALUES (?)", [.text(signer)])
        let id = db.lastInsertRowID
        remember(signer, id)
        return id
    }

    private func remember(_ signer: String, _ id: Int64) {
        guard writes else { return }
        if signerIDs.count >= 65_536 { signerIDs.removeAll(keepingCapacity: true) }
        signerIDs[signer] = id
    }

    /// A result from a record's (raft_index, status, code, message, event_seq).
    static func recordedResult(txID: String, _ r: ArraySlice<SQLValue>) -> TxResult {
        let c = r.startIndex
        return TxResult(txID: txID, status: r[c + 1].text == "applied" ? .applied : .rejected,
                        code: r[c + 2].text.flatMap(RejectCode.init(rawValue:)), message: r[c + 3].text ?? "",
                        raftIndex: UInt64(r[c].int ?? 0), eventSeq: r[c + 4].int, duplicate: true)
    }

    private func applyInTransaction(_ bytes: [UInt8], _ raftIndex: UInt64, decoded: Tx?, _ batch: inout BatchState) throws -> TxResult {
        let last = batch.last
        let stale = raftIndex <= last
        let tx: Tx
        do throws(TxRejection) {
            if let d = decoded { tx = d } else { tx = try Tx.decodeUnverified(bytes) }
            guard Limits.same(tx.clusterID, clusterID) else {
                throw TxRejection(.wrongCluster, "tx is for cluster \"\(Limits.clip(tx.clusterID))\", this is \"\(clusterID)\"")
            }
            try SignatureMemo.shared.verify(tx)
            SignatureMemo.shared.forget(tx)
        } catch let r {
            // Not a valid signed tx for this cluster: nothing is recorded but the raft index.
            if !stale { batch.last = raftIndex }
            return .rejected(r, txID: nil, raftIndex: 0)
        }
        // Every recorded tx has a record whose nonce is held (its own, or another tx's when it was
        // rejected as REPLAYED), so when nobody holds the nonce there is no record and the tx_id
        // lookup is skipped.
        let nonceKey = Ledger.nonceKey(signer: tx.signer, nonce: tx.nonce)
        let knownSigner = try signerID(tx.signer)
        let holder = try knownSigner.flatMap { try nonceHolder(tx, signer: $0, key: nonceKey) }
        if let holder, let original = try holder.own ?? replayedRecord(txID: tx.txID) {
            if !stale { batch.last = raftIndex }
            return original
        }
        if stale {
            return .rejected(TxRejection(.malformed, "raft index \(raftIndex) is at or below the last applied index \(last)"), txID: tx.txID, raftIndex: 0)
        }
        batch.last = raftIndex
        // Every tx from here on is recorded, so its signer gets an id.
        let signer = try knownSigner ?? signerIDAdding(tx.signer)
        guard let txID = Ledger.txIDBlob(tx.txID) else { throw LedgerError("tx_id \(Limits.clip(tx.txID)) is not a SHA-256 digest") }

        // Nonce: one tx per (signer, nonce), forever.
        if let other = holder?.txID {
            let r = TxResult.rejected(TxRejection(.replayed, "nonce \"\(tx.nonce)\" of this signer was already used by tx \(other)"),
                                      txID: tx.txID, raftIndex: raftIndex)
            try record(tx, txID, signer, r, nonceKey: nil)
            counters?.txsRejected += 1
            return r
        }
        // Not stale and nobody holds the nonce: this tx takes it (its record below holds it), whether
        // the rules accept it or not.

        // A rejection leaves no write of this tx behind (see ApplyContext).
        let result: TxResult
        do {
            let outcome = try ApplyContext(ledger: self, tx: tx, txID: txID, signer: signer, raftIndex: Int64(raftIndex)).run()
            for w in outcome.writes { try db.run(w.sql, w.params) }
            let seq = try batch.nextSeq ?? nextEventSeq()
            try db.run("INSERT INTO ledger_events(seq, raft_index, op, actor_id, tx_id, session_id, ts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [.int(seq), .int(Int64(raftIndex)), .text(tx.op.rawValue), .int(signer), .blob(txID), .text(outcome.sessionID), .text(tx.ts)])
            batch.nextSeq = seq + 1
            result = TxResult(txID: tx.txID, status: .applied, code: nil, message: outcome.message, raftIndex: raftIndex, eventSeq: seq, duplicate: false)
            counters?.add(outcome.counts)
        } catch let r as TxRejection {
            result = .rejected(r, txID: tx.txID, raftIndex: raftIndex)
            counters?.txsRejected += 1
        }
        try record(tx, txID, signer, result, nonceKey: nonceKey)
        return result
    }

    func nextEventSeq() throws -> Int64 {
        (try db.query("SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger_events").first?.first?.int) ?? 1
    }

    /// Append the record of `tx` (`txID`: its tx_id as stored, `signer`: its signer's id); with
    /// `nonceKey` the record holds the signer's nonce.
    private func record(_ tx: Tx, _ txID: [UInt8], _ signer: Int64, _ r: TxResult, nonceKey: Int64?) throws {
        try db.run("""
                   INSERT INTO ledger_applied(tx_key, tx_id, raft_index, signer_id, nonce_key, nonce, status, code, message, event_seq)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   """,
                   [.int(Ledger.txKey(tx.txID)), .blob(txID), .int(Int64(r.raftIndex)), .int(signer),
                    nonceKey.map { .int($0) } ?? .null, nonceKey == nil ? .null : .text(tx.nonce), .text(r.status.rawValue),
                    r.code.map { .text($0.rawValue) } ?? .null, .text(r.message), r.eventSeq.map { .int($0) } ?? .null])
    }
}

/// Business rules of one tx, in two phases: `run()` reads and either throws a rejection or
/// returns the writes the tx makes; the caller then performs them. A rejection therefore leaves
/// nothing behind, without a per-tx savepoint (and its page copies into a journal). One exception:
/// `SESSION_CREATE` claims its new ids by inserting the session and its steps itself
/// (`claimNewSession`), which spares the lookups that would only find them absent; when an id is
/// taken it deletes what it inserted before rejecting, so the rule holds for it too.
struct ApplyContext {
    let ledger: Ledger
    let tx: Tx
    /// The tx_id as stored (32 bytes).
    let txID: [UInt8]
    /// The signer's id in `ledger_signers`.
    let signer: Int64
    let raftIndex: Int64
    var db: SQLiteDB { ledger.db }

    /// One planned statement.
    struct Write {
        let sql: String
        let params: [SQLValue]
        init(_ sql: String, _ params: [SQLValue]) {
            self.sql = sql
            self.params = params
        }
    }

    /// What an accepted tx does: its session, its success message, its writes in order, and how
    /// they change the row counts (`LedgerCounters`; the event and the applied record included).
    struct Outcome {
        let sessionID: String
        let message: String
        let writes: [Write]
        let counts: LedgerCounters

        init(sessionID: String, message: String, writes: [Write], counts change: (inout LedgerCounters) -> Void = { _ in }) {
            self.sessionID = sessionID
            self.message = message
            self.writes = writes
            var c = LedgerCounters()
            c.events = 1
            c.txsApplied = 1
            change(&c)
            self.counts = c
        }
    }

    struct Step {
        let stepID: String
        let sessionID: String
        let status: String
        /// The claimant's signer id.
        let claimant: Int64?
    }

    func fail(_ code: RejectCode, _ message: String) -> TxRejection { TxRejection(code, message) }

    func exists(_ sql: String, _ params: [SQLValue]) throws -> Bool { try db.queryExists(sql, params) }

    /// The session's owner (a signer id) and status.
    func sessionOwner(_ sessionID: String) throws -> (owner: Int64, status: String)? {
        guard let r = try db.query("SELECT owner_id, status FROM ledger_sessions WHERE session_id = ?", [.text(sessionID)]).first else { return nil }
        return (r[0].int ?? 0, r[1].text ?? "")
    }

    /// Whether the signer with id `actor` joined the session.
    func isParticipant(_ sessionID: String, _ actor: Int64) throws -> Bool {
        try exists("SELECT 1 FROM ledger_participants WHERE session_id = ? AND actor_id = ?", [.text(sessionID), .int(actor)])
    }

    func step(_ stepID: String) throws -> Step {
        guard let r = try db.query("SELECT session_id, status, claimant_id FROM ledger_steps WHERE step_id = ?", [.text(stepID)]).first else {
            throw fail(.notFound, "step \"\(stepID)\" does not exist")
        }
        return Step(stepID: stepID, sessionID: r[0].text ?? "", status: r[1].text ?? "", claimant: r[2].int)
    }

    /// The step must exist and not be resolved.
    func liveStep(_ stepID: String) throws -> Step {
        let s = try step(stepID)
        guard s.status != "resolved" else { throw fail(.stepResolved, "step \"\(stepID)\" is resolved") }
        return s
    }

    func requireClaimant(_ s: Step) throws {
        guard s.claimant == signer else {
            if s.claimant == nil { throw fail(.notClaimant, "step \"\(s.stepID)\" is not claimed; claim it first") }
            throw fail(.notClaimant, "step \"\(s.stepID)\" is claimed by another participant")
        }
    }

    /// Inserts the session and its steps (ids must be new): `INSERT OR IGNORE` changes no row when
    /// an id is taken, and the ids' own indexes answer that as part of the insert, where a lookup
    /// first would search them twice (two of a follower's three lookups per `SESSION_CREATE`, ~6 %
    /// of its CPU at 64 clients; docs/benchmarks.md). When a step id is taken, the steps inserted
    /// before it and the session are deleted again — they were new, so nothing else refers to
    /// them — and the tx is rejected as before (the first taken id in payload order).
    /// The caller inserts the owner's participant row once this returns.
    func claimNewSession(_ sessionID: String, title: String, steps: [TxOperation.NewStep]) throws {
        let inserted = try db.run("""
            INSERT OR IGNORE INTO ledger_sessions(session_id, title, owner_id, status, step_count, resolved_count, created_index, completed_index, created_tx)
            VALUES (?, ?, ?, 'open', ?, 0, ?, NULL, ?)
            """, [.text(sessionID), .text(title), .int(signer), .int(Int64(steps.count)), .int(raftIndex), .blob(txID)])
        guard inserted == 1 else { throw fail(.alreadyExists, "session \"\(sessionID)\" already exists") }
        for (i, s) in steps.enumerated() {
            let n = try db.run("""
                INSERT OR IGNORE INTO ledger_steps(step_id, session_id, position, title, status, claimant_id, outcome, updated_index, resolved_index)
                VALUES (?, ?, ?, ?, 'open', NULL, NULL, ?, NULL)
                """, [.text(s.stepID), .text(sessionID), .int(Int64(i)), .text(s.title), .int(raftIndex)])
            if n != 1 {
                if i > 0 { try db.run("DELETE FROM ledger_steps WHERE session_id = ?", [.text(sessionID)]) }
                try db.run("DELETE FROM ledger_sessions WHERE session_id = ?", [.text(sessionID)])
                throw fail(.alreadyExists, "step \"\(s.stepID)\" already exists")
            }
        }
    }

    /// Checks the op against the current state (reads only, except `claimNewSession`). Throws the
    /// rejection, or returns the writes to perform.
    func run() throws -> Outcome {
        switch tx.operation {
        case .sessionCreate(let sessionID, let title, let steps):
            try claimNewSession(sessionID, title: title, steps: steps)
            let w = [
                Write("INSERT INTO ledger_participants(session_id, actor_id, joined_index) VALUES (?, ?, ?)", [.text(sessionID), .int(signer), .int(raftIndex)]),
            ]
            return Outcome(sessionID: sessionID, message: "session \(sessionID) created with \(steps.count) steps", writes: w) {
                $0.sessions = 1
                $0.participants = 1
                $0.steps = Int64(steps.count)
                $0.stepsOpen = Int64(steps.count)
            }

        case .participantJoin(let sessionID):
            guard let s = try sessionOwner(sessionID) else { throw fail(.notFound, "session \"\(sessionID)\" does not exist") }
            guard s.status != "completed" else { throw fail(.sessionCompleted, "session \"\(sessionID)\" is completed") }
            guard !(try isParticipant(sessionID, signer)) else { throw fail(.alreadyExists, "signer already joined session \"\(sessionID)\"") }
            return Outcome(sessionID: sessionID, message: "joined session \(sessionID)", writes: [
                Write("INSERT INTO ledger_participants(session_id, actor_id, joined_index) VALUES (?, ?, ?)", [.text(sessionID), .int(signer), .int(raftIndex)]),
            ]) { $0.participants = 1 }

        case .stepClaim(let stepID):
            let s = try liveStep(stepID)
            guard try isParticipant(s.sessionID, signer) else { throw fail(.notParticipant, "signer is not a participant of session \"\(s.sessionID)\"; join it first") }
            if let c = s.claimant {
                throw fail(.stepClaimed, c == signer ? "step \"\(stepID)\" is already claimed by the signer" : "step \"\(stepID)\" is already claimed by another participant")
            }
            return Outcome(sessionID: s.sessionID, message: "step \(stepID) claimed", writes: [
                Write("UPDATE ledger_steps SET status = 'claimed', claimant_id = ?, updated_index = ? WHERE step_id = ?", [.int(signer), .int(raftIndex), .text(stepID)]),
            ]) {
                $0.stepsOpen = -1
                $0.stepsClaimed = 1
            }

        case .stepRelease(let stepID):
            let s = try liveStep(stepID)
            // SPEC §9: only the claimant releases (the owner has no override: a step held by an
            // absent claimant stays claimed until they release or hand it off).
            try requireClaimant(s)
            return Outcome(sessionID: s.sessionID, message: "step \(stepID) released", writes: [
                Write("UPDATE ledger_steps SET status = 'open', claimant_id = NULL, updated_index = ? WHERE step_id = ?", [.int(raftIndex), .text(stepID)]),
            ]) {
                // Only a claimed step gets here (its claimant).
                $0.stepsClaimed = -1
                $0.stepsOpen = 1
            }

        case .stepHandoff(let stepID, let to):
            let s = try liveStep(stepID)
            try requireClaimant(s)
            guard to != tx.signer else { throw fail(.malformed, "STEP_HANDOFF: \"to\" is the signer; the step is already theirs") }
            // A key never recorded has no id, and so joined no session.
            guard let target = try ledger.signerID(to), try isParticipant(s.sessionID, target) else {
                throw fail(.notParticipant, "handoff target is not a participant of session \"\(s.sessionID)\"")
            }
            return Outcome(sessionID: s.sessionID, message: "step \(stepID) handed off", writes: [
                Write("UPDATE ledger_steps SET claimant_id = ?, updated_index = ? WHERE step_id = ?", [.int(target), .int(raftIndex), .text(stepID)]),
            ])

        case .artifactAdd(let stepID, let artifactID, let kind, let uri, let sha256):
            let s = try liveStep(stepID)
            try requireClaimant(s)
            guard !(try exists("SELECT 1 FROM ledger_artifacts WHERE artifact_id = ?", [.text(artifactID)])) else {
                throw fail(.alreadyExists, "artifact \"\(artifactID)\" already exists")
            }
            return Outcome(sessionID: s.sessionID, message: "artifact \(artifactID) added to step \(stepID)", writes: [
                Write("INSERT INTO ledger_artifacts(artifact_id, step_id, kind, uri, sha256, added_by_id, added_index) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      [.text(artifactID), .text(stepID), .text(kind), .text(uri), sha256.map { .text($0) } ?? .null, .int(signer), .int(raftIndex)]),
            ]) { $0.artifacts = 1 }

        case .decisionOpen(let stepID, let decisionID, let question, let options, let quorum):
            let s = try liveStep(stepID)
            if s.claimant != signer {
                guard try sessionOwner(s.sessionID)?.owner == signer else {
                    throw fail(.notOwner, "only the step's claimant or the session owner may open a decision on step \"\(stepID)\"")
                }
            }
            guard !(try exists("SELECT 1 FROM ledger_decisions WHERE decision_id = ?", [.text(decisionID)])) else {
                throw fail(.alreadyExists, "decision \"\(decisionID)\" already exists")
            }
            if let open = try db.query("SELECT decision_id FROM ledger_decisions WHERE step_id = ? AND status = 'open'", [.text(stepID)]).first?.first?.text {
                throw fail(.decisionOpen, "step \"\(stepID)\" already has the open decision \"\(open)\"")
            }
            let optionsJSON = JSONValue.array(options.map { .string($0) }).canonicalString
            return Outcome(sessionID: s.sessionID, message: "decision \(decisionID) opened on step \(stepID)", writes: [
                Write("""
                    INSERT INTO ledger_decisions(decision_id, step_id, question, options, quorum, status, outcome, opened_by_id, opened_index, decided_index)
                    VALUES (?, ?, ?, ?, ?, 'open', NULL, ?, ?, NULL)
                    """, [.text(decisionID), .text(stepID), .text(question), .text(optionsJSON), .int(quorum), .int(signer), .int(raftIndex)]),
            ]) {
                $0.decisions = 1
                $0.decisionsOpen = 1
            }

        case .voteCast(let decisionID, let option):
            guard let d = try db.query("""
                SELECT d.options, d.quorum, d.status, s.session_id FROM ledger_decisions d JOIN ledger_steps s ON s.step_id = d.step_id
                WHERE d.decision_id = ?
                """, [.text(decisionID)]).first else {
                throw fail(.notFound, "decision \"\(decisionID)\" does not exist")
            }
            let sessionID = d[3].text ?? ""
            guard try isParticipant(sessionID, signer) else { throw fail(.notParticipant, "signer is not a participant of session \"\(sessionID)\"") }
            guard d[2].text == "open" else { throw fail(.decisionClosed, "decision \"\(decisionID)\" is already decided") }
            guard !(try exists("SELECT 1 FROM ledger_votes WHERE decision_id = ? AND voter_id = ?", [.text(decisionID), .int(signer)])) else {
                throw fail(.alreadyVoted, "signer already voted on decision \"\(decisionID)\"")
            }
            let options = ((try? JSONValue.parse(d[0].text ?? "[]"))?.arrayValue ?? []).compactMap(\.stringValue)
            guard options.contains(where: { Limits.same($0, option) }) else { throw fail(.badOption, "\"\(Limits.clip(option))\" is not an option of decision \"\(decisionID)\"") }
            var w = [Write("INSERT INTO ledger_votes(decision_id, voter_id, option, cast_index) VALUES (?, ?, ?, ?)", [.text(decisionID), .int(signer), .text(option), .int(raftIndex)])]
            // The votes for this option once this one is in (the signer has not voted yet).
            let count = (try db.query("SELECT COUNT(*) FROM ledger_votes WHERE decision_id = ? AND option = ?", [.text(decisionID), .text(option)]).first?.first?.int ?? 0) + 1
            if count >= (d[1].int ?? Int64.max) {
                w.append(Write("UPDATE ledger_decisions SET status = 'decided', outcome = ?, decided_index = ? WHERE decision_id = ?", [.text(option), .int(raftIndex), .text(decisionID)]))
                return Outcome(sessionID: sessionID, message: "vote recorded; decision \(decisionID) decided: \(option)", writes: w) {
                    $0.votes = 1
                    $0.decisionsOpen = -1
                }
            }
            return Outcome(sessionID: sessionID, message: "vote recorded", writes: w) { $0.votes = 1 }

        case .stepResolve(let stepID, let outcome):
            let s = try liveStep(stepID)
            try requireClaimant(s)
            if let open = try db.query("SELECT decision_id FROM ledger_decisions WHERE step_id = ? AND status = 'open'", [.text(stepID)]).first?.first?.text {
                throw fail(.decisionOpen, "decision \"\(open)\" on step \"\(stepID)\" is still open; it must be decided first")
            }
            if let latest = try db.query("SELECT decision_id, outcome FROM ledger_decisions WHERE step_id = ? ORDER BY opened_index DESC LIMIT 1", [.text(stepID)]).first,
               let decided = latest[1].text, !Limits.same(decided, outcome) {
                throw fail(.outcomeMismatch, "outcome must be \"\(Limits.clip(decided))\", as decision \"\(latest[0].text ?? "")\" decided")
            }
            // The step is live (not resolved), so this resolve raises resolved_count by one.
            let completes = try db.query("SELECT resolved_count, step_count, status FROM ledger_sessions WHERE session_id = ?", [.text(s.sessionID)]).first
                .map { ($0[0].int ?? 0) + 1 == $0[1].int && $0[2].text != "completed" } ?? false
            var w = [
                Write("UPDATE ledger_steps SET status = 'resolved', outcome = ?, updated_index = ?, resolved_index = ? WHERE step_id = ?",
                      [.text(outcome), .int(raftIndex), .int(raftIndex), .text(stepID)]),
                Write("UPDATE ledger_sessions SET resolved_count = resolved_count + 1 WHERE session_id = ?", [.text(s.sessionID)]),
            ]
            if completes {
                w.append(Write("UPDATE ledger_sessions SET status = 'completed', completed_index = ? WHERE session_id = ?", [.int(raftIndex), .text(s.sessionID)]))
            }
            // The resolver is the claimant, so the step was claimed.
            return Outcome(sessionID: s.sessionID, message: completes ? "step \(stepID) resolved; session \(s.sessionID) completed" : "step \(stepID) resolved", writes: w) {
                $0.stepsClaimed = -1
                $0.stepsResolved = 1
                if completes { $0.sessionsCompleted = 1 }
            }
        }
    }
}
