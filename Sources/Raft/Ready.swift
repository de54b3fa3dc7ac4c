// The batch of work a node hands to its driver.

/// Everything the driver must do after feeding inputs, in this order:
/// 1. persist `snapshot` (if any), then `entries` and `hardState` — in one durable write;
/// 2. send `messages` (only after step 1: some of them acknowledge those entries);
/// 3. restore the state machine from `snapshot` (if any), then apply `committedEntries`
///    in order, and serve `readStates` once the state machine has applied their index;
/// 4. call `advance(_:)` with this value.
public struct Ready: Sendable {
    /// Changed term/vote/commit, or nil when unchanged.
    public var hardState: HardState?
    /// Entries to append; any stored entry with index >= `entries.first.index` must be
    /// replaced (a conflicting suffix is being truncated).
    public var entries: [Entry] = []
    /// A snapshot received from the leader: store it, drop every stored entry, restore from it.
    /// With `RaftConfig.stageIncomingSnapshots` its `data` is empty: the bytes came in
    /// `snapshotChunks` (of this or earlier Readys), and the host hands them back with
    /// `replaceSnapshotData(index:with:)` before it calls `advance`.
    public var snapshot: Snapshot?
    /// With `RaftConfig.stageIncomingSnapshots`: chunks of a snapshot being received, in order,
    /// to append to the host's staging area before step 2 (one with offset 0 starts a new
    /// snapshot and discards whatever was staged).
    public var snapshotChunks: [SnapshotChunk] = []
    public var messages: [RaftMessage] = []
    /// Committed entries to apply, in index order (`.noop` entries carry nothing; `.config`
    /// entries have already taken effect inside the core).
    public var committedEntries: [Entry] = []
    /// Confirmed linearizable reads.
    public var readStates: [ReadState] = []

    public init() {}

    /// Whether the durable write in step 1 must be synced (there is something to persist).
    public var mustPersist: Bool { hardState != nil || !entries.isEmpty || snapshot != nil }
}

/// A read-only summary of a node for status pages and tests.
public struct RaftStatus: Sendable, Equatable {
    public var id: NodeID
    public var role: RaftRole
    public var term: UInt64
    public var leader: NodeID?
    public var commitIndex: UInt64
    public var appliedIndex: UInt64
    public var lastIndex: UInt64
    public var snapshotIndex: UInt64
    public var conf: ConfState
    /// Messages ignored because they were stale, malformed or unexpected.
    public var droppedMessages: Int
    /// Replication state of every member as seen by this node when it is the leader (else empty).
    public var peers: [PeerStatus]
}

/// The leader's view of one member's replication.
public struct PeerStatus: Sendable, Equatable {
    public var id: NodeID
    public var isVoter: Bool
    /// Highest index known to be persisted on the peer.
    public var match: UInt64
    /// Next index the leader will send.
    public var next: UInt64
    /// `probe`, `replicate` or `snapshot`.
    public var state: String
    /// Heard from during the current check-quorum period.
    public var recentActive: Bool
}
