// Raft messages exchanged between nodes.

/// The kind of a Raft message.
public enum MessageType: UInt8, Sendable, Equatable, CaseIterable {
    case preVote = 1
    case preVoteResponse = 2
    case vote = 3
    case voteResponse = 4
    case append = 5
    case appendResponse = 6
    case heartbeat = 7
    case heartbeatResponse = 8
    case snapshot = 9
    case snapshotResponse = 10
    case timeoutNow = 11
    case readIndex = 12
    case readIndexResponse = 13
}

/// One chunk of a snapshot being installed on a follower.
public struct SnapshotChunk: Equatable, Sendable {
    public var metadata: SnapshotMetadata
    /// Byte offset of `data` within the whole snapshot.
    public var offset: UInt64
    /// Size of the whole snapshot in bytes.
    public var totalSize: UInt64
    public var data: [UInt8]

    public init(metadata: SnapshotMetadata, offset: UInt64, totalSize: UInt64, data: [UInt8]) {
        self.metadata = metadata
        self.offset = offset
        self.totalSize = totalSize
        self.data = data
    }
}

/// A Raft message. Field meaning depends on `type`:
///
/// - `preVote`/`vote`: `index`/`logTerm` = candidate's last log index/term;
///   `context` = 1 when the campaign is a leadership transfer.
/// - `append`: `index`/`logTerm` = previous entry; `entries`; `commit`.
/// - `appendResponse`: `index` = highest matching index (or, when `reject`, the rejected
///   previous index); `rejectHint`/`logTerm` = follower's hint for fast back-off.
/// - `heartbeat`/`heartbeatResponse`: `commit`; `context` = read-index round.
/// - `snapshot`: `snapshot` chunk. `snapshotResponse`: `index` = snapshot index,
///   `context` = next byte offset wanted, `reject` = follower gave up.
/// - `readIndex`/`readIndexResponse`: `context` = request ID, `index` = read index.
public struct RaftMessage: Equatable, Sendable {
    public var type: MessageType
    public var from: NodeID
    public var to: NodeID
    public var term: UInt64
    public var logTerm: UInt64
    public var index: UInt64
    public var commit: UInt64
    public var reject: Bool
    public var rejectHint: UInt64
    public var context: UInt64
    public var entries: [Entry]
    public var snapshot: SnapshotChunk?

    public init(type: MessageType, from: NodeID, to: NodeID, term: UInt64,
                logTerm: UInt64 = 0, index: UInt64 = 0, commit: UInt64 = 0,
                reject: Bool = false, rejectHint: UInt64 = 0, context: UInt64 = 0,
                entries: [Entry] = [], snapshot: SnapshotChunk? = nil) {
        self.type = type
        self.from = from
        self.to = to
        self.term = term
        self.logTerm = logTerm
        self.index = index
        self.commit = commit
        self.reject = reject
        self.rejectHint = rejectHint
        self.context = context
        self.entries = entries
        self.snapshot = snapshot
    }
}
