import Storage
import Wire

/// Row counts over the whole ledger, as `GET /v1/p2p/stats` reports them. Apply keeps them up
/// to date in memory (each accepted tx's `ApplyContext.Outcome` says how it changes them), so the
/// route reads them instead of scanning every table on the apply queue. Derived data: never
/// stored, counted from the tables once when missing (after an open, a restore or a failed write).
public struct LedgerCounters: Equatable, Sendable {
    public var sessions: Int64 = 0
    public var sessionsCompleted: Int64 = 0
    public var participants: Int64 = 0
    public var steps: Int64 = 0
    public var stepsOpen: Int64 = 0
    public var stepsClaimed: Int64 = 0
    public var stepsResolved: Int64 = 0
    public var artifacts: Int64 = 0
    public var decisions: Int64 = 0
    public var decisionsOpen: Int64 = 0
    public var votes: Int64 = 0
    public var events: Int64 = 0
    public var txsApplied: Int64 = 0
    public var txsRejected: Int64 = 0

    public init() {}

    mutating func add(_ d: LedgerCounters) {
        sessions += d.sessions
        sessionsCompleted += d.sessionsCompleted
        participants += d.participants
        steps += d.steps
        stepsOpen += d.stepsOpen
        stepsClaimed += d.stepsClaimed
        stepsResolved += d.stepsResolved
        artifacts += d.artifacts
        decisions += d.decisions
        decisionsOpen += d.decisionsOpen
        votes += d.votes
        events += d.events
        txsApplied += d.txsApplied
        txsRejected += d.txsRejected
    }

    /// Count every table (O(rows); the reference the in-memory counts are tested against).
    static func count(_ db: SQLiteDB) throws -> LedgerCounters {
        func n(_ sql: String) throws -> Int64 { try db.query(sql).first?.first?.int ?? 0 }
        var c = LedgerCounters()
        c.sessions = try n("SELECT COUNT(*) FROM ledger_sessions")
        c.sessionsCompleted = try n("SELECT COUNT(*) FROM ledger_sessions WHERE status = 'completed'")
        c.participants = try n("SELECT COUNT(*) FROM ledger_participants")
        c.steps = try n("SELECT COUNT(*) FROM ledger_steps")
        c.stepsOpen = try n("SELECT COUNT(*) FROM ledger_steps WHERE status = 'open'")
        c.stepsClaimed = try n("SELECT COUNT(*) FROM ledger_steps WHERE status = 'claimed'")
        c.stepsResolved = try n("SELECT COUNT(*) FROM ledger_steps WHERE status = 'resolved'")
        c.artifacts = try n("SELECT COUNT(*) FROM ledger_artifacts")
        c.decisions = try n("SELECT COUNT(*) FROM ledger_decisions")
        c.decisionsOpen = try n("SELECT COUNT(*) FROM ledger_decisions WHERE status = 'open'")
        c.votes = try n("SELECT COUNT(*) FROM ledger_votes")
        c.events = try n("SELECT COUNT(*) FROM ledger_events")
        c.txsApplied = try n("SELECT COUNT(*) FROM ledger_applied WHERE status = 'applied'")
        c.txsRejected = try n("SELECT COUNT(*) FROM ledger_applied WHERE status = 'rejected'")
        return c
    }

    var fields: [(String, JSONValue)] {
        [
            ("sessions", .int(sessions)), ("sessions_completed", .int(sessionsCompleted)),
            ("participants", .int(participants)), ("steps", .int(steps)), ("steps_open", .int(stepsOpen)),
            ("steps_claimed", .int(stepsClaimed)), ("steps_resolved", .int(stepsResolved)),
            ("artifacts", .int(artifacts)), ("decisions", .int(decisions)), ("decisions_open", .int(decisionsOpen)),
            ("votes", .int(votes)), ("events", .int(events)), ("txs_applied", .int(txsApplied)),
            ("txs_rejected", .int(txsRejected)),
        ]
    }
}

extension Ledger {
    /// The row counts. With `keepsCounters` (the instance that applies), apply keeps them and the
    /// tables are counted only when they are missing; otherwise they are counted on every call,
    /// since another connection's applies would not update them.
    public func currentCounters() throws -> LedgerCounters {
        if let c = counters { return c }
        let c = try LedgerCounters.count(db)
        if keepsCounters { counters = c }
        return c
    }

    /// Counters over the whole ledger (`GET /v1/p2p/stats`).
    public func stats() throws -> JSONValue {
        .obj([("last_applied_index", .int(Int64(try lastAppliedIndex())))] + (try currentCounters()).fields)
    }
}
