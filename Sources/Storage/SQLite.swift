import CSQLite
import Foundation
import Support

/// A SQLite error with the statement or file it came from.
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let message: String
    public var description: String { "sqlite error \(code): \(message)" }
}

/// A bound or column value.
public enum SQLValue: Equatable, Sendable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    case blob([UInt8])

    public var int: Int64? { if case .int(let v) = self { return v }; return nil }
    public var text: String? { if case .text(let v) = self { return v }; return nil }
    public var blob: [UInt8]? {
        switch self {
        case .blob(let v): return v
        case .text(let s): return Array(s.utf8)
        default: return nil
        }
    }
}

let SQLITE_TRANSIENT_PTR = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// How many frames the write-ahead log of a connection held after its last commit (updated by
/// SQLite's WAL hook on the committing thread; read from any thread).
public final class WALFrameCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    /// Frames at which the committing connection checkpoints by itself (SQLite's own
    /// `wal_autocheckpoint`, which the hook replaces); 0 for never.
    let autocheckpoint: Int32

    init(autocheckpoint: Int32) { self.autocheckpoint = autocheckpoint }

    public var frames: Int { lock.lock(); defer { lock.unlock() }; return value }
    func set(_ n: Int) { lock.lock(); value = n; lock.unlock() }
}

private func walHook(_ ctx: UnsafeMutableRawPointer?, _ db: OpaquePointer?, _ name: UnsafePointer<CChar>?, _ frames: Int32) -> Int32 {
    guard let ctx else { return SQLITE_OK }
    let counter = Unmanaged<WALFrameCounter>.fromOpaque(ctx).takeUnretainedValue()
    counter.set(Int(frames))
    if counter.autocheckpoint > 0 && frames >= counter.autocheckpoint {
        _ = sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
    }
    return SQLITE_OK
}

/// The rows of a statement `SQLiteDB.withRows` prepared; `cursor` reads the current one. Valid
/// only inside that `withRows` call (the statement is cached and reset afterwards), and stop at
/// the first `false` from `next()` (stepping on would restart the query). Do not run the same
/// SQL text on the connection meanwhile: it shares the cached statement.
public struct SQLRows {
    let stmt: OpaquePointer
    let db: SQLiteDB
    public var cursor: SQLRowCursor { SQLRowCursor(stmt: stmt) }

    /// Step to the next row: false once there are no more.
    public func next() throws -> Bool {
        let rc = sqlite3_step(stmt)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        throw db.stepError(rc)
    }
}

/// The current row of `SQLiteDB.forEachRow` or `SQLRows`.
public struct SQLRowCursor {
    public enum Kind: Sendable { case null, int, double, text, blob }
    let stmt: OpaquePointer

    public var columnCount: Int { Int(sqlite3_column_count(stmt)) }

    public func kind(_ column: Int) -> Kind {
        switch sqlite3_column_type(stmt, Int32(column)) {
        case SQLITE_INTEGER: return .int
        case SQLITE_FLOAT: return .double
        case SQLITE_TEXT: return .text
        case SQLITE_BLOB: return .blob
        default: return .null
        }
    }

    public func int(_ column: Int) -> Int64 { sqlite3_column_int64(stmt, Int32(column)) }

    /// The column as a string when it holds text, else nil.
    public func text(_ column: Int) -> String? { value(column).text }

    /// The column as a value (copied).
    public func value(_ column: Int) -> SQLValue {
        let c = Int32(column)
        switch kind(column) {
        case .int: return .int(sqlite3_column_int64(stmt, c))
        case .double: return .double(sqlite3_column_double(stmt, c))
        case .text: return .text(String(cString: sqlite3_column_text(stmt, c)))
        case .blob:
            let len = Int(sqlite3_column_bytes(stmt, c))
            guard len > 0, let p = sqlite3_column_blob(stmt, c) else { return .blob([]) }
            return .blob(Array(UnsafeRawBufferPointer(start: p, count: len)))
        case .null: return .null
        }
    }

    /// The column's bytes (a blob's, or text's UTF-8), valid only inside `body`.
    public func withBlob<T>(_ column: Int, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        let p = sqlite3_column_blob(stmt, Int32(column))
        let n = Int(sqlite3_column_bytes(stmt, Int32(column)))
        return try body(UnsafeRawBufferPointer(start: p, count: p == nil ? 0 : n))
    }

    /// The column's text as UTF-8 bytes, valid only inside `body`.
    public func withText<T>(_ column: Int, _ body: (UnsafeBufferPointer<UInt8>) throws -> T) rethrows -> T {
        let p = sqlite3_column_text(stmt, Int32(column))
        let n = Int(sqlite3_column_bytes(stmt, Int32(column)))
        return try body(UnsafeBufferPointer(start: p, count: p == nil ? 0 : n))
    }
}

/// One SQLite connection. Not thread-safe: one owner (a serial queue or actor) uses it.
public final class SQLiteDB: @unchecked Sendable {
    let handle: OpaquePointer
    public let path: String
    private var cache: [String: OpaquePointer] = [:]

    /// Bytes a WAL file is truncated to when it restarts (`PRAGMA journal_size_limit`): about
    /// what the ledger's WAL reaches under steady load (it checkpoints at 16,384 frames), so
    /// only a burst beyond that is trimmed, not every cycle.
    public static let walSizeLimit = 64 << 20

    /// Open (creating if needed). WAL journal, `synchronous` FULL by default so a commit is durable.
    /// `exclusive`: this connection is the file's only user (no other connection or process opens
    /// it), so SQLite takes its file lock once instead of per transaction and needs no shared memory.
    /// `pageSize`: the page size of a database this call creates (an existing file keeps its own).
    public init(path: String, synchronous: String = "FULL", exclusive: Bool = false, pageSize: Int? = nil) throws {
        _ = SQLiteDB.configured
        var h: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &h, flags, nil)
        guard rc == SQLITE_OK, let handle = h else {
            let msg = h.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            if let h { sqlite3_close(h) }
            throw SQLiteError(code: rc, message: "\(path): \(msg)")
        }
        self.handle = handle
        self.path = path
        sqlite3_busy_timeout(handle, 5000)
        if exclusive { try exec("PRAGMA locking_mode=EXCLUSIVE") }
        // Only takes effect on a file that has no content yet.
        if let pageSize { try exec("PRAGMA page_size=\(pageSize)") }
        if path != ":memory:" {
            try exec("PRAGMA journal_mode=WAL")
        }
        try exec("PRAGMA synchronous=\(synchronous)")
        try exec("PRAGMA foreign_keys=ON")
        try exec("PRAGMA cache_size=-32768")      // 32 MiB page cache
        // After a burst grew the WAL (e.g. while a long read held back checkpoints), truncate it
        // to this size when it next restarts instead of keeping its high-water mark on disk.
        try exec("PRAGMA journal_size_limit=\(SQLiteDB.walSizeLimit)")
        try exec("PRAGMA temp_store=MEMORY")
    }

    /// Process-wide settings, applied once before the first connection opens.
    private static let configured: Int32 = p2pos_sqlite_configure()

    deinit {
        for (_, s) in cache { sqlite3_finalize(s) }
        sqlite3_close(handle)
    }

    private func error(_ rc: Int32) -> SQLiteError {
        SQLiteError(code: rc, message: String(cString: sqlite3_errmsg(handle)))
    }

    /// Run one or more statements without results.
    public func exec(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &err)
        if rc != SQLITE_OK {
            let msg = err.map { String(cString: $0) } ?? "unknown"
            sqlite3_free(err)
            throw SQLiteError(code: rc, message: msg)
        }
    }

    /// Statements by the address of their SQL text's UTF-8 bytes. The statements of the apply
    /// path are string literals, whose bytes sit at one fixed address for the whole run, so the
    /// lookup hashes one word instead of the whole text (SipHash over ~150 bytes, several times
    /// per applied tx). A hit is confirmed by comparing the text with the statement's own, so a
    /// heap string that reuses a freed string's address can never get the wrong statement.
    private var byAddress: [UInt: OpaquePointer] = [:]

    private func prepare(_ sql: String) throws -> OpaquePointer {
        let fast = sql.utf8.withContiguousStorageIfAvailable { b -> OpaquePointer? in
            guard let base = b.baseAddress, let s = byAddress[UInt(bitPattern: base)],
                  let text = sqlite3_sql(s), strlen(text) == b.count, memcmp(text, base, b.count) == 0 else { return nil }
            return s
        } ?? nil
        if let s = fast {
            sqlite3_reset(s)
            return s
        }
        let stmt: OpaquePointer
        if let s = cache[sql] {
            sqlite3_reset(s)
            stmt = s
        } else {
            var s: OpaquePointer?
            let rc = sqlite3_prepare_v2(handle, sql, -1, &s, nil)
            guard rc == SQLITE_OK, let prepared = s else { throw error(rc) }
            cache[sql] = prepared
            stmt = prepared
        }
        // Remembered by address only for texts that will stay put: literals (immortal) and the
        // first 256 distinct addresses seen (a bound on what dynamic texts can add).
        if byAddress.count < 256, let base = sql.utf8.withContiguousStorageIfAvailable({ $0.baseAddress }) ?? nil {
            byAddress[UInt(bitPattern: base)] = stmt
        }
        return stmt
    }

    private func bind(_ stmt: OpaquePointer, _ params: [SQLValue]) throws {
        // Every parameter is bound on each use; clearing is needed only when a call leaves some
        // unbound (they must read as NULL, not as the previous call's values).
        if params.count < Int(sqlite3_bind_parameter_count(stmt)) { sqlite3_clear_bindings(stmt) }
        for (i, p) in params.enumerated() {
            let idx = Int32(i + 1)
            let rc: Int32
            switch p {
            case .null: rc = sqlite3_bind_null(stmt, idx)
            case .int(let v): rc = sqlite3_bind_int64(stmt, idx, v)
            case .double(let v): rc = sqlite3_bind_double(stmt, idx, v)
            case .text(let v):
                // The string's own UTF-8 bytes and their length: no C-string copy, no strlen.
                // (An empty text still needs a non-NULL pointer, or SQLite would bind NULL.)
                var t = v
                rc = t.withUTF8 { (b: UnsafeBufferPointer<UInt8>) -> Int32 in
                    let p: UnsafePointer<UInt8> = b.baseAddress ?? ("" as StaticString).utf8Start
                    return p.withMemoryRebound(to: CChar.self, capacity: max(1, b.count)) { c in
                        sqlite3_bind_text(stmt, idx, c, Int32(b.count), SQLITE_TRANSIENT_PTR)
                    }
                }
            case .blob(let v):
                rc = v.withUnsafeBytes { sqlite3_bind_blob(stmt, idx, $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1), Int32(v.count), SQLITE_TRANSIENT_PTR) }
            }
            guard rc == SQLITE_OK else { throw error(rc) }
        }
    }

    /// Execute a statement with parameters; returns the number of changed rows.
    @discardableResult
    public func run(_ sql: String, _ params: [SQLValue] = []) throws -> Int {
        let stmt = try prepare(sql)
        defer { sqlite3_reset(stmt) }
        try bind(stmt, params)
        var rc = sqlite3_step(stmt)
        while rc == SQLITE_ROW { rc = sqlite3_step(stmt) }
        guard rc == SQLITE_DONE else { throw error(rc) }
        return Int(sqlite3_changes(handle))
    }

    /// Query rows as arrays of values.
    public func query(_ sql: String, _ params: [SQLValue] = []) throws -> [[SQLValue]] {
        var rows: [[SQLValue]] = []
        try forEachRow(sql, params) { row in rows.append((0..<row.columnCount).map(row.value)) }
        return rows
    }

    /// The first column of the first row as text (nil when there is no row or it is NULL),
    /// without building the rows `query` returns.
    public func queryText(_ sql: String, _ params: [SQLValue] = []) throws -> String? {
        try firstRow(sql, params) { stmt in sqlite3_column_text(stmt, 0).map { String(cString: $0) } } ?? nil
    }

    /// Whether the query returns at least one row.
    public func queryExists(_ sql: String, _ params: [SQLValue] = []) throws -> Bool {
        try firstRow(sql, params) { _ in true } ?? false
    }

    /// Step a query once: `read` of its first row, or nil when it has none.
    private func firstRow<T>(_ sql: String, _ params: [SQLValue], _ read: (OpaquePointer) -> T) throws -> T? {
        let stmt = try prepare(sql)
        defer { sqlite3_reset(stmt) }
        try bind(stmt, params)
        let rc = sqlite3_step(stmt)
        if rc == SQLITE_DONE { return nil }
        guard rc == SQLITE_ROW else { throw error(rc) }
        return read(stmt)
    }

    /// Count WAL frames after each commit of this connection (see `WALFrameCounter`), so another
    /// thread can decide when a checkpoint is worth it. Replaces `PRAGMA wal_autocheckpoint`; the
    /// connection still checkpoints by itself once the log reaches `autocheckpoint` frames.
    public func observeWAL(autocheckpoint: Int32) -> WALFrameCounter {
        let counter = WALFrameCounter(autocheckpoint: autocheckpoint)
        walCounter = counter
        sqlite3_wal_hook(handle, walHook, Unmanaged.passUnretained(counter).toOpaque())
        return counter
    }
    private var walCounter: WALFrameCounter?

    /// Visit the rows of a query without copying them: `body` reads the current row through the
    /// cursor, which is valid only during that call.
    public func forEachRow(_ sql: String, _ params: [SQLValue] = [], _ body: (SQLRowCursor) throws -> Void) throws {
        let stmt = try prepare(sql)
        defer { sqlite3_reset(stmt) }
        try bind(stmt, params)
        let cursor = SQLRowCursor(stmt: stmt)
        while true {
            let rc = sqlite3_step(stmt)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw error(rc) }
            try body(cursor)
        }
    }

    /// `forEachRow` with the stepping left to `body` (`SQLRows.next()`), so the loop over the rows
    /// can live in a function that takes its output `inout`: variables a per-row closure captures
    /// are checked for exclusive access at run time on every use, which cost a sixth of
    /// streaming a snapshot.
    public func withRows<T>(_ sql: String, _ params: [SQLValue] = [], _ body: (SQLRows) throws -> T) throws -> T {
        let stmt = try prepare(sql)
        defer { sqlite3_reset(stmt) }
        try bind(stmt, params)
        return try body(SQLRows(stmt: stmt, db: self))
    }

    fileprivate func stepError(_ rc: Int32) -> SQLiteError { error(rc) }

    /// Run `body` inside BEGIN IMMEDIATE … COMMIT (rolled back on error). One fsync per call.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try run("BEGIN IMMEDIATE")      // prepared once and cached, like every statement here
        do {
            let r = try body()
            try run("COMMIT")
            return r
        } catch {
            _ = try? run("ROLLBACK")
            throw error
        }
    }

    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
}
