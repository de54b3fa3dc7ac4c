// The Raft state machine: deterministic, no I/O, driven by step/tick/propose.

struct PendingRead: Sendable {
    var seq: UInt64
    var index: UInt64
    var requester: NodeID
    var requestID: UInt64
}

struct IncomingSnapshot: Sendable {
    var metadata: SnapshotMetadata
    var totalSize: UInt64
    var received: UInt64 = 0
    /// The bytes so far (empty when the host stages them).
    var buffer: [UInt8] = []
}

/// One Raft node. Feed it with `step`, `tick`, `propose`…; drain it with `ready()` /
/// `advance(_:)`. Not thread-safe: one owner drives it.
public struct RaftNode: Sendable {
    public let config: RaftConfig
    public var id: NodeID { config.id }
    public private(set) var term: UInt64 = 0
    public private(set) var vote: NodeID?
    public private(set) var role: RaftRole = .follower
    /// The leader of the current term, if known.
    public private(set) var leader: NodeID?
    /// The latest committed configuration.
    public private(set) var conf: ConfState
    public private(set) var droppedMessages = 0

    var log: RaftLog
    /// Latest snapshot (index 0 when none).
    var snapshot: Snapshot
    var progress: [NodeID: Progress] = [:]
    var votes: [NodeID: Bool] = [:]
    var electionElapsed = 0
    var heartbeatElapsed = 0
    var randomizedElectionTimeout = 0
    var rng: SplitMix64
    var msgs: [RaftMessage] = []
    var readStates: [ReadState] = []
    var pendingBroadcast = false
    var pendingHeartbeat = false
    var persistedHardState: HardState
    var snapshotToInstall: Snapshot?
    var incoming: IncomingSnapshot?
    /// Received chunks for the host to stage (`stageIncomingSnapshots`), until the next `ready()`.
    var stagedChunks: [SnapshotChunk] = []
    /// Set while the current snapshot's bytes are with the host (staged, not yet handed back
    /// with `replaceSnapshotData`): their size. No snapshot is sent meanwhile.
    var stagedSnapshotSize: UInt64?
    var transferee: NodeID?
    var pendingConfIndex: UInt64 = 0
    var readSeq: UInt64 = 0
    var pendingReads: [PendingRead] = []
    var waitingReads: [(requester: NodeID, requestID: UInt64)] = []
    var snapshotStall: [NodeID: Int] = [:]

    /// Creates a node from what storage recovered. When storage is empty and
    /// `bootstrapVoters` is non-empty, the node writes the initial configuration as entry 1
    /// (term 1); every founding node must be given the same list. Joining nodes start empty.
    public init(config: RaftConfig, state: RaftInitialState = RaftInitialState(),
                bootstrapVoters: [NodeID] = []) throws(RaftError) {
        try config.validate()
        self.config = config
        let snap = state.snapshot ?? Snapshot(metadata: SnapshotMetadata(), data: [])
        let si = snap.metadata.index
        var prevTerm = snap.metadata.term
        for (i, e) in state.entries.enumerated() {
            guard e.index == si + 1 + UInt64(i) else { throw .corruptState("entry \(e.index) out of sequence") }
            guard e.term >= prevTerm else { throw .corruptState("entry \(e.index) has decreasing term") }
            if e.kind == .config, (try? ConfState.decode(e.data)) == nil {
                throw .corruptState("entry \(e.index) has an undecodable configuration")
            }
            prevTerm = e.term
        }
        let last = si + UInt64(state.entries.count)
        guard prevTerm <= state.hardState.term || state.entries.isEmpty && si == 0 else {
            throw .corruptState("log term \(prevTerm) above hard state term \(state.hardState.term)")
        }
        let applied = max(config.applied, si)
        guard applied <= last else { throw .corruptState("applied \(applied) beyond last index \(last)") }
        let commit = max(state.hardState.commit, applied)
        guard commit <= last else { throw .corruptState("commit \(commit) beyond last index \(last)") }
        log = RaftLog(snapshotIndex: si, snapshotTerm: snap.metadata.term, entries: state.entries,
                      committed: commit, applied: applied)
        snapshot = snap
        term = state.hardState.term
        vote = state.hardState.vote
        persistedHardState = state.hardState
        rng = SplitMix64(seed: config.randomSeed ^ 0x5241_4654)
        conf = snap.metadata.conf
        conf = confAt(commit)
        let empty = state.snapshot == nil && state.entries.isEmpty && state.hardState.term == 0
        if empty && !bootstrapVoters.isEmpty {
            let c = ConfState(voters: bootstrapVoters)
            term = 1
            log.append([Entry(term: 1, index: 1, kind: .config, data: c.encode())])
            log.commit(to: 1)
            conf = c
        }
        resetRandomizedTimeout()
    }

    // MARK: - Introspection

    public var hardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }
    public var commitIndex: UInt64 { log.committed }
    public var appliedIndex: UInt64 { log.applied }
    public var lastIndex: UInt64 { log.lastIndex }
    public var snapshotIndex: UInt64 { log.snapshotIndex }
    public var leadTransferee: NodeID? { transferee }
    /// Leader only: a configuration change (or the new leader's no-op) is not yet committed,
    /// so `proposeConfChange` would throw `configChangeInProgress`.
    public var hasPendingConfChange: Bool { role == .leader && pendingConfIndex > log.committed }

    public var status: RaftStatus {
        RaftStatus(id: id, role: role, term: term, leader: leader, commitIndex: log.committed,
                   appliedIndex: log.applied, lastIndex: log.lastIndex, snapshotIndex: log.snapshotIndex,
                   conf: conf, droppedMessages: droppedMessages,
                   peers: role != .leader ? [] : conf.members.compactMap { m in
                       progress[m].map { pr in
                           PeerStatus(id: m, isVoter: conf.isVoter(m), match: pr.match, next: pr.next,
                                      state: "\(pr.state)", recentActive: m == id || pr.recentActive)
                       }
                   })
    }

    /// Leader only: the highest index known replicated on `peer`.
    public func matchIndex(of peer: NodeID) -> UInt64? { role == .leader ? progress[peer]?.match : nil }

    /// The entry at `index` if still in the in-memory log (not compacted).
    public func entry(at index: UInt64) -> Entry? { log.entry(index) }

    // MARK: - Inputs

    /// Advances logical time by one tick.
    public mutating func tick() {
        if role == .leader {
            tickLeader()
        } else {
            electionElapsed += 1
            if conf.isVoter(id) && electionElapsed >= randomizedElectionTimeout {
                electionElapsed = 0
                campaign(config.preVote ? .pre : .election)
            }
        }
    }

    /// Proposes application data; returns the (index, term) it was appended at.
    @discardableResult
    public mutating func propose(data: [UInt8]) throws(RaftError) -> (index: UInt64, term: UInt64) {
        try checkCanPropose()
        guard data.count <= config.maxProposalBytes else { throw .proposalTooLarge(data.count) }
        appendEntry(.normal, data)
        return (log.lastIndex, term)
    }

    /// Proposes a single-server configuration change. Only one may be pending at a time, and
    /// not before the leader has committed an entry of its term.
    @discardableResult
    public mutating func proposeConfChange(_ change: ConfChange) throws(RaftError) -> (index: UInt64, term: UInt64) {
        try checkCanPropose()
        guard pendingConfIndex <= log.committed else { throw .configChangeInProgress }
        let next = try conf.applying(change)
        appendEntry(.config, next.encode())
        pendingConfIndex = log.lastIndex
        return (log.lastIndex, term)
    }

    /// Requests a linearizable read. The answer arrives as a `ReadState` with the same ID in a
    /// later `Ready` (on a follower, via the leader). A lost request yields no answer: callers
    /// time out and retry.
    public mutating func readIndex(requestID: UInt64) throws(RaftError) {
        if role == .leader {
            try leaderRead(requester: id, requestID: requestID)
        } else if let l = leader {
            send(RaftMessage(type: .readIndex, from: id, to: l, term: term, context: requestID))
        } else {
            throw .notLeader(leaderHint: nil)
        }
    }

    /// Asks the leader to hand leadership to `target` (a voter). Proposals are refused until
    /// it completes or an election timeout passes.
    public mutating func transferLeadership(to target: NodeID) throws(RaftError) {
        guard role == .leader else { throw .notLeader(leaderHint: leader) }
        if target == id { return }
        guard conf.isVoter(target), progress[target] != nil else { throw .invalidTransferTarget(target) }
        transferee = target
        electionElapsed = 0
        if progress[target]?.match == log.lastIndex {
            send(RaftMessage(type: .timeoutNow, from: id, to: target, term: term))
        } else {
            sendAppends(to: target)
        }
    }

    /// Records that the application has a snapshot of its state at `index` (<= applied) and
    /// drops the log up to it. The caller persists the returned metadata with `data` and
    /// compacts its stored log the same way.
    @discardableResult
    public mutating func compact(upTo index: UInt64, snapshotData: [UInt8]) throws(RaftError) -> SnapshotMetadata {
        try compact(upTo: index, snapshotData: SnapshotData(snapshotData))
    }

    @discardableResult
    public mutating func compact(upTo index: UInt64, snapshotData: SnapshotData) throws(RaftError) -> SnapshotMetadata {
        guard index > log.snapshotIndex else { throw .invalidCompaction("index \(index) already compacted") }
        guard index <= log.applied else { throw .invalidCompaction("index \(index) not applied yet") }
        guard let t = log.term(index) else { throw .invalidCompaction("no entry at \(index)") }
        let meta = SnapshotMetadata(index: index, term: t, conf: confAt(index))
        log.compact(to: index)
        snapshot = Snapshot(metadata: meta, data: snapshotData)
        stagedSnapshotSize = nil
        return meta
    }

    /// The host now holds the current snapshot's bytes in another form (e.g. mapped from the
    /// file it stored them in) and offers them so the heap copy can go. Ignored (false) unless
    /// `index` is the current snapshot's and the size matches.
    @discardableResult
    public mutating func replaceSnapshotData(index: UInt64, with data: SnapshotData) -> Bool {
        let size = stagedSnapshotSize ?? UInt64(snapshot.data.count)
        guard snapshot.metadata.index == index, index > 0, size == UInt64(data.count) else { return false }
        snapshot.data = data
        stagedSnapshotSize = nil
        return true
    }

    /// Whether this node's log holds an entry at `index` of `term` (or `index` is its snapshot
    /// point): what an append with that previous entry needs to be accepted.
    public func logMatches(index: UInt64, term: UInt64) -> Bool { log.matchTerm(index, term) }

    /// Whether the current snapshot's bytes are still with the host (see `stageIncomingSnapshots`).
    public var snapshotDataPending: Bool { stagedSnapshotSize != nil }

    /// Feeds one message from a peer. Stale, malformed or unexpected messages are ignored.
    public mutating func step(_ m: RaftMessage) {
        guard m.to == id, m.from != id, !m.from.isEmpty, Self.isSane(m) else { droppedMessages += 1; return }
        if m.term > term {
            let isVoteRequest = m.type == .preVote || m.type == .vote
            if isVoteRequest {
                let inLease = config.checkQuorum && leader != nil && electionElapsed < config.electionTick
                if inLease && m.context != 1 { return }
            }
            switch m.type {
            case .preVote:
                break
            case .preVoteResponse where !m.reject:
                break
            case .append, .heartbeat, .snapshot:
                becomeFollower(m.term, leader: m.from)
            default:
                becomeFollower(m.term, leader: nil)
            }
        } else if m.term < term {
            if (config.checkQuorum || config.preVote) && (m.type == .append || m.type == .heartbeat || m.type == .snapshot) {
                // Tell a stale leader about the newer term so it steps down.
                send(RaftMessage(type: .appendResponse, from: id, to: m.from, term: term))
            } else if m.type == .preVote {
                send(RaftMessage(type: .preVoteResponse, from: id, to: m.from, term: term, reject: true))
            }
            return
        }

        switch m.type {
        case .preVote, .vote:
            handleVoteRequest(m)
        case .append, .heartbeat, .snapshot:
            if role == .leader { droppedMessages += 1; return }
            if role != .follower { becomeFollower(term, leader: m.from) }
            leader = m.from
            electionElapsed = 0
            switch m.type {
            case .append: handleAppend(m)
            case .heartbeat: handleHeartbeat(m)
            default: handleSnapshotChunk(m)
            }
        case .timeoutNow:
            if role == .follower && conf.isVoter(id) { campaign(.transfer) } else { droppedMessages += 1 }
        case .appendResponse, .heartbeatResponse, .snapshotResponse:
            guard role == .leader, progress[m.from] != nil else { droppedMessages += 1; return }
            switch m.type {
            case .appendResponse: handleAppendResponse(m)
            case .heartbeatResponse: handleHeartbeatResponse(m)
            default: handleSnapshotResponse(m)
            }
        case .preVoteResponse, .voteResponse:
            let expected: RaftRole = m.type == .preVoteResponse ? .preCandidate : .candidate
            guard role == expected else { return }
            handleVoteResponse(m)
        case .readIndex:
            guard role == .leader else { droppedMessages += 1; return }
            try? leaderRead(requester: m.from, requestID: m.context)
        case .readIndexResponse:
            guard m.from == leader else { droppedMessages += 1; return }
            readStates.append(ReadState(requestID: m.context, index: m.index))
        }
    }

    /// Values beyond 2^62 cannot come from an honest peer; rejecting them keeps all index
    /// arithmetic far from overflow.
    static let maxSaneValue: UInt64 = 1 << 62

    static func isSane(_ m: RaftMessage) -> Bool {
        let lim = maxSaneValue
        guard m.term < lim, m.logTerm < lim, m.index < lim, m.commit < lim, m.rejectHint < lim else { return false }
        guard UInt64(m.entries.count) < lim - m.index else { return false }
        for e in m.entries where e.term >= lim || e.index >= lim { return false }
        if let c = m.snapshot {
            guard c.metadata.index < lim, c.metadata.term < lim, c.offset < lim, c.totalSize < lim else { return false }
        }
        return true
    }

    // MARK: - Ready

    /// Whether `ready()` would return anything.
    public var hasReady: Bool {
        if role == .leader && (pendingBroadcast || pendingHeartbeat) { return true }
        if !msgs.isEmpty || !readStates.isEmpty || snapshotToInstall != nil || !stagedChunks.isEmpty { return true }
        if hardState != persistedHardState || log.stable < log.lastIndex { return true }
        return log.committed > max(log.applied, log.snapshotIndex)
    }

    /// Collects pending work. Call `advance(_:)` with the result before the next `ready()`.
    public mutating func ready() -> Ready {
        if role == .leader {
            if pendingBroadcast { bcastAppend() }
            if pendingHeartbeat { bcastHeartbeat() }
        }
        pendingBroadcast = false
        pendingHeartbeat = false
        var rd = Ready()
        let hs = hardState
        if hs != persistedHardState { rd.hardState = hs }
        rd.entries = log.unstableEntries
        rd.snapshot = snapshotToInstall
        rd.snapshotChunks = stagedChunks
        stagedChunks = []
        rd.messages = msgs
        msgs = []
        rd.readStates = readStates
        readStates = []
        let from = max(log.applied, log.snapshotIndex) + 1
        if log.committed >= from {
            let to = min(log.committed, from + UInt64(config.maxApplyEntries) - 1)
            rd.committedEntries = log.slice(from: from, to: to, maxCount: config.maxApplyEntries, maxBytes: Int.max)
        }
        return rd
    }

    /// Marks a `Ready` as done: persisted, sent and applied.
    public mutating func advance(_ rd: Ready) {
        if let hs = rd.hardState { persistedHardState = hs }
        if let s = rd.snapshot {
            if snapshotToInstall == s { snapshotToInstall = nil }
            log.applied = max(log.applied, s.metadata.index)
        }
        if let last = rd.entries.last, last.index > log.stable, log.term(last.index) == last.term {
            log.stable = last.index
        }
        if let last = rd.committedEntries.last, last.index > log.applied {
            log.applied = last.index
        }
        if role == .leader, var pr = progress[id] {
            if pr.maybeUpdate(log.stable) {
                progress[id] = pr
                if maybeCommit() { bcastCommitted() }
            }
        }
    }

    // MARK: - Roles

    enum CampaignKind { case pre, election, transfer }

    mutating func resetRandomizedTimeout() {
        randomizedElectionTimeout = config.electionTick + rng.next(below: config.electionTick)
    }

    mutating func reset(_ newTerm: UInt64) {
        if newTerm != term {
            term = newTerm
            vote = nil
        }
        leader = nil
        electionElapsed = 0
        heartbeatElapsed = 0
        resetRandomizedTimeout()
        votes = [:]
        transferee = nil
        pendingReads = []
        waitingReads = []
        progress = [:]
        snapshotStall = [:]
        pendingBroadcast = false
        pendingHeartbeat = false
    }

    mutating func becomeFollower(_ t: UInt64, leader l: NodeID?) {
        reset(t)
        role = .follower
        leader = l
    }

    mutating func becomeLeader() {
        precondition(role == .candidate, "only a candidate can become leader")
        reset(term)
        role = .leader
        leader = id
        for m in conf.members {
            progress[m] = Progress(next: log.lastIndex + 1, maxInflight: config.maxInflightAppends)
        }
        if var me = progress[id] {
            _ = me.maybeUpdate(log.stable)
            me.becomeReplicate()
            progress[id] = me
        }
        appendEntry(.noop, [])
        pendingConfIndex = log.lastIndex
    }

    mutating func campaign(_ kind: CampaignKind) {
        guard conf.isVoter(id) else { return }
        let voteTerm: UInt64
        if kind == .pre {
            reset(term)
            role = .preCandidate
            voteTerm = term + 1
        } else {
            reset(term + 1)
            role = .candidate
            vote = id
            voteTerm = term
        }
        votes = [id: true]
        if Quorum.voteResult(voters: conf.voters, votes: votes) == .won {
            if kind == .pre { campaign(.election) } else { becomeLeader() }
            return
        }
        let type: MessageType = kind == .pre ? .preVote : .vote
        for v in conf.voters where v != id {
            send(RaftMessage(type: type, from: id, to: v, term: voteTerm, logTerm: log.lastTerm,
                             index: log.lastIndex, context: kind == .transfer ? 1 : 0))
        }
    }

    mutating func handleVoteRequest(_ m: RaftMessage) {
        let respType: MessageType = m.type == .preVote ? .preVoteResponse : .voteResponse
        let canVote = vote == m.from || (vote == nil && leader == nil) || (m.type == .preVote && m.term > term)
        if canVote && log.isUpToDate(lastIndex: m.index, lastTerm: m.logTerm) {
            send(RaftMessage(type: respType, from: id, to: m.from, term: m.term))
            if m.type == .vote {
                electionElapsed = 0
                vote = m.from
            }
        } else {
            send(RaftMessage(type: respType, from: id, to: m.from, term: term, reject: true))
        }
    }

    mutating func handleVoteResponse(_ m: RaftMessage) {
        if votes[m.from] == nil { votes[m.from] = !m.reject }
        switch Quorum.voteResult(voters: conf.voters, votes: votes) {
        case .won:
            if role == .preCandidate { campaign(.election) } else { becomeLeader() }
        case .lost:
            becomeFollower(term, leader: nil)
        case .pending:
            break
        }
    }

    // MARK: - Follower side

    mutating func handleAppend(_ m: RaftMessage) {
        if m.index < log.committed {
            send(RaftMessage(type: .appendResponse, from: id, to: m.from, term: term, index: log.committed))
            return
        }
        guard log.matchTerm(m.index, m.logTerm) else {
            let hint = log.findConflictByTerm(min(m.index, log.lastIndex), m.logTerm)
            send(RaftMessage(type: .appendResponse, from: id, to: m.from, term: term,
                             logTerm: log.term(hint) ?? 0, index: m.index, reject: true, rejectHint: hint))
            return
        }
        // Validate what the leader sent before touching the log (m.index <= lastIndex here).
        var prevT = m.logTerm
        for (i, e) in m.entries.enumerated() {
            guard e.index == m.index + 1 + UInt64(i), e.term >= prevT, e.term <= m.term else {
                droppedMessages += 1
                return
            }
            if e.kind == .config, (try? ConfState.decode(e.data)) == nil {
                droppedMessages += 1
                return
            }
            prevT = e.term
        }
        let lastNew = m.index + UInt64(m.entries.count)
        let conflict = log.findConflict(m.entries)
        if conflict != 0 {
            guard conflict > log.committed else { droppedMessages += 1; return }
            log.append(Array(m.entries[Int(conflict - m.index - 1)...]))
        }
        commitTo(min(m.commit, lastNew))
        send(RaftMessage(type: .appendResponse, from: id, to: m.from, term: term, index: lastNew))
    }

    mutating func handleHeartbeat(_ m: RaftMessage) {
        commitTo(min(m.commit, log.lastIndex))
        send(RaftMessage(type: .heartbeatResponse, from: id, to: m.from, term: term, context: m.context))
    }

    mutating func handleSnapshotChunk(_ m: RaftMessage) {
        guard let c = m.snapshot else { droppedMessages += 1; return }
        let meta = c.metadata
        if meta.index <= log.committed {
            incoming = nil
            send(RaftMessage(type: .appendResponse, from: id, to: m.from, term: term, index: log.committed))
            return
        }
        guard c.totalSize <= config.maxSnapshotBytes, !meta.conf.voters.isEmpty else {
            droppedMessages += 1
            send(RaftMessage(type: .snapshotResponse, from: id, to: m.from, term: term, index: meta.index, reject: true))
            return
        }
        guard c.offset <= c.totalSize, UInt64(c.data.count) <= c.totalSize - c.offset else {
            droppedMessages += 1
            return
        }
        if c.offset == 0 {
            incoming = IncomingSnapshot(metadata: meta, totalSize: c.totalSize)
        }
        guard var inc = incoming, inc.metadata == meta, inc.totalSize == c.totalSize, c.offset == inc.received else {
            let have = (incoming?.metadata == meta) ? incoming?.received ?? 0 : 0
            send(RaftMessage(type: .snapshotResponse, from: id, to: m.from, term: term, index: meta.index, context: have))
            return
        }
        if config.stageIncomingSnapshots {
            stagedChunks.append(c)
        } else {
            inc.buffer.append(contentsOf: c.data)
        }
        inc.received += UInt64(c.data.count)
        if inc.received == inc.totalSize {
            incoming = nil
            if config.stageIncomingSnapshots {
                restore(Snapshot(metadata: meta, data: SnapshotData([])), stagedSize: inc.totalSize)
            } else {
                restore(Snapshot(metadata: meta, data: inc.buffer))
            }
            send(RaftMessage(type: .appendResponse, from: id, to: m.from, term: term, index: meta.index))
        } else {
            incoming = inc
            send(RaftMessage(type: .snapshotResponse, from: id, to: m.from, term: term, index: meta.index,
                             context: inc.received))
        }
    }

    mutating func restore(_ s: Snapshot, stagedSize: UInt64? = nil) {
        let meta = s.metadata
        if log.matchTerm(meta.index, meta.term) {
            // Our log already holds this prefix: just commit it.
            commitTo(meta.index)
            return
        }
        log.restore(index: meta.index, term: meta.term)
        conf = meta.conf
        snapshot = s
        stagedSnapshotSize = stagedSize
        snapshotToInstall = s
    }

    // MARK: - Leader side

    mutating func checkCanPropose() throws(RaftError) {
        guard role == .leader else { throw .notLeader(leaderHint: leader) }
        guard transferee == nil else { throw .leadershipTransferInProgress }
        guard log.lastIndex - log.committed < UInt64(config.maxUncommittedEntries) else {
            throw .tooManyUncommittedEntries
        }
    }

    mutating func appendEntry(_ kind: EntryKind, _ data: [UInt8]) {
        log.append([Entry(term: term, index: log.lastIndex + 1, kind: kind, data: data)])
        pendingBroadcast = true
    }

    mutating func tickLeader() {
        electionElapsed += 1
        heartbeatElapsed += 1
        defer { flushCommit() }    // after a heartbeat, which carries the commit index too
        if electionElapsed >= config.electionTick {
            electionElapsed = 0
            if config.checkQuorum {
                var active = 0
                for v in conf.voters where v == id || progress[v]?.recentActive == true { active += 1 }
                if active < Quorum.size(conf.voters.count) {
                    becomeFollower(term, leader: nil)
                    return
                }
            }
            for m in conf.members { progress[m]?.recentActive = false }
            transferee = nil
        }
        if heartbeatElapsed >= config.heartbeatTick {
            heartbeatElapsed = 0
            bcastHeartbeat()
            for m in conf.members where m != id {
                guard var pr = progress[m], pr.state == .snapshot else { continue }
                let stall = (snapshotStall[m] ?? 0) + 1
                if stall >= 3 || !pr.snapshotChunkOut {
                    snapshotStall[m] = 0
                    sendSnapshotChunk(to: m, &pr)
                    progress[m] = pr
                } else {
                    snapshotStall[m] = stall
                }
            }
        }
    }

    mutating func send(_ m: RaftMessage) {
        guard m.to != id else { return }
        msgs.append(m)
    }

    /// Sends one append (or starts a snapshot) if the follower is not paused.
    @discardableResult
    mutating func sendAppend(to peer: NodeID, sendIfEmpty: Bool) -> Bool {
        guard peer != id, var pr = progress[peer], !pr.isPaused else { return false }
        let prevIndex = pr.next - 1
        guard let prevTerm = log.term(prevIndex) else {
            guard snapshot.metadata.index > 0, stagedSnapshotSize == nil else { return false }
            pr.becomeSnapshot(snapshot.metadata.index)
            sendSnapshotChunk(to: peer, &pr)
            progress[peer] = pr
            return true
        }
        let ents = log.slice(from: pr.next, to: log.lastIndex, maxCount: config.maxEntriesPerAppend,
                             maxBytes: config.maxBytesPerAppend)
        if ents.isEmpty && !sendIfEmpty { return false }
        send(RaftMessage(type: .append, from: id, to: peer, term: term, logTerm: prevTerm, index: prevIndex,
                         commit: log.committed, entries: ents))
        pr.sentEntries(last: ents.last?.index ?? prevIndex, count: ents.count)
        pr.sentCommit = max(pr.sentCommit, log.committed)
        progress[peer] = pr
        return true
    }

    /// One append (even empty, to carry the commit index) then as many more as the window allows.
    mutating func sendAppends(to peer: NodeID) {
        guard sendAppend(to: peer, sendIfEmpty: true) else { return }
        while progress[peer]?.state == .replicate && sendAppend(to: peer, sendIfEmpty: false) {}
    }

    mutating func sendSnapshotChunk(to peer: NodeID, _ pr: inout Progress) {
        guard stagedSnapshotSize == nil else { return }    // its bytes are not back from the host yet
        let data = snapshot.data
        let off = Int(min(pr.snapshotOffset, UInt64(data.count)))
        let end = min(data.count, off + max(1, config.snapshotChunkBytes))
        let chunk = SnapshotChunk(metadata: snapshot.metadata, offset: UInt64(off), totalSize: UInt64(data.count),
                                  data: data.bytes(off..<end))
        send(RaftMessage(type: .snapshot, from: id, to: peer, term: term, snapshot: chunk))
        pr.snapshotChunkOut = true
    }

    mutating func bcastAppend() {
        guard role == .leader else { return }
        for m in conf.members where m != id { sendAppends(to: m) }
    }

    mutating func bcastHeartbeat() {
        guard role == .leader else { return }
        for m in conf.members where m != id {
            guard var pr = progress[m] else { continue }
            let commit = min(pr.match, log.committed)
            send(RaftMessage(type: .heartbeat, from: id, to: m, term: term, commit: commit, context: readSeq))
            pr.sentCommit = max(pr.sentCommit, commit)
            progress[m] = pr
        }
    }

    /// After the commit index advanced: appends go only to followers that have entries to
    /// take (they carry the new commit index). A follower that already holds everything learns
    /// the commit index later — from the next append, from `flushCommit()` (which the host calls
    /// a few milliseconds later) or at the latest from the next tick. Telling it at once, as
    /// etcd does, costs an empty append and its answer per follower per commit, and on a small
    /// machine those wake-ups land exactly while the leader answers its client.
    mutating func bcastCommitted() {
        guard role == .leader else { return }
        for m in conf.members where m != id {
            while sendAppend(to: m, sendIfEmpty: false) {}
        }
    }

    /// Whether some follower holds entries up to an index that was committed since its last
    /// message (`flushCommit` would send it an empty append).
    public var commitFlushDue: Bool {
        guard role == .leader else { return false }
        for m in conf.members where m != id {
            if let pr = progress[m], needsCommit(pr) { return true }
        }
        return false
    }

    func needsCommit(_ pr: Progress) -> Bool {
        pr.state != .snapshot && !pr.isPaused && pr.sentCommit < min(log.committed, pr.match)
    }

    /// Tells followers the commit index where nothing else has (an empty append each).
    public mutating func flushCommit() {
        guard role == .leader else { return }
        for m in conf.members where m != id {
            if let pr = progress[m], needsCommit(pr) { sendAppend(to: m, sendIfEmpty: true) }
        }
    }

    mutating func handleAppendResponse(_ m: RaftMessage) {
        guard var pr = progress[m.from] else { return }
        pr.recentActive = true
        if m.reject {
            var nextProbe = min(m.rejectHint, log.lastIndex)
            if m.logTerm > 0 { nextProbe = log.findConflictByTerm(nextProbe, m.logTerm) }
            if pr.maybeDecrTo(rejected: m.index, matchHint: nextProbe) {
                if pr.state == .replicate { pr.becomeProbe() }
                progress[m.from] = pr
                sendAppend(to: m.from, sendIfEmpty: true)
            } else {
                progress[m.from] = pr
            }
            return
        }
        guard m.index <= log.lastIndex else { progress[m.from] = pr; droppedMessages += 1; return }
        if pr.maybeUpdate(m.index) {
            switch pr.state {
            case .probe:
                pr.becomeReplicate()
            case .snapshot:
                if pr.match >= pr.pendingSnapshot { pr.becomeReplicate() }
            case .replicate:
                pr.inflights.free(upTo: m.index)
            }
            progress[m.from] = pr
            if maybeCommit() {
                bcastCommitted()
            } else {
                while sendAppend(to: m.from, sendIfEmpty: false) {}
            }
            if m.from == transferee && progress[m.from]?.match == log.lastIndex {
                send(RaftMessage(type: .timeoutNow, from: id, to: m.from, term: term))
            }
        } else {
            progress[m.from] = pr
        }
    }

    mutating func handleHeartbeatResponse(_ m: RaftMessage) {
        guard var pr = progress[m.from] else { return }
        pr.recentActive = true
        pr.probeSent = false
        if pr.state == .replicate && pr.inflights.isFull {
            if let first = pr.inflights.items.first { pr.inflights.free(upTo: first) }
        }
        if m.context > pr.readAck { pr.readAck = min(m.context, readSeq) }
        progress[m.from] = pr
        if pr.match < log.lastIndex { sendAppend(to: m.from, sendIfEmpty: true) }
        processReads()
    }

    mutating func handleSnapshotResponse(_ m: RaftMessage) {
        guard var pr = progress[m.from] else { return }
        pr.recentActive = true
        defer { progress[m.from] = pr }
        guard pr.state == .snapshot else { return }
        if pr.pendingSnapshot != snapshot.metadata.index {
            // We compacted again since the transfer started: send the newer snapshot.
            pr.becomeSnapshot(snapshot.metadata.index)
            sendSnapshotChunk(to: m.from, &pr)
            return
        }
        guard m.index == pr.pendingSnapshot else { return }
        if m.reject {
            pr.becomeProbe()
            return
        }
        guard m.context <= UInt64(snapshot.data.count) else { droppedMessages += 1; return }
        if m.context == pr.snapshotOffset && pr.snapshotChunkOut { return }
        pr.snapshotOffset = m.context
        snapshotStall[m.from] = 0
        sendSnapshotChunk(to: m.from, &pr)
    }

    /// Commits the highest index a quorum has persisted, if it belongs to the current term.
    mutating func maybeCommit() -> Bool {
        guard role == .leader else { return false }
        let q = Quorum.committed(conf.voters.map { progress[$0]?.match ?? 0 })
        guard q > log.committed, log.term(q) == term else { return false }
        commitTo(q)
        return true
    }

    /// Advances the commit index and lets committed configuration entries take effect.
    mutating func commitTo(_ i: UInt64) {
        guard i > log.committed else { return }
        let old = log.committed
        log.commit(to: i)
        var idx = old + 1
        while idx <= i {
            if let e = log.entry(idx), e.kind == .config {
                if let c = try? ConfState.decode(e.data) { applyConf(c) } else { droppedMessages += 1 }
            }
            idx += 1
        }
        if role == .leader && !waitingReads.isEmpty && log.term(log.committed) == term {
            let w = waitingReads
            waitingReads = []
            for r in w { registerRead(requester: r.requester, requestID: r.requestID) }
        }
    }

    mutating func applyConf(_ c: ConfState) {
        conf = c
        guard role == .leader else { return }
        for m in conf.members where progress[m] == nil {
            progress[m] = Progress(next: log.lastIndex + 1, maxInflight: config.maxInflightAppends)
        }
        for k in progress.keys.sorted() where !conf.isMember(k) { progress[k] = nil }
        if !conf.isVoter(id) {
            // We were removed: stop leading. The others elect a leader among themselves.
            bcastAppend()
            becomeFollower(term, leader: nil)
            return
        }
        if let t = transferee, !conf.isVoter(t) { transferee = nil }
        pendingBroadcast = true
        if maybeCommit() { pendingBroadcast = true }
        processReads()
    }

    /// The configuration in effect at `index` (which must be >= the snapshot index).
    func confAt(_ index: UInt64) -> ConfState {
        var c = snapshot.metadata.conf
        var i = log.snapshotIndex + 1
        while i <= index {
            if let e = log.entry(i), e.kind == .config, let d = try? ConfState.decode(e.data) { c = d }
            i += 1
        }
        return c
    }

    // MARK: - Reads

    mutating func leaderRead(requester: NodeID, requestID: UInt64) throws(RaftError) {
        guard pendingReads.count + waitingReads.count < config.maxPendingReads else { throw .tooManyPendingReads }
        if log.term(log.committed) != term {
            waitingReads.append((requester, requestID))
            return
        }
        registerRead(requester: requester, requestID: requestID)
    }

    mutating func registerRead(requester: NodeID, requestID: UInt64) {
        if conf.voters == [id] {
            deliverRead(requester: requester, requestID: requestID, index: log.committed)
            return
        }
        readSeq += 1
        pendingReads.append(PendingRead(seq: readSeq, index: log.committed, requester: requester, requestID: requestID))
        pendingHeartbeat = true
    }

    mutating func processReads() {
        guard role == .leader, !pendingReads.isEmpty else { return }
        let acked = Quorum.committed(conf.voters.map { $0 == id ? readSeq : (progress[$0]?.readAck ?? 0) })
        var n = 0
        while n < pendingReads.count && pendingReads[n].seq <= acked {
            let r = pendingReads[n]
            deliverRead(requester: r.requester, requestID: r.requestID, index: r.index)
            n += 1
        }
        if n > 0 { pendingReads.removeFirst(n) }
    }

    mutating func deliverRead(requester: NodeID, requestID: UInt64, index: UInt64) {
        if requester == id {
            readStates.append(ReadState(requestID: requestID, index: index))
        } else {
            send(RaftMessage(type: .readIndexResponse, from: id, to: requester, term: term, index: index, context: requestID))
        }
    }
}
