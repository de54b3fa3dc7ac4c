// The in-memory Raft log: a snapshot point followed by entries, with a stable/unstable split.

/// The log as the core sees it. Entries `<= stable` are on the caller's stable storage; the
/// rest (the unstable tail) are handed out in the next `Ready`.
struct RaftLog: Sendable {
    private(set) var snapshotIndex: UInt64
    private(set) var snapshotTerm: UInt64
    /// entries[i].index == snapshotIndex + 1 + i
    private(set) var entries: [Entry]
    private(set) var committed: UInt64
    var applied: UInt64
    /// Highest index known to be persisted.
    var stable: UInt64

    init(snapshotIndex: UInt64, snapshotTerm: UInt64, entries: [Entry], committed: UInt64, applied: UInt64) {
        self.snapshotIndex = snapshotIndex
        self.snapshotTerm = snapshotTerm
        self.entries = entries
        self.committed = committed
        self.applied = applied
        self.stable = snapshotIndex + UInt64(entries.count)
    }

    var firstIndex: UInt64 { snapshotIndex + 1 }
    var lastIndex: UInt64 { snapshotIndex + UInt64(entries.count) }
    var lastTerm: UInt64 { entries.last?.term ?? snapshotTerm }

    /// Term of the entry at `i`, or nil when it is compacted away or beyond the end.
    func term(_ i: UInt64) -> UInt64? {
        if i == snapshotIndex { return snapshotTerm }
        if i < snapshotIndex || i > lastIndex { return nil }
        return entries[Int(i - snapshotIndex - 1)].term
    }

    func entry(_ i: UInt64) -> Entry? {
        guard i > snapshotIndex, i <= lastIndex else { return nil }
        return entries[Int(i - snapshotIndex - 1)]
    }

    func matchTerm(_ i: UInt64, _ t: UInt64) -> Bool { term(i) == t }

    /// Raft's "at least as up to date" rule for granting votes.
    func isUpToDate(lastIndex li: UInt64, lastTerm lt: UInt64) -> Bool {
        lt > lastTerm || (lt == lastTerm && li >= lastIndex)
    }

    /// Entries in [lo, hi] limited by count and bytes (always at least one if any exists).
    func slice(from lo: UInt64, to hi: UInt64, maxCount: Int, maxBytes: Int) -> [Entry] {
        guard lo > snapshotIndex, lo <= hi, lo <= lastIndex else { return [] }
        let end = min(hi, lastIndex)
        var out: [Entry] = []
        var bytes = 0
        var i = lo
        while i <= end && out.count < maxCount {
            let e = entries[Int(i - snapshotIndex - 1)]
            if !out.isEmpty && bytes + e.byteSize > maxBytes { break }
            bytes += e.byteSize
            out.append(e)
            i += 1
        }
        return out
    }

    /// Entries not yet persisted.
    var unstableEntries: [Entry] {
        guard stable < lastIndex else { return [] }
        return Array(entries[Int(stable - snapshotIndex)...])
    }

    /// Index of the first entry in `ents` that conflicts with or extends the log (0 if none).
    func findConflict(_ ents: [Entry]) -> UInt64 {
        for e in ents where !matchTerm(e.index, e.term) {
            return e.index
        }
        return 0
    }

    /// The largest index <= `index` whose term is <= `t` (for fast back-off).
    func findConflictByTerm(_ index: UInt64, _ t: UInt64) -> UInt64 {
        var i = min(index, lastIndex)
        while i > snapshotIndex {
            if let tt = term(i), tt <= t { return i }
            i -= 1
        }
        return snapshotIndex
    }

    /// Appends `ents`, truncating any conflicting suffix first. Precondition: ents are
    /// contiguous, start within (snapshotIndex, lastIndex+1] and do not touch committed entries.
    mutating func append(_ ents: [Entry]) {
        guard let first = ents.first else { return }
        precondition(first.index > committed && first.index > snapshotIndex && first.index <= lastIndex + 1,
                     "raft log: append at \(first.index) (committed \(committed), last \(lastIndex))")
        let keep = Int(first.index - snapshotIndex - 1)
        if keep < entries.count { entries.removeSubrange(keep...) }
        entries.append(contentsOf: ents)
        if stable >= first.index { stable = first.index - 1 }
    }

    mutating func commit(to i: UInt64) {
        guard i > committed else { return }
        precondition(i <= lastIndex, "raft log: commit \(i) beyond last \(lastIndex)")
        committed = i
    }

    /// Discards entries up to and including `i` (which must be applied).
    mutating func compact(to i: UInt64) {
        precondition(i > snapshotIndex && i <= applied && i <= lastIndex)
        let t = term(i)!
        entries.removeSubrange(0..<Int(i - snapshotIndex))
        snapshotIndex = i
        snapshotTerm = t
    }

    /// Replaces the whole log by a snapshot point.
    mutating func restore(index: UInt64, term t: UInt64) {
        entries = []
        snapshotIndex = index
        snapshotTerm = t
        committed = index
        stable = index
    }
}
