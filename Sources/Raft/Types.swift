// Value types shared by the Raft core, its codec and its callers.

/// A Raft node identifier (a libp2p peer ID string in p2pos).
public typealias NodeID = String

/// What a log entry carries.
public enum EntryKind: UInt8, Sendable, Equatable {
    /// Application data proposed with `propose(data:)`.
    case normal = 0
    /// A new cluster configuration (encoded `ConfState`).
    case config = 1
    /// The empty entry a new leader appends to commit entries of earlier terms.
    case noop = 2
}

/// One replicated log entry.
public struct Entry: Equatable, Sendable {
    public var term: UInt64
    public var index: UInt64
    public var kind: EntryKind
    public var data: [UInt8]

    public init(term: UInt64, index: UInt64, kind: EntryKind = .normal, data: [UInt8] = []) {
        self.term = term
        self.index = index
        self.kind = kind
        self.data = data
    }

    /// Approximate size used for batching limits.
    var byteSize: Int { data.count + 24 }
}

/// The state that must be on stable storage before any message depending on it is sent.
public struct HardState: Equatable, Sendable {
    public var term: UInt64
    public var vote: NodeID?
    public var commit: UInt64

    public init(term: UInt64 = 0, vote: NodeID? = nil, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

/// A cluster configuration: who votes and who only receives the log. Lists are sorted and
/// disjoint, so iteration order is deterministic.
public struct ConfState: Equatable, Sendable {
    public private(set) var voters: [NodeID]
    public private(set) var learners: [NodeID]

    public init(voters: [NodeID] = [], learners: [NodeID] = []) {
        let v = Array(Set(voters)).sorted()
        let vs = Set(v)
        self.voters = v
        self.learners = Array(Set(learners).subtracting(vs)).sorted()
    }

    /// Voters followed by learners.
    public var members: [NodeID] { voters + learners }
    public func isVoter(_ id: NodeID) -> Bool { voters.contains(id) }
    public func isLearner(_ id: NodeID) -> Bool { learners.contains(id) }
    public func isMember(_ id: NodeID) -> Bool { isVoter(id) || isLearner(id) }

    /// The configuration after `change`, or an error when the change does not apply.
    public func applying(_ change: ConfChange) throws(RaftError) -> ConfState {
        switch change {
        case .addVoter(let id):
            guard !id.isEmpty, !isVoter(id) else { throw .invalidConfigChange("\(id) is already a voter") }
            return ConfState(voters: voters + [id], learners: learners.filter { $0 != id })
        case .addLearner(let id):
            guard !id.isEmpty, !isMember(id) else { throw .invalidConfigChange("\(id) is already a member") }
            return ConfState(voters: voters, learners: learners + [id])
        case .promoteLearner(let id):
            guard isLearner(id) else { throw .invalidConfigChange("\(id) is not a learner") }
            return ConfState(voters: voters + [id], learners: learners.filter { $0 != id })
        case .removeNode(let id):
            guard isMember(id) else { throw .invalidConfigChange("\(id) is not a member") }
            if isVoter(id) && voters.count == 1 {
                throw .invalidConfigChange("cannot remove the last voter")
            }
            return ConfState(voters: voters.filter { $0 != id }, learners: learners.filter { $0 != id })
        }
    }
}

/// A single-server configuration change.
public enum ConfChange: Equatable, Sendable {
    case addVoter(NodeID)
    case addLearner(NodeID)
    case promoteLearner(NodeID)
    /// Removes a voter or a learner.
    case removeNode(NodeID)
}

/// Where a snapshot sits in the log and the configuration at that point.
public struct SnapshotMetadata: Equatable, Sendable {
    public var index: UInt64
    public var term: UInt64
    public var conf: ConfState

    public init(index: UInt64 = 0, term: UInt64 = 0, conf: ConfState = ConfState()) {
        self.index = index
        self.term = term
        self.conf = conf
    }
}

/// A state-machine snapshot: metadata plus the application's opaque bytes.
public struct Snapshot: Equatable, Sendable {
    public var metadata: SnapshotMetadata
    public var data: SnapshotData

    public init(metadata: SnapshotMetadata, data: SnapshotData) {
        self.metadata = metadata
        self.data = data
    }

    public init(metadata: SnapshotMetadata, data: [UInt8]) {
        self.init(metadata: metadata, data: SnapshotData(data))
    }
}

/// A snapshot's bytes, immutable: either an array on the heap or a read-only region the host
/// mapped from a file (so a node does not keep its whole state in memory to serve
/// InstallSnapshot; the kernel pages it in and out). The core only reads it.
public struct SnapshotData: Equatable, Sendable, ExpressibleByArrayLiteral {
    /// Owns a mapped region and releases it (e.g. `munmap`) when the last copy goes.
    final class Region: @unchecked Sendable {
        let base: UnsafeRawPointer
        let count: Int
        let release: @Sendable () -> Void
        init(base: UnsafeRawPointer, count: Int, release: @escaping @Sendable () -> Void) {
            self.base = base
            self.count = count
            self.release = release
        }
        deinit { release() }
    }

    private let heap: [UInt8]
    private let region: Region?

    public init(_ bytes: [UInt8]) {
        heap = bytes
        region = nil
    }

    public init(arrayLiteral elements: UInt8...) { self.init(elements) }

    /// `count` readable bytes at `base`, valid until `release` is called (once, when no copy of
    /// this value is left). The bytes must not change while mapped.
    public init(mapping base: UnsafeRawPointer, count: Int, release: @escaping @Sendable () -> Void) {
        heap = []
        region = Region(base: base, count: count, release: release)
    }

    /// Whether the bytes live in a mapped region rather than on the heap.
    public var isMapped: Bool { region != nil }

    public var count: Int { region?.count ?? heap.count }
    public var isEmpty: Bool { count == 0 }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let region { return try body(UnsafeRawBufferPointer(start: region.base, count: region.count)) }
        return try heap.withUnsafeBytes(body)
    }

    /// A copy of the bytes in `range` (clamped to the data).
    public func bytes(_ range: Range<Int>) -> [UInt8] {
        let lo = max(0, min(range.lowerBound, count)), hi = max(lo, min(range.upperBound, count))
        if region == nil { return Array(heap[lo..<hi]) }
        return withUnsafeBytes { Array($0[lo..<hi]) }
    }

    /// All the bytes as an array (a copy when mapped).
    public var array: [UInt8] { region == nil ? heap : bytes(0..<count) }

    public static func == (a: SnapshotData, b: SnapshotData) -> Bool {
        if a.region == nil && b.region == nil { return a.heap == b.heap }
        if let ra = a.region, let rb = b.region, ra === rb { return true }
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in pa.elementsEqual(pb) } }
    }
}

/// A confirmed linearizable read: serve `requestID` once the state machine has applied `index`.
public struct ReadState: Equatable, Sendable {
    public var requestID: UInt64
    public var index: UInt64

    public init(requestID: UInt64, index: UInt64) {
        self.requestID = requestID
        self.index = index
    }
}

/// The role a node currently plays.
public enum RaftRole: String, Sendable, Equatable {
    case follower, preCandidate, candidate, leader
}

/// Errors returned to local callers of the core (never caused by peers' messages).
public enum RaftError: Error, Equatable, Sendable, CustomStringConvertible {
    /// This node is not the leader; `leaderHint` is the leader it knows of, if any.
    case notLeader(leaderHint: NodeID?)
    case leadershipTransferInProgress
    case configChangeInProgress
    case invalidConfigChange(String)
    case invalidTransferTarget(NodeID)
    case proposalTooLarge(Int)
    case tooManyUncommittedEntries
    case tooManyPendingReads
    case invalidCompaction(String)
    case corruptState(String)
    case invalidConfig(String)

    public var description: String {
        switch self {
        case .notLeader(let h): return "NOT_LEADER leader=\(h ?? "unknown")"
        case .leadershipTransferInProgress: return "leadership transfer in progress"
        case .configChangeInProgress: return "a configuration change is still pending"
        case .invalidConfigChange(let s): return "invalid configuration change: \(s)"
        case .invalidTransferTarget(let id): return "cannot transfer leadership to \(id)"
        case .proposalTooLarge(let n): return "proposal of \(n) bytes is too large"
        case .tooManyUncommittedEntries: return "too many uncommitted entries"
        case .tooManyPendingReads: return "too many pending reads"
        case .invalidCompaction(let s): return "invalid compaction: \(s)"
        case .corruptState(let s): return "corrupt persisted raft state: \(s)"
        case .invalidConfig(let s): return "invalid raft configuration: \(s)"
        }
    }
}

/// Tunables of one node. Ticks are abstract: the driver decides how long one tick is.
public struct RaftConfig: Sendable {
    public var id: NodeID
    /// Followers campaign after a random timeout in [electionTick, 2*electionTick).
    public var electionTick: Int = 10
    /// Leader heartbeat interval in ticks.
    public var heartbeatTick: Int = 1
    public var preVote: Bool = true
    public var checkQuorum: Bool = true
    /// Appends in flight per follower in the replicate state.
    public var maxInflightAppends: Int = 64
    public var maxEntriesPerAppend: Int = 256
    public var maxBytesPerAppend: Int = 1 << 20
    /// Committed entries handed out per Ready.
    public var maxApplyEntries: Int = 1024
    public var maxProposalBytes: Int = 1 << 20
    /// Leader refuses proposals beyond this many entries not yet committed.
    public var maxUncommittedEntries: Int = 10_000
    public var maxPendingReads: Int = 4096
    public var snapshotChunkBytes: Int = 256 << 10
    /// Largest snapshot a follower accepts.
    public var maxSnapshotBytes: UInt64 = 1 << 30
    /// A follower hands the chunks of a snapshot it receives to the host (`Ready.snapshotChunks`)
    /// instead of collecting them in memory; the host stages them (e.g. in a file) and, once the
    /// snapshot arrives in `Ready.snapshot` (with empty `data`), gives the bytes back with
    /// `replaceSnapshotData(index:with:)`. Nothing is served from that snapshot until then.
    public var stageIncomingSnapshots: Bool = false
    /// Seed of the PRNG for election timeouts (the only randomness in the core).
    public var randomSeed: UInt64 = 0
    /// Highest index the state machine already holds durably (0: apply from the snapshot on).
    public var applied: UInt64 = 0

    public init(id: NodeID, randomSeed: UInt64 = 0) {
        self.id = id
        self.randomSeed = randomSeed
    }

    /// Throws `invalidConfig` naming the first bad field.
    public func validate() throws(RaftError) {
        guard !id.isEmpty, id.utf8.count <= RaftMessage.maxNodeIDBytes else { throw .invalidConfig("id must be 1...256 bytes") }
        guard heartbeatTick > 0 else { throw .invalidConfig("heartbeatTick must be > 0") }
        guard electionTick > heartbeatTick else { throw .invalidConfig("electionTick must be > heartbeatTick") }
        guard electionTick <= 1_000_000 else { throw .invalidConfig("electionTick too large") }
        guard maxInflightAppends > 0, maxEntriesPerAppend > 0, maxBytesPerAppend > 0, maxApplyEntries > 0,
              maxProposalBytes > 0, maxUncommittedEntries > 0, maxPendingReads > 0, snapshotChunkBytes > 0 else {
            throw .invalidConfig("limits must be > 0")
        }
    }
}

/// What a node recovered from stable storage (all empty for a brand-new node).
public struct RaftInitialState: Sendable {
    public var hardState: HardState
    public var snapshot: Snapshot?
    /// Entries after the snapshot, contiguous.
    public var entries: [Entry]

    public init(hardState: HardState = HardState(), snapshot: Snapshot? = nil, entries: [Entry] = []) {
        self.hardState = hardState
        self.snapshot = snapshot
        self.entries = entries
    }
}

/// SplitMix64: small, seedable, deterministic.
struct SplitMix64: Sendable {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func next(below n: Int) -> Int {
        precondition(n > 0)
        return Int(next() % UInt64(n))
    }
}
