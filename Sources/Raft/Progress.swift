// Leader-side view of each follower, and quorum arithmetic.

/// Bounded set of in-flight appends (by their last index), oldest first.
struct Inflights: Sendable {
    let capacity: Int
    private(set) var items: [UInt64] = []

    init(capacity: Int) { self.capacity = max(1, capacity) }

    var isFull: Bool { items.count >= capacity }
    var count: Int { items.count }

    mutating func add(_ last: UInt64) {
        precondition(!isFull, "inflights overflow")
        items.append(last)
    }

    /// Frees every append whose last index is <= `index`.
    mutating func free(upTo index: UInt64) {
        var n = 0
        while n < items.count && items[n] <= index { n += 1 }
        if n > 0 { items.removeFirst(n) }
    }

    mutating func reset() { items.removeAll(keepingCapacity: true) }
}

/// Replication state of one follower as tracked by the leader.
struct Progress: Sendable {
    enum State: Sendable, Equatable { case probe, replicate, snapshot }

    var match: UInt64 = 0
    var next: UInt64
    var state: State = .probe
    /// In probe state: one append is out, wait for its answer or the next heartbeat.
    var probeSent = false
    var inflights: Inflights
    /// Heard from in the current check-quorum period.
    var recentActive = false
    /// Highest read-index round acknowledged.
    var readAck: UInt64 = 0
    // Snapshot transfer.
    var pendingSnapshot: UInt64 = 0
    var snapshotOffset: UInt64 = 0
    var snapshotChunkOut = false
    /// The highest commit index sent to this follower (in an append or a heartbeat): a hint
    /// that saves a message carrying nothing new, never relied on for safety.
    var sentCommit: UInt64 = 0

    init(next: UInt64, maxInflight: Int) {
        self.next = next
        self.inflights = Inflights(capacity: maxInflight)
    }

    var isPaused: Bool {
        switch state {
        case .probe: return probeSent
        case .replicate: return inflights.isFull
        case .snapshot: return true
        }
    }

    mutating func becomeProbe() {
        if state == .snapshot {
            next = max(match + 1, pendingSnapshot + 1)
        } else {
            next = match + 1
        }
        state = .probe
        probeSent = false
        inflights.reset()
        pendingSnapshot = 0
    }

    mutating func becomeReplicate() {
        state = .replicate
        next = match + 1
        probeSent = false
        inflights.reset()
        pendingSnapshot = 0
    }

    mutating func becomeSnapshot(_ index: UInt64) {
        state = .snapshot
        pendingSnapshot = index
        snapshotOffset = 0
        snapshotChunkOut = false
        probeSent = false
        inflights.reset()
    }

    /// Records an acknowledgement of `n`; returns whether match advanced.
    mutating func maybeUpdate(_ n: UInt64) -> Bool {
        var updated = false
        if match < n {
            match = n
            updated = true
            probeSent = false
        }
        next = max(next, n + 1)
        return updated
    }

    /// Handles a rejection of the append whose previous index was `rejected`; returns false
    /// when the rejection is stale.
    mutating func maybeDecrTo(rejected: UInt64, matchHint: UInt64) -> Bool {
        if state == .replicate {
            if rejected <= match { return false }
            next = match + 1
            return true
        }
        if next == 0 || next - 1 != rejected { return false }
        // Not floored at match + 1: a follower that lost its log (a wiped or replaced disk)
        // rejects everything above what it still has, and must be walked back to it — or to a
        // snapshot — instead of being re-sent the same append forever.
        next = max(min(rejected, matchHint + 1), 1)
        // The follower says it lacks what `match` claimed; it only ever lowers commits' support.
        if match >= next { match = next - 1 }
        probeSent = false
        return true
    }

    /// Bookkeeping after sending entries ending at `last`.
    mutating func sentEntries(last: UInt64, count: Int) {
        switch state {
        case .replicate:
            if count > 0 {
                next = last + 1
                inflights.add(last)
            }
        case .probe:
            probeSent = true
        case .snapshot:
            break
        }
    }
}

/// Majority arithmetic over a voter list.
enum Quorum {
    static func size(_ voters: Int) -> Int { voters / 2 + 1 }

    /// The highest value that a majority of voters have reached.
    static func committed(_ values: [UInt64]) -> UInt64 {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted(by: >)
        return sorted[size(values.count) - 1]
    }

    enum VoteResult: Equatable { case won, lost, pending }

    /// Outcome of an election given the answers so far (voters not in `votes` have not answered).
    static func voteResult(voters: [NodeID], votes: [NodeID: Bool]) -> VoteResult {
        guard !voters.isEmpty else { return .lost }
        var granted = 0
        var rejected = 0
        for v in voters {
            switch votes[v] {
            case .some(true): granted += 1
            case .some(false): rejected += 1
            case .none: break
            }
        }
        let q = size(voters.count)
        if granted >= q { return .won }
        if voters.count - rejected < q { return .lost }
        return .pending
    }
}
