import Storage
import Wire

/// Read-only views of the ledger as JSON, as the control API serves them.
/// Key order and row order are fixed, so every node returns byte-identical answers.
extension Ledger {
    static func json(_ v: SQLValue) -> JSONValue {
        switch v {
        case .null: return .null
        case .int(let i): return .int(i)
        case .text(let s): return .string(s)
        case .double(let d): return .int(Int64(d))
        case .blob(let b): return .string(Hex.encode(b))
        }
    }

    private func stepJSON(_ r: [SQLValue]) -> JSONValue {
        // step_id, session_id, position, title, status, claimant, outcome, updated_index, resolved_index
        .obj([
            ("step_id", Self.json(r[0])), ("session_id", Self.json(r[1])), ("position", Self.json(r[2])),
            ("title", Self.json(r[3])), ("status", Self.json(r[4])), ("claimant", Self.json(r[5])),
            ("outcome", Self.json(r[6])), ("updated_index", Self.json(r[7])), ("resolved_index", Self.json(r[8])),
        ])
    }

    /// A step's columns, the claimant as a public key (`FROM \(stepsFrom)`).
    private static let stepColumns = "s.step_id, s.session_id, s.position, s.title, s.status, c.signer, s.outcome, s.updated_index, s.resolved_index"
    private static let stepsFrom = "ledger_steps s LEFT JOIN ledger_signers c ON c.id = s.claimant_id"

    /// A session with its steps in order; nil when unknown.
    public func session(id: String) throws -> JSONValue? {
        guard let r = try db.query("""
            SELECT s.session_id, s.title, o.signer, s.status, s.step_count, s.resolved_count, s.created_index, s.completed_index, s.created_tx
            FROM ledger_sessions s LEFT JOIN ledger_signers o ON o.id = s.owner_id WHERE s.session_id = ?
            """, [.text(id)]).first else { return nil }
        let steps = try db.query("SELECT \(Self.stepColumns) FROM \(Self.stepsFrom) WHERE s.session_id = ? ORDER BY s.position", [.text(id)])
        let participants = try db.query("SELECT COUNT(*) FROM ledger_participants WHERE session_id = ?", [.text(id)]).first?.first?.int ?? 0
        return .obj([
            ("session_id", Self.json(r[0])), ("title", Self.json(r[1])), ("owner", Self.json(r[2])),
            ("status", Self.json(r[3])), ("step_count", Self.json(r[4])), ("resolved_count", Self.json(r[5])),
            ("participant_count", .int(participants)), ("created_index", Self.json(r[6])),
            ("completed_index", Self.json(r[7])), ("created_tx", Self.json(r[8])),
            ("steps", .array(steps.map(stepJSON))),
        ])
    }

    /// Participants of a session in join order; nil when the session is unknown.
    public func participants(sessionID: String) throws -> JSONValue? {
        guard try sessionExists(sessionID) else { return nil }
        let rows = try db.query("""
            SELECT a.signer, p.joined_index FROM ledger_participants p LEFT JOIN ledger_signers a ON a.id = p.actor_id
            WHERE p.session_id = ? ORDER BY p.joined_index, a.signer
            """, [.text(sessionID)])
        return .obj([
            ("session_id", .string(sessionID)),
            ("participants", .array(rows.map { .obj([("public_key", Self.json($0[0])), ("joined_index", Self.json($0[1]))]) })),
        ])
    }

    private func sessionExists(_ id: String) throws -> Bool {
        !(try db.query("SELECT 1 FROM ledger_sessions WHERE session_id = ?", [.text(id)])).isEmpty
    }

    /// Steps of a session that are not resolved (status `open` or `claimed`); nil when the session is unknown.
    public func openSteps(sessionID: String) throws -> JSONValue? {
        guard try sessionExists(sessionID) else { return nil }
        let rows = try db.query("SELECT \(Self.stepColumns) FROM \(Self.stepsFrom) WHERE s.session_id = ? AND s.status <> 'resolved' ORDER BY s.position", [.text(sessionID)])
        return .obj([("session_id", .string(sessionID)), ("steps", .array(rows.map(stepJSON)))])
    }

    /// Events with `seq > after`, oldest first, at most `limit` (1...1000); of one session or of all
    /// when `sessionID` is nil. `next_after` is the cursor for the next page.
    /// Returns nil when the session is unknown.
    public func events(sessionID: String?, after: Int64 = 0, limit: Int = 100) throws -> JSONValue? {
        let lim = Int64(max(1, min(limit, 1000)))
        let rows: [[SQLValue]]
        if let sid = sessionID {
            guard try sessionExists(sid) else { return nil }
            rows = try db.query("SELECT \(Self.eventColumns) WHERE e.session_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?",
                                [.text(sid), .int(after), .int(lim)])
        } else {
            rows = try db.query("SELECT \(Self.eventColumns) WHERE e.seq > ? ORDER BY e.seq LIMIT ?",
                                [.int(after), .int(lim)])
        }
        let events: [JSONValue] = rows.map {
            .obj([("seq", Self.json($0[0])), ("raft_index", Self.json($0[1])), ("op", Self.json($0[2])), ("actor", Self.json($0[3])),
                  ("tx_id", Self.json($0[4])), ("session_id", Self.json($0[5])), ("ts", Self.json($0[6]))])
        }
        let next = rows.last?[0].int ?? after
        return .obj([("events", .array(events)), ("next_after", .int(next))])
    }

    private static let eventColumns = """
        e.seq, e.raft_index, e.op, a.signer, e.tx_id, e.session_id, e.ts
        FROM ledger_events e LEFT JOIN ledger_signers a ON a.id = e.actor_id
        """

    /// A step with its decisions (and their vote tallies); nil when unknown.
    public func step(id: String) throws -> JSONValue? {
        guard let r = try db.query("SELECT \(Self.stepColumns) FROM \(Self.stepsFrom) WHERE s.step_id = ?", [.text(id)]).first else { return nil }
        guard case .object(var o) = stepJSON(r) else { return nil }
        let decisions = try db.query("""
            SELECT d.decision_id, d.question, d.options, d.quorum, d.status, d.outcome, o.signer, d.opened_index, d.decided_index
            FROM ledger_decisions d LEFT JOIN ledger_signers o ON o.id = d.opened_by_id WHERE d.step_id = ? ORDER BY d.opened_index
            """, [.text(id)])
        var ds: [JSONValue] = []
        for d in decisions {
            let options = (d[2].text.flatMap { try? JSONValue.parse($0) }) ?? .array([])
            let tallyRows = try db.query("SELECT option, COUNT(*) FROM ledger_votes WHERE decision_id = ? GROUP BY option ORDER BY option", [d[0]])
            var tally = JSONObject()
            for opt in options.arrayValue ?? [] {
                if let s = opt.stringValue { tally[s] = .int(tallyRows.first { $0[0].text.map { Limits.same($0, s) } ?? false }?[1].int ?? 0) }
            }
            ds.append(.obj([
                ("decision_id", Self.json(d[0])), ("question", Self.json(d[1])), ("options", options),
                ("quorum", Self.json(d[3])), ("status", Self.json(d[4])), ("outcome", Self.json(d[5])),
                ("opened_by", Self.json(d[6])), ("opened_index", Self.json(d[7])), ("decided_index", Self.json(d[8])),
                ("votes", .object(tally)),
            ]))
        }
        o["decisions"] = .array(ds)
        return .object(o)
    }

    /// Artifacts of a step in the order they were added; nil when the step is unknown.
    public func artifacts(stepID: String) throws -> JSONValue? {
        guard !(try db.query("SELECT 1 FROM ledger_steps WHERE step_id = ?", [.text(stepID)])).isEmpty else { return nil }
        let rows = try db.query("""
            SELECT a.artifact_id, a.kind, a.uri, a.sha256, b.signer, a.added_index
            FROM ledger_artifacts a LEFT JOIN ledger_signers b ON b.id = a.added_by_id WHERE a.step_id = ? ORDER BY a.added_index, a.artifact_id
            """, [.text(stepID)])
        return .obj([
            ("step_id", .string(stepID)),
            ("artifacts", .array(rows.map {
                .obj([("artifact_id", Self.json($0[0])), ("kind", Self.json($0[1])), ("uri", Self.json($0[2])),
                      ("sha256", Self.json($0[3])), ("added_by", Self.json($0[4])), ("added_index", Self.json($0[5]))])
            })),
        ])
    }

    // MARK: Snapshot

    static let snapshotFormat = "p2pos-ledger-snapshot/2"
    /// The schema version a snapshot's `ledger_meta` names: the one whose form its rows have
    /// (`V2Rows`), whichever version wrote it.
    static let snapshotSchemaVersion = "2"
    /// Snapshots of ledger schema version 1 (before the record of applied txs moved into one
    /// append-ordered table) are still restored: converted as a version-1 ledger file is.
    static let snapshotFormatV1 = "p2pos-ledger-snapshot/1"

    /// A deterministic serialization of every ledger table: canonical JSON
    /// `{"format":…,"tables":{name:[[column values…]…]}}`, rows in primary-key order.
    /// Two nodes with the same applied entries produce identical bytes.
    public func snapshot() throws -> [UInt8] {
        var all: [UInt8] = []
        try snapshot { all.append(contentsOf: $0) }
        return all
    }

    /// `snapshot()` handed to `sink` a piece at a time (pieces of about `chunk` bytes), so a
    /// large state never has to fit in memory at once. Read inside one transaction for a
    /// consistent view.
    public func snapshot(chunk: Int = 1 << 20, to sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        // Streamed straight from the rows into canonical JSON (the bytes `canonicalBytes` of the
        // equivalent JSONValue would give — tested): a snapshot is O(state), and building a value
        // tree first cost more than reading the tables.
        var out: [UInt8] = []
        out.reserveCapacity(chunk + 4096)
        out.append(contentsOf: "{\"format\":".utf8)
        CanonicalJSON.appendString(Ledger.snapshotFormat, to: &out)
        out.append(contentsOf: ",\"tables\":{".utf8)
        // Each signer id's public key as a JSON string, ready to copy into a row.
        var signers: [Int64: [UInt8]] = [:]
        try db.forEachRow("SELECT id, signer FROM ledger_signers") { r in
            var json: [UInt8] = []
            r.withText(1) { CanonicalJSON.appendString(utf8: $0, to: &json) }
            signers[r.int(0)] = json
        }
        // Canonical member order: names are ASCII, so UTF-16 order is byte order.
        for (ti, t) in Ledger.tables.sorted(by: { Array($0.name.utf8).lexicographicallyPrecedes(Array($1.name.utf8)) }).enumerated() {
            if ti > 0 { out.append(UInt8(ascii: ",")) }
            CanonicalJSON.appendString(t.name, to: &out)
            out.append(contentsOf: ":[".utf8)
            let form = V2Rows.forms[t.name] ?? V2Rows.Form(columns: 0)
            // Participants and votes: stored in (session or decision, signer id) order; the
            // snapshot orders each group by public key.
            let sortsGroups = t.name == "ledger_participants" || t.name == "ledger_votes"
            try db.withRows(t.export) { rows in
                try Ledger.appendRows(rows, of: t.name, form: form, signers: signers, sortsGroups: sortsGroups, to: &out, chunk: chunk, sink: sink)
            }
            out.append(UInt8(ascii: "]"))
        }
        out.append(contentsOf: "}}".utf8)
        if !out.isEmpty { try out.withUnsafeBytes(sink) }
    }

    /// One table's rows as canonical JSON arrays in the version-2 form (`form` says which column
    /// holds a signer id and which a tx_id), handing `out` to `sink` whenever it holds `chunk`
    /// bytes. With `sortsGroups`, the rows that share their first column are written sorted by
    /// their signer's public key. (`out` is a parameter rather than a captured variable: see
    /// `withRows`.)
    private static func appendRows(_ rows: SQLRows, of table: String, form: V2Rows.Form, signers: [Int64: [UInt8]], sortsGroups: Bool,
                                   to out: inout [UInt8], chunk: Int, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let row = rows.cursor
        var first = true
        var group: [UInt8] = []                                  // first column of the pending rows
        var pending: [(key: [UInt8], start: Int, end: Int)] = []  // signer JSON, row bytes in `held`
        var held: [UInt8] = []
        while true {
            let more = try rows.next()
            if sortsGroups {
                let same = more && row.withText(0) { $0.elementsEqual(group) }
                if !same && !pending.isEmpty {
                    // JSON strings of base64 text: byte order is the order of the keys.
                    if pending.count > 1 { pending.sort { $0.key.lexicographicallyPrecedes($1.key) } }
                    for p in pending {
                        if !first { out.append(UInt8(ascii: ",")) }
                        first = false
                        out.append(contentsOf: held[p.start..<p.end])
                    }
                    pending.removeAll(keepingCapacity: true)
                    held.removeAll(keepingCapacity: true)
                }
                if more && !same {
                    group.removeAll(keepingCapacity: true)
                    row.withText(0) { group.append(contentsOf: $0) }
                }
            }
            if out.count >= chunk {
                try out.withUnsafeBytes(sink)
                out.removeAll(keepingCapacity: true)
            }
            guard more else { break }
            if sortsGroups {
                let start = held.count
                let key = try appendRow(row, of: table, form: form, signers: signers, to: &held)
                pending.append((key, start, held.count))
            } else {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                _ = try appendRow(row, of: table, form: form, signers: signers, to: &out)
            }
        }
    }

    /// One row as a JSON array; returns its signer's public key as a JSON string (empty when none).
    private static func appendRow(_ row: SQLRowCursor, of table: String, form: V2Rows.Form, signers: [Int64: [UInt8]],
                                  to out: inout [UInt8]) throws -> [UInt8] {
        var key: [UInt8] = []
        out.append(UInt8(ascii: "["))
        for c in 0..<row.columnCount {
            if c > 0 { out.append(UInt8(ascii: ",")) }
            switch row.kind(c) {
            case .null: out.append(contentsOf: "null".utf8)
            case .int where c == form.signer:
                guard let s = signers[row.int(c)] else { throw LedgerError("snapshot: \(table) names signer id \(row.int(c)), which ledger_signers lacks") }
                out.append(contentsOf: s)
                key = s
            case .int: CanonicalJSON.appendInt(row.int(c), to: &out)
            case .text: row.withText(c) { CanonicalJSON.appendString(utf8: $0, to: &out) }
            case .blob where c == form.txID:
                try row.withBlob(c) { b in
                    guard b.count == 32 else { throw LedgerError("snapshot: a tx_id in \(table) is \(b.count) bytes, not 32") }
                    out.append(UInt8(ascii: "\""))
                    Hex.append(b, to: &out)
                    out.append(UInt8(ascii: "\""))
                }
            case .double, .blob: throw LedgerError("snapshot: unexpected value type in column \(c) of \(table)")
            }
        }
        out.append(UInt8(ascii: "]"))
        return key
    }

    /// Replace the whole ledger state with a snapshot made by `snapshot()` (in one transaction).
    public func restore(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try restore(buffer: $0) }
    }

    /// `restore` from bytes anywhere in memory (e.g. a mapped snapshot file). The snapshot is read
    /// a row at a time, never as one JSON value tree (which would take several times its size in
    /// memory). A malformed snapshot is refused and the transaction rolled back: nothing changes.
    public func restore(buffer: UnsafeRawBufferPointer) throws {
        try commitPending()
        forgetKnown()
        writes = true
        let buf = UnsafeBufferPointer(start: buffer.baseAddress?.assumingMemoryBound(to: UInt8.self), count: buffer.count)
        do {
            try db.transaction {
                for t in Ledger.storedTables { try db.run("DELETE FROM \(t)") }
                let rows = V2Rows(self)
                var cur = JSONCursor(buf, maxDepth: 8)
                var format: String? = nil
                // Duplicates are found byte for byte, as `JSONValue.parse` does (Swift's String
                // equality would merge canonically equivalent keys).
                var keys = Set<[UInt8]>()
                var tablesSeen = Set<[UInt8]>()
                // Where each snapshot table's rows go: converted into its own table, or for a
                // format-1 snapshot (known by then: "format" sorts before "tables") the two old
                // record tables go as they are to temporary tables that are converted at the end.
                var target: [String: (table: String, columns: Int)] = [:]
                for (name, form) in V2Rows.forms { target[name] = (name, form.columns) }
                var legacy = false
                try cur.expect(UInt8(ascii: "{"))
                var firstKey = true
                while try cur.next(close: UInt8(ascii: "}"), first: &firstKey) {
                    let key = try cur.string()
                    guard keys.insert(Array(key.utf8)).inserted else { throw LedgerError("snapshot has member \(key) twice") }
                    try cur.expect(UInt8(ascii: ":"))
                    switch key {
                    case "format":
                        format = try cur.value(depth: 2).stringValue
                        // (A second "format" member was refused above as a duplicate.)
                        if format == Ledger.snapshotFormatV1 {
                            guard !keys.contains(Array("tables".utf8)) else {
                                throw LedgerError("a \(Ledger.snapshotFormatV1) snapshot must name its format before its tables")
                            }
                            legacy = true
                            try db.exec("""
                                CREATE TEMP TABLE v1_applied(\(Ledger.v1AppliedColumns.joined(separator: ", ")));
                                CREATE TEMP TABLE v1_nonces(\(Ledger.v1NonceColumns.joined(separator: ", ")));
                                """)
                            target["ledger_applied"] = ("temp.v1_applied", Ledger.v1AppliedColumns.count)
                            target["ledger_nonces"] = ("temp.v1_nonces", Ledger.v1NonceColumns.count)
                        }
                    case "tables":
                        try cur.expect(UInt8(ascii: "{"))
                        var firstTable = true
                        while try cur.next(close: UInt8(ascii: "}"), first: &firstTable) {
                            let name = try cur.string()
                            guard tablesSeen.insert(Array(name.utf8)).inserted else { throw LedgerError("snapshot has table \(name) twice") }
                            try cur.expect(UInt8(ascii: ":"))
                            guard let (table, columns) = target[name] else {
                                _ = try cur.value(depth: 3)    // not a table of this schema: ignored
                                continue
                            }
                            let raw = table.hasPrefix("temp.") ? Ledger.insertSQL(table, columns: columns) : nil
                            try cur.expect(UInt8(ascii: "["))
                            var firstRow = true
                            while try cur.next(close: UInt8(ascii: "]"), first: &firstRow) {
                                guard case .array(let cells) = try cur.value(depth: 4), cells.count == columns else {
                                    throw LedgerError("snapshot row of \(name) does not have \(columns) columns")
                                }
                                let values = try cells.map { c -> SQLValue in
                                    switch c {
                                    case .null: return .null
                                    case .int(let i): return .int(i)
                                    case .string(let s): return .text(s)
                                    default: throw LedgerError("snapshot cell of \(name) has type \(c.typeName)")
                                    }
                                }
                                if let raw { try db.run(raw, values) } else { try rows.insert(table, values) }
                            }
                        }
                    default:
                        _ = try cur.value(depth: 2)    // unknown member: ignored
                    }
                }
                try cur.expectEnd()
                guard format == Ledger.snapshotFormat || format == Ledger.snapshotFormatV1, keys.contains(Array("tables".utf8)) else {
                    throw LedgerError("not a \(Ledger.snapshotFormat) (or \(Ledger.snapshotFormatV1)) snapshot")
                }
                for t in (legacy ? Ledger.v1Tables : Ledger.tables.map(\.name)) where !tablesSeen.contains(Array(t.utf8)) {
                    throw LedgerError("snapshot lacks table \(t)")
                }
                _ = try lastAppliedIndex()
                let version = try db.query("SELECT value FROM ledger_meta WHERE key = 'schema_version'").first?.first?.text
                guard version == (legacy ? "1" : Ledger.snapshotSchemaVersion) else {
                    throw LedgerError("snapshot in format \(format ?? "") has ledger schema version \(version ?? "none")")
                }
                if legacy {
                    _ = try convertV1Records(schema: "temp", applied: "v1_applied", nonces: "v1_nonces", into: rows)
                }
                try db.run("UPDATE ledger_meta SET value = ? WHERE key = 'schema_version'", [.text(Ledger.schemaVersion)])
            }
        } catch let e as JSONError {
            forgetKnown()    // signer ids assigned in the rolled-back transaction
            throw LedgerError("snapshot is not valid JSON: \(e)")
        } catch {
            forgetKnown()
            throw error
        }
        // Count the restored rows now (not at the next stats request, on the apply queue).
        if keepsCounters { _ = try currentCounters() }
    }
}
