import Storage
import Support
import Wire

/// Older ledgers, in files and in snapshots.
///
/// Schema version 1 → 2: the record of applied txs moved from `ledger_applied` (keyed by tx_id)
/// and `ledger_nonces` (keyed by signer and nonce) into one append-ordered `ledger_applied` with
/// indexes of 64-bit keys (see "The record of applied txs" in Ledger.swift). Every other table
/// was unchanged.
///
/// Schema version 2 → 3: the same tables and columns, but tx_ids stored as 32-byte blobs and
/// signers as ids into the new `ledger_signers` (the signer columns renamed `…_id`). Snapshots
/// keep the version-2 form (`p2pos-ledger-snapshot/2`), so nodes of versions 2 and 3 exchange them.
extension Ledger {
    /// The version-1 columns of the two tables, for a snapshot of that version.
    static let v1AppliedColumns = ["tx_id TEXT NOT NULL", "raft_index INTEGER NOT NULL", "signer TEXT NOT NULL", "status TEXT NOT NULL",
                                   "code TEXT", "message TEXT NOT NULL", "event_seq INTEGER"]
    static let v1NonceColumns = ["signer TEXT NOT NULL", "nonce TEXT NOT NULL", "tx_id TEXT NOT NULL"]

    /// The tables a snapshot of ledger format 1 holds.
    static let v1Tables: [String] = tables.map(\.name).filter { $0 != "ledger_applied" } + ["ledger_applied", "ledger_nonces"]

    /// Upgrade this file's ledger from schema version 1 or 2 to the current one, in one
    /// transaction: either the whole ledger is upgraded afterwards or nothing changed. The old
    /// tables are renamed aside, the current schema created, and every old row converted (as a
    /// snapshot's rows are, see `V2Rows`); then the old tables are dropped.
    func migrate(from version: String) throws {
        let started = Monotonic.nanos()
        writes = true    // this instance writes: V2Rows's signer ids are cached, not looked up per row
        var rows = 0
        try db.transaction {
            // The old indexes go first: their names are the current schema's.
            var indexes: [String] = []
            try db.forEachRow("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name LIKE 'ledger_%' AND sql IS NOT NULL") { indexes.append($0.text(0) ?? "") }
            for i in indexes { try db.exec("DROP INDEX \"\(i)\"") }
            let old = version == "1" ? Ledger.v1Tables : Ledger.tables.map(\.name)
            for t in old { try db.exec("ALTER TABLE \(t) RENAME TO old_\(t)") }
            try db.exec(Ledger.schema)
            let rows2 = V2Rows(self)
            if version == "1" {
                rows += try convertV1Records(schema: "main", applied: "old_ledger_applied", nonces: "old_ledger_nonces", into: rows2)
            } else {
                try db.forEachRow("SELECT * FROM old_ledger_applied ORDER BY seq") { r in
                    try rows2.insert("ledger_applied", (0..<r.columnCount).map { r.value($0) })
                    rows += 1
                }
            }
            for t in Ledger.tables.map(\.name) where t != "ledger_applied" {
                try db.forEachRow("SELECT * FROM old_\(t)") { r in
                    try rows2.insert(t, (0..<r.columnCount).map { r.value($0) })
                    rows += 1
                }
            }
            // (convertV1Records dropped the two version-1 record tables.)
            for t in old where version == "2" || !["ledger_applied", "ledger_nonces"].contains(t) { try db.exec("DROP TABLE old_\(t)") }
            try db.run("UPDATE ledger_meta SET value = ? WHERE key = 'schema_version'", [.text(Ledger.schemaVersion)])
        }
        Log.info("ledger", "schema_upgraded", ["from": version, "to": Ledger.schemaVersion, "rows": rows,
                                                 "ms": (Monotonic.nanos() &- started) / 1_000_000])
        // The old tables' pages are free now (more than half the file): give them back, or the
        // file keeps its old size until the ledger grows into them. Only space is at stake, so a
        // failure (no room for the copy) is logged, not fatal.
        let vacuumStarted = Monotonic.nanos()
        do {
            try db.exec("VACUUM")
            Log.info("ledger", "vacuumed", ["ms": (Monotonic.nanos() &- vacuumStarted) / 1_000_000])
        } catch {
            Log.warn("ledger", "vacuum_failed", ["reason": "\(error)"])
        }
    }

    /// Convert the version-1 record tables `applied` and `nonces` in `schema` into records, in
    /// raft-index order (the order in which the txs were applied, so `seq` comes out as if they
    /// were applied by this version), then drop them. Inside the caller's transaction. Returns the
    /// number of records.
    func convertV1Records(schema: String, applied: String, nonces: String, into rows: V2Rows) throws -> Int {
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
            // A version-2 record; `seq` null: the next one.
            try rows.insert("ledger_applied", [.null, .int(Ledger.txKey(txID)), .text(txID), r.value(1), .text(signer), nonceKey, nonce,
                                               r.value(3), r.value(4), r.value(5), r.value(6)])
            count += 1
        }
        try db.exec("DROP TABLE \(schema).\(applied); DROP TABLE \(schema).\(nonces)")
        return count
    }
}

/// Rows in the form of ledger schema version 2 — the current tables' columns in the same order,
/// but tx_ids as 64 hex digits and signers as their public keys — written into the current tables.
/// Snapshots carry this form (`Ledger.tables` exports it), and version-1 and -2 files hold it.
/// Each row is checked as it goes in: its shape, its tx_id, and for a record that its keys are
/// the ones its tx_id, signer and nonce give (a wrong key would hide the record from the
/// lookups, so a replayed tx would be applied again).
final class V2Rows {
    /// Where a table's signer (a public key, nullable only for a step's claimant) and tx_id are.
    struct Form {
        let columns: Int
        var signer: Int? = nil
        var signerMayBeNull = false
        var txID: Int? = nil
    }

    static let forms: [String: Form] = [
        "ledger_meta": Form(columns: 2),
        "ledger_sessions": Form(columns: 9, signer: 2, txID: 8),
        "ledger_participants": Form(columns: 3, signer: 1),
        "ledger_steps": Form(columns: 9, signer: 5, signerMayBeNull: true),
        "ledger_artifacts": Form(columns: 7, signer: 5),
        "ledger_decisions": Form(columns: 10, signer: 7),
        "ledger_votes": Form(columns: 4, signer: 1),
        "ledger_events": Form(columns: 7, signer: 3, txID: 4),
        "ledger_applied": Form(columns: 11, signer: 4, txID: 2),
    ]

    /// Each table's INSERT, built once (restore and upgrades insert row by row).
    static let inserts = Dictionary(uniqueKeysWithValues: forms.map { ($0.key, Ledger.insertSQL($0.key, columns: $0.value.columns)) })

    let ledger: Ledger
    init(_ ledger: Ledger) { self.ledger = ledger }

    func insert(_ table: String, _ row: [SQLValue]) throws {
        guard let form = V2Rows.forms[table] else { throw LedgerError("\(table) is not a ledger table") }
        guard row.count == form.columns else { throw LedgerError("a row of \(table) does not have \(form.columns) columns") }
        var cells = row
        if table == "ledger_applied" { try V2Rows.checkKeys(row) }
        if let c = form.signer {
            switch row[c] {
            case .text(let s):
                // Base64 text (as every signer is): ASCII, so ids are assigned byte for byte.
                guard !s.isEmpty, s.utf8.allSatisfy(Base64.isTextByte) else {
                    throw LedgerError("a row of \(table) has a signer that is not base64 text")
                }
                cells[c] = .int(try ledger.signerIDAdding(s))
            case .null where form.signerMayBeNull: break
            default: throw LedgerError("a row of \(table) lacks its signer's public key")
            }
        }
        if let c = form.txID {
            guard let t = row[c].text, let b = Ledger.txIDBlob(t) else {
                throw LedgerError("a row of \(table) has a tx_id that is not 64 lowercase hex digits")
            }
            cells[c] = .blob(b)
        }
        try ledger.db.run(V2Rows.inserts[table]!, cells)
    }

    /// A record's (seq, tx_key, tx_id, raft_index, signer, nonce_key, nonce, …): its keys must be
    /// the ones its tx_id, signer and nonce give.
    static func checkKeys(_ r: [SQLValue]) throws {
        let seq = r[0].int.map(String.init) ?? "(new)"
        guard let txID = r[2].text, let signer = r[4].text else { throw LedgerError("ledger_applied row \(seq) lacks tx_id or signer") }
        guard r[1].int == Ledger.txKey(txID) else {
            throw LedgerError("ledger_applied row \(seq) has a tx_key that does not match its tx_id")
        }
        switch (r[5], r[6]) {
        case (.null, .null): break
        case (.int(let key), .text(let nonce)) where key == Ledger.nonceKey(signer: signer, nonce: nonce): break
        default: throw LedgerError("ledger_applied row \(seq) has a nonce_key that does not match its signer and nonce")
        }
    }
}
