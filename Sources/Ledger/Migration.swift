import Storage
import Support

/// Schema version 1 → 2: the record of applied txs moves from `ledger_applied` (keyed by tx_id)
/// and `ledger_nonces` (keyed by signer and nonce) into one append-ordered `ledger_applied` with
/// indexes of 64-bit keys (see "The record of applied txs" in Ledger.swift). Every other table
/// is unchanged.
extension Ledger {
    /// The version-1 columns of the two tables, for a snapshot of that version.
    static let v1AppliedColumns = ["tx_id TEXT NOT NULL", "raft_index INTEGER NOT NULL", "signer TEXT NOT NULL", "status TEXT NOT NULL",
                                   "code TEXT", "message TEXT NOT NULL", "event_seq INTEGER"]
    static let v1NonceColumns = ["signer TEXT NOT NULL", "nonce TEXT NOT NULL", "tx_id TEXT NOT NULL"]

    /// The tables a snapshot of ledger format 1 holds.
    static let v1Tables: [String] = tables.map(\.name).filter { $0 != "ledger_applied" } + ["ledger_applied", "ledger_nonces"]

    /// Upgrade this file's ledger from schema version 1, in one transaction: either the whole
    /// ledger is at version 2 afterwards or nothing changed.
    func migrateFromV1() throws {
        let started = Monotonic.nanos()
        var rows = 0
        try db.transaction {
            try db.exec("ALTER TABLE ledger_applied RENAME TO ledger_applied_v1")
            try db.exec(Ledger.schema)
            rows = try replaceV1Tables(schema: "main", applied: "ledger_applied_v1", nonces: "ledger_nonces")
        }
        Log.info("ledger", "schema_upgraded", ["from": "1", "to": Ledger.schemaVersion, "records": rows,
                                                 "ms": (Monotonic.nanos() &- started) / 1_000_000])
    }

    /// Fill the (empty) version-2 `ledger_applied` from the version-1 tables `applied` and
    /// `nonces` in `schema`, in raft-index order (the order in which the txs were applied, so `seq`
    /// comes out as if they were applied by this version); then drop those tables and record
    /// schema version 2. Inside the caller's transaction. Returns the number of records.
    func replaceV1Tables(schema: String, applied: String, nonces: String) throws -> Int {
        try db.exec("CREATE INDEX \(schema).\(nonces)_by_tx ON \(nonces)(tx_id)")
        var count = 0
        try db.forEachRow("""
            SELECT a.tx_id, a.raft_index, a.signer, a.status, a.code, a.message, a.event_seq, n.nonce, n.signer
            FROM \(schema).\(applied) a LEFT JOIN \(schema).\(nonces) n ON n.tx_id = a.tx_id ORDER BY a.raft_index, a.tx_id
            """) { r in
            guard let txID = r.text(0), let signer = r.text(2) else { throw LedgerError("\(applied): a record without tx_id or signer") }
            // The nonce row names the tx that holds it; its signer is the tx's own.
            var nonceKey: SQLValue = .null
            var nonce: SQLValue = .null
            if let n = r.text(7) {
                guard r.text(8) == signer else { throw LedgerError("\(nonces): the nonce of tx \(Limits.clip(txID)) has another signer") }
                nonceKey = .int(Ledger.nonceKey(signer: signer, nonce: n))
                nonce = .text(n)
            }
            try db.run(Ledger.insertRecord, [.int(Ledger.txKey(txID)), .text(txID), r.value(1), .text(signer), nonceKey, nonce,
                                             r.value(3), r.value(4), r.value(5), r.value(6)])
            count += 1
        }
        try db.exec("DROP TABLE \(schema).\(applied); DROP TABLE \(schema).\(nonces)")
        try db.run("UPDATE ledger_meta SET value = ? WHERE key = 'schema_version'", [.text(Ledger.schemaVersion)])
        return count
    }

    /// Check that every record's keys are the ones its tx_id, signer and nonce give (a restored
    /// snapshot carries them; a wrong key would hide a record from the lookups, so a replayed tx
    /// would be applied again).
    func checkRecordKeys() throws {
        try db.forEachRow("SELECT seq, tx_key, tx_id, signer, nonce_key, nonce FROM ledger_applied") { r in
            guard let txID = r.text(2), let signer = r.text(3) else { throw LedgerError("ledger_applied row \(r.int(0)) lacks tx_id or signer") }
            guard r.kind(1) == .int, r.int(1) == Ledger.txKey(txID) else {
                throw LedgerError("ledger_applied row \(r.int(0)) has a tx_key that does not match its tx_id")
            }
            switch (r.kind(4), r.text(5)) {
            case (.null, nil): break
            case (.int, let nonce?) where r.int(4) == Ledger.nonceKey(signer: signer, nonce: nonce): break
            default: throw LedgerError("ledger_applied row \(r.int(0)) has a nonce_key that does not match its signer and nonce")
            }
        }
    }
}
