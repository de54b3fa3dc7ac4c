import ControlAPI
import Foundation
import Identity
import Ledger
import Libp2p
import Membership
import Raft
import RaftStorage
import Storage
import Support
import Wire

/// Why a write could not be committed.
public struct ConsensusError: Error, CustomStringConvertible, Sendable {
    public let code: String       // NOT_LEADER, TIMEOUT, OVERLOADED, NOT_COMMITTED, UNAVAILABLE
    public let message: String
    public let leaderHint: String?
    public let leaderAddr: String?
    public var description: String { "\(code): \(message)" }
}

/// Bounded outbound queue and long-lived `/p2pos/raft/1.0.0` stream to one peer.
final class PeerLink: @unchecked Sendable {
    let peer: String
    private let lock = NSLock()
    private var queue: [[UInt8]] = []
    private var queuedBytes = 0
    /// A send is queued on the event loop, the stream is being opened, or a retry is pending;
    /// frames arriving meanwhile wait in `queue` and leave together in the next write.
    private var inFlight = false
    private var closed = false
    private var stream: Libp2pStream?
    private(set) var dropped = 0
    static let maxQueued = 8192
    static let maxQueuedBytes = 64 << 20
    /// Unsent bytes on the stream above which the link stops writing for a moment.
    static let backlogLimit = 4 << 20

    init(peer: String) { self.peer = peer }

    /// Enqueue frames (any thread); frames beyond the queue's bounds are dropped — Raft tolerates loss.
    func enqueue(_ frames: [[UInt8]], host: Libp2pHost) {
        lock.lock()
        for f in frames {
            if queue.count >= PeerLink.maxQueued || queuedBytes + f.count > PeerLink.maxQueuedBytes {
                dropped += 1
                continue
            }
            queue.append(f)
            queuedBytes += f.count
        }
        let go = !inFlight && !closed && !queue.isEmpty
        if go { inFlight = true }
        lock.unlock()
        if go { flush(host) }
    }

    /// Write everything queued as one buffer without waiting (the caller owns `inFlight`).
    /// The stream's callback, on its event loop, sends what accumulated meanwhile. While the
    /// stream's unsent backlog is above `backlogLimit`, frames stay in the bounded queue and the
    /// link only probes the backlog.
    private func flush(_ host: Libp2pHost) {
        lock.lock()
        let s = stream
        let probing = overBacklog && s != nil && !closed
        let batch = closed || probing ? [] : queue
        if !probing {
            queue = []
            queuedBytes = 0
        }
        if batch.isEmpty && !probing { inFlight = false }
        depth += 1
        let deep = depth > 8
        lock.unlock()
        defer { lock.withLock { depth -= 1 } }
        if probing, let s {
            s.send([]) { [self] backlog in afterSend(s, host, backlog: backlog, batch: []) }
            return
        }
        guard !batch.isEmpty else { return }
        guard let s else {
            Task { await self.open(host, then: batch) }
            return
        }
        var buf: [UInt8] = []
        buf.reserveCapacity(batch.reduce(0) { $0 + $1.count + 5 })
        for f in batch {
            Varint.encode(UInt64(f.count), into: &buf)
            buf.append(contentsOf: f)
        }
        if deep {
            // The loop runs `send` inline and its callback flushes again: hand the next round
            // to another thread instead of recursing without bound.
            let bytes = buf
            DispatchQueue.global().async { [self] in s.send(bytes) { [self] b in afterSend(s, host, backlog: b, batch: batch) } }
            return
        }
        s.send(buf) { [self] backlog in afterSend(s, host, backlog: backlog, batch: batch) }
    }

    /// Loop thread: the outcome of one `send` (nil backlog: the stream is gone).
    private func afterSend(_ s: Libp2pStream, _ host: Libp2pHost, backlog: Int?, batch: [[UInt8]]) {
        guard let backlog else {
            lock.withLock {
                if stream === s { stream = nil }
                overBacklog = false
                dropped += batch.count
            }
            s.reset()
            retry(host, after: backoff())
            return
        }
        let over = backlog > PeerLink.backlogLimit
        lock.withLock {
            overBacklog = over
            if !batch.isEmpty { failures = 0 }   // the peer takes our frames: backoff starts over
        }
        if over { retry(host, after: 0.002) } else { flush(host) }
    }

    /// Set while the stream's unsent backlog is above `backlogLimit`.
    private var overBacklog = false
    /// Nesting of `flush` (it can re-enter through an inline send callback).
    private var depth = 0

    /// Consecutive failures to open or write the stream: retries back off from 50 ms to 5 s, so
    /// a member that is down (or does not serve Raft) is not asked 20 times a second.
    private var failures = 0
    private func backoff() -> Double {
        lock.withLock {
            failures += 1
            return min(5, 0.05 * pow(2, Double(min(failures - 1, 10))))
        }
    }

    private func retry(_ host: Libp2pHost, after seconds: Double) {
        DispatchQueue.global().asyncAfter(deadline: .now() + seconds) { [self] in flush(host) }
    }

    private func open(_ host: Libp2pHost, then batch: [[UInt8]]) async {
        do {
            let pid = try PeerID(string: peer)
            guard await host.isConnected(pid) else { throw P2POSError("NOT_CONNECTED", "not connected") }
            let s = try await host.openStream(to: pid, protocols: [P2POSProtocol.raft])
            let isClosed: Bool = lock.withLock {
                if closed { return true }
                stream = s
                queue.insert(contentsOf: batch, at: 0)
                queuedBytes += batch.reduce(0) { $0 + $1.count }
                return false
            }
            if isClosed { s.reset() }   // closed while the stream was being opened
            flush(host)
        } catch {
            lock.withLock { dropped += batch.count }
            retry(host, after: backoff())
        }
    }

    func close() {
        let s: Libp2pStream? = lock.withLock {
            closed = true
            queue = []
            let s = stream
            stream = nil
            return s
        }
        s?.reset()
    }
}

/// Splits a raft stream's bytes into uvarint-length-prefixed frames. Used from one event loop only.
final class RaftFrameReader: @unchecked Sendable {
    private var buf: [UInt8] = []
    private var pos = 0
    let maxFrame: Int
    init(maxFrame: Int) { self.maxFrame = maxFrame }

    /// Append bytes; returns the complete frames, or throws on a bad prefix or an oversized frame.
    func feed(_ chunk: UnsafeBufferPointer<UInt8>) throws -> [[UInt8]] {
        if pos > 0 && pos == buf.count { buf.removeAll(keepingCapacity: true); pos = 0 }
        buf.append(contentsOf: chunk)
        var frames: [[UInt8]] = []
        while pos < buf.count {
            let len: UInt64, n: Int
            do { (len, n) = try Varint.decode(buf, at: pos) } catch WireError.truncated {
                break   // the rest of the prefix has not arrived yet
            } catch {
                throw P2POSError("RAFT_FRAME", "bad length prefix: \(error)")
            }
            let i = pos + n
            guard len <= UInt64(maxFrame) else { throw P2POSError("RAFT_FRAME", "frame of \(len) bytes, limit \(maxFrame)") }
            let end = i + Int(len)
            guard end <= buf.count else { break }
            frames.append(Array(buf[i..<end]))
            pos = end
        }
        if pos > 0 && pos >= 1 << 16 {
            buf.removeFirst(pos)
            pos = 0
        }
        return frames
    }
}

/// The networked Raft node: drives the pure core, persists through RaftStorage, applies to the Ledger.
public final class Consensus: @unchecked Sendable {
    let queue = DispatchQueue(label: "p2pos.raft")
    var node: RaftNode
    let storage: RaftStorage
    static let ledgerPageSize = 8192
    public let ledger: Ledger
    let ledgerDB: SQLiteDB
    /// Frames in ledger.db's WAL after the apply connection's last commit.
    private var ledgerWAL: WALFrameCounter!
    /// Checkpoint bookkeeping (on `snapshotQueue`).
    private var checkpointedFrames = 0
    private var lastCheckpoint: UInt64 = 0
    unowned let daemon: Daemon
    let selfID: String
    let maxVoters: Int
    let tickInterval: Double
    private var timer: DispatchSourceTimer?
    private var checkpointTimer: DispatchSourceTimer?
    private var links: [String: PeerLink] = [:]
    private var waiters: [UInt64: (term: UInt64, done: @Sendable (Result<TxResult, ConsensusError>) -> Void)] = [:]
    private var reads: [UInt64: @Sendable (Result<UInt64, ConsensusError>) -> Void] = [:]
    private var readWaitApplied: [(index: UInt64, done: @Sendable (Result<UInt64, ConsensusError>) -> Void)] = []
    private var nextReadID: UInt64 = 1
    private var lastSnapshotIndex: UInt64 = 0
    /// Apply queue: size of the last snapshot and log bytes applied since (compaction policy).
    private var lastSnapshotBytes = 0
    private var logBytesSinceSnapshot = 0
    /// This node's factor (1.0–1.5, from its peer ID) on the compaction byte threshold, so that
    /// the members of a cluster, which apply the same entries, do not all build a snapshot at
    /// once. (`snapshotEvery` stays exact: it is the operator's setting.)
    lazy var compactionSpread: Double = {
        var h: UInt32 = 2166136261
        for b in selfID.utf8 { h = (h ^ UInt32(b)) &* 16777619 }
        return 1.0 + Double(h % 64) / 128
    }()
    private var confPendingSince: UInt64 = 0
    public let snapshotEvery: UInt64
    let dataDir: String
    private var stopped = false
    // Stats (read under queue).
    private var lastRole: RaftRole = .follower

    public init(daemon: Daemon, dataDir: String, clusterID: String, maxVoters: Int, electionMs: Int, heartbeatMs: Int, snapshotEvery: UInt64 = 4096) throws {
        self.daemon = daemon
        self.selfID = daemon.peerID
        self.maxVoters = maxVoters
        self.snapshotEvery = snapshotEvery
        tickInterval = Double(max(10, heartbeatMs)) / 1000
        storage = try RaftStorage(path: dataDir + "/raft.db")
        // The ledger is derived state, rebuilt from the Raft snapshot and log when in doubt: it is
        // written without any fsync (synchronous=OFF), which a killed process survives, and
        // `LedgerGuard` discards it after a crash of the machine (see there).
        self.dataDir = dataDir
        try LedgerGuard.open(dataDir: dataDir)
        // A new ledger gets 8 KiB pages: a commit group then writes about half as many pages
        // (and WAL syscalls) for the same random inserts; measured in docs/benchmarks.md
        // (eleventh session). An existing file keeps its page size.
        ledgerDB = try SQLiteDB(path: dataDir + "/ledger.db", synchronous: "OFF", pageSize: Consensus.ledgerPageSize)
        ledger = try Ledger(db: ledgerDB, clusterID: clusterID)
        // Apply commits in groups (see `scheduleLedgerCommit`) and leaves WAL checkpoints to a
        // background timer; SQLite's own checkpoint stays as a safety net for a large WAL.
        ledger.deferCommits = true
        ledgerWAL = ledgerDB.observeWAL(autocheckpoint: 16384)
        readLedger = try Ledger(db: try SQLiteDB(path: dataDir + "/ledger.db", synchronous: "OFF"), clusterID: clusterID)
        snapshotLedger = try Ledger(db: try SQLiteDB(path: dataDir + "/ledger.db", synchronous: "OFF"), clusterID: clusterID)
        // This connection only scans whole tables (snapshots) and checkpoints: pages it reads are
        // not read again soon, so a large page cache would only hold memory.
        try snapshotLedger.db.exec("PRAGMA cache_size=-2048")
        var rc = RaftConfig(id: daemon.peerID, randomSeed: UInt64.random(in: 1...UInt64.max))
        rc.heartbeatTick = 1
        rc.electionTick = max(3, electionMs / max(10, heartbeatMs))
        // A snapshot from the leader goes straight to a file as its chunks arrive (see
        // `stageSnapshotChunks`), so its size is bounded by the disk rather than by memory.
        rc.stageIncomingSnapshots = true
        rc.maxSnapshotBytes = 1 << 36
        var initial = try storage.load()
        let applied = try ledger.lastAppliedIndex()
        // Entries up to `applied` are already in the ledger (none after a rebuild).
        if let snap = initial.snapshot, applied < snap.metadata.index {
            let l: Ledger = ledger
            try snap.data.withUnsafeBytes { try l.restore(buffer: $0) }
        }
        rc.applied = max(try ledger.lastAppliedIndex(), initial.snapshot?.metadata.index ?? 0)
        // Count the ledger's rows once now; apply keeps the counts, so `/v1/p2p/stats` never scans.
        ledger.keepsCounters = true
        _ = try ledger.currentCounters()
        // The ledger may have applied past the last persisted commit index (commit-only changes are
        // not fsynced); applied entries were committed, so the commit index is at least that.
        let lastLogIndex = initial.entries.last?.index ?? initial.snapshot?.metadata.index ?? 0
        if rc.applied > initial.hardState.commit {
            initial.hardState.commit = min(rc.applied, max(lastLogIndex, initial.hardState.commit))
        }
        rc.applied = min(rc.applied, max(initial.hardState.commit, initial.snapshot?.metadata.index ?? 0))
        let fresh = initial.entries.isEmpty && initial.snapshot == nil && initial.hardState.term == 0
        let members = daemon.members
        let bootstrap = fresh && members == [daemon.peerID] ? [daemon.peerID] : []
        if fresh && bootstrap.isEmpty {
            initial = RaftInitialState()
        }
        node = try RaftNode(config: rc, state: initial, bootstrapVoters: bootstrap)
        durableHardState = initial.hardState
        lastSnapshotIndex = initial.snapshot?.metadata.index ?? 0
        lastSnapshotBytes = initial.snapshot?.data.count ?? 0
        ledgerApplied = rc.applied
        Log.info("raft", "opened", ["applied": rc.applied, "last_index": node.lastIndex, "term": node.term,
                                    "bootstrap": !bootstrap.isEmpty, "voters": node.conf.voters.count])
    }

    /// `init --new-system`: the founding node's Raft log starts with a configuration naming it
    /// the only voter (entry 1, term 1, committed), written before the daemon ever runs, so the
    /// first start bootstraps no matter which membership snapshot arrives first. Does nothing when
    /// the data directory already has a Raft log.
    public static func writeGenesisLog(dataDir: String, selfID: String) throws {
        let path = dataDir + "/raft.db"
        guard !FileManager.default.fileExists(atPath: path) else { return }
        let storage = try RaftStorage(path: path)
        try storage.save(hardState: HardState(term: 1, vote: nil, commit: 1),
                         entries: [Entry(term: 1, index: 1, kind: .config, data: ConfState(voters: [selfID]).encode())])
    }

    /// On the raft queue: the file an incoming snapshot's chunks are being written to.
    private var incomingSnapshot: SnapshotFileWriter?

    /// Writes a Ready's incoming snapshot chunks to the staging file (a chunk at offset 0 starts a
    /// new one) and, when the Ready installs the snapshot, finishes the file, maps it and hands
    /// the bytes back to the core: the snapshot to record and restore from, with its file.
    private func stageSnapshotChunks(_ rd: Ready) throws -> (snapshot: Snapshot, file: SnapshotFile)? {
        for c in rd.snapshotChunks {
            if c.offset == 0 {
                incomingSnapshot?.abandon()
                incomingSnapshot = try storage.createSnapshotFile(index: c.metadata.index)
            }
            guard let w = incomingSnapshot, UInt64(w.size) == c.offset else {
                throw P2POSError("RAFT_STORAGE", "snapshot chunk at offset \(c.offset) does not follow the \(incomingSnapshot?.size ?? 0) bytes staged")
            }
            try c.data.withUnsafeBytes { try w.write($0) }
        }
        guard var snap = rd.snapshot else { return nil }
        guard let w = incomingSnapshot else { throw P2POSError("RAFT_STORAGE", "snapshot \(snap.metadata.index) installed with nothing staged") }
        incomingSnapshot = nil
        let file = try w.finish()
        snap.data = try storage.mapSnapshotFile(file.name, digest: nil)
        guard node.replaceSnapshotData(index: snap.metadata.index, with: snap.data) else {
            storage.discardSnapshotFile(file)
            throw P2POSError("RAFT_STORAGE", "staged snapshot \(snap.metadata.index) has \(snap.data.count) bytes, not what the leader sent")
        }
        return (snap, file)
    }

    // MARK: lifecycle

    public func start() {
        daemon.host.setHandler(P2POSProtocol.raft) { [self] s in await serveRaftStream(s) }
        daemon.host.setHandler(P2POSProtocol.tx) { [self] s in await serveTxForward(s) }
        let t = DispatchSource.makeTimerSource(queue: queue)
        t.schedule(deadline: .now() + tickInterval, repeating: tickInterval, leeway: .milliseconds(2))
        t.setEventHandler { [self] in
            node.tick()
            reconcileConf()
            process()
        }
        timer = t
        t.resume()
        let cp = DispatchSource.makeTimerSource(queue: snapshotQueue)
        cp.schedule(deadline: .now() + 0.05, repeating: 0.05, leeway: .milliseconds(5))
        cp.setEventHandler { [self] in
            // Copy committed WAL pages into ledger.db off the apply path (PASSIVE: never waits),
            // once 16 MiB of log has accumulated, or after a second with anything new. Each
            // checkpoint's page writes and fsyncs stall the Raft fsyncs that overlap them: under
            // load small, frequent checkpoints keep that tail short (every ~0.2 s at 16 clients),
            // while at low rates fewer checkpoints mean fewer fsyncs (measured: docs/benchmarks.md).
            let frames = ledgerWAL.frames
            if frames < checkpointedFrames { checkpointedFrames = 0 }    // the log restarted
            let grown = frames - checkpointedFrames
            let now = Monotonic.nanos()
            guard grown >= 4096 || (grown > 0 && now &- lastCheckpoint >= 1_000_000_000) else { return }
            checkpoint(snapshotLedger.db, "checkpoint frames=\(grown)")
            checkpointedFrames = frames
            lastCheckpoint = now
        }
        checkpointTimer = cp
        cp.resume()
        queue.async { [self] in process() }
    }

    /// Hand leadership away (if leader) and stop ticking.
    public func stop() {
        let sem = DispatchSemaphore(value: 0)
        queue.async { [self] in
            if node.role == .leader, let target = node.conf.voters.first(where: { $0 != selfID && daemon.connectedPeers[$0] != nil }) {
                try? node.transferLeadership(to: target)
                process()
            }
            sem.signal()
        }
        _ = sem.wait(timeout: .now() + 2)
        if node.role == .leader { Thread.sleep(forTimeInterval: 0.3) }
        queue.sync {
            stopped = true
            timer?.cancel()
            let pending = waitLock.withLock { () -> [(term: UInt64, done: @Sendable (Result<TxResult, ConsensusError>) -> Void)] in
                let w = Array(waiters.values)
                waiters = [:]
                return w
            }
            for w in pending { w.done(.failure(ConsensusError(code: "UNAVAILABLE", message: "node is stopping", leaderHint: nil, leaderAddr: nil))) }
            for (_, l) in links { l.close() }
        }
        checkpointTimer?.cancel()
        // Let queued applies finish, and commit them, before the process exits; then make the
        // ledger durable and record the clean stop, so the next start trusts it.
        applyQueue.sync {
            commitLedger()
            _ = try? ledger.db.exec("PRAGMA wal_checkpoint(TRUNCATE)")
            LedgerGuard.markClean(dataDir: dataDir)
        }
        snapshotWorker.stop()
    }

    // MARK: the Ready loop (runs on `queue`)

    func process() {
        guard !stopped else { return }
        while node.hasReady {
            let rd = node.ready()
            // A leader may send its appends while it writes the same entries to its own disk
            // (Raft thesis §10.2.1; etcd does this): followers' acknowledgements do not depend on
            // the leader's disk, and the core counts the leader toward a quorum only after
            // `advance`, i.e. after this persist. Only when the term/vote are already durable.
            let sendEarly = node.role == .leader && rd.snapshot == nil
                && rd.hardState.map { $0.term == durableHardState.term && $0.vote == durableHardState.vote } ?? true
                && rd.messages.allSatisfy { $0.type == .append || $0.type == .heartbeat }
            if sendEarly { send(rd.messages) }
            do {
                // A change of the commit index alone needs no fsync (etcd does the same): the
                // commit index is re-learned from the leader and never exceeds what a quorum stored.
                let commitOnly = rd.entries.isEmpty && rd.snapshot == nil
                    && rd.hardState.map { $0.term == durableHardState.term && $0.vote == durableHardState.vote } ?? true
                let installed = try stageSnapshotChunks(rd)
                if rd.mustPersist && !commitOnly {
                    try storage.save(hardState: rd.hardState ?? node.hardState, entries: rd.entries,
                                     snapshot: installed?.snapshot, snapshotFile: installed?.file)
                    durableHardState = rd.hardState ?? node.hardState
                }
                if let snap = installed?.snapshot {
                    applyQueue.async { [self] in
                        do { try snap.data.withUnsafeBytes { try ledger.restore(buffer: $0) } } catch {
                            Log.error("ledger", "restore_failed", ["reason": "\(error)"])
                            fatalError("ledger restore failed: \(error)")
                        }
                        lastSnapshotIndex = snap.metadata.index
                        lastSnapshotBytes = snap.data.count
                        logBytesSinceSnapshot = 0
                        waitLock.withLock { ledgerApplied = max(ledgerApplied, snap.metadata.index) }
                        Log.info("raft", "snapshot_installed", ["index": snap.metadata.index, "bytes": snap.data.count])
                        releaseReads()
                    }
                }
            } catch {
                // Without durable state we must not acknowledge anything: crash and let systemd restart us.
                Log.error("raft", "persist_failed", ["reason": "\(error)"])
                fatalError("raft storage failed: \(error)")
            }
            if !sendEarly { send(rd.messages) }
            let committed = rd.committedEntries
            if !committed.isEmpty {
                completeRaw(committed)
                // A small batch with nothing queued before it is applied right here, on this
                // thread (`sync` on an idle serial queue runs inline): one thread hop less on
                // the latency path. Under load batches queue up and apply runs behind the raft queue.
                let small = committed.count <= 8
                let inline = waitLock.withLock { () -> Bool in
                    let idle = applyBacklog == 0
                    applyBacklog += 1
                    return idle && small
                }
                if inline {
                    applyQueue.sync { apply(committed) }
                } else {
                    applyQueue.async { [self] in apply(committed) }
                }
            }
            var readyReads: [(UInt64, @Sendable (Result<UInt64, ConsensusError>) -> Void)] = []
            for rs in rd.readStates {
                if let done = reads.removeValue(forKey: rs.requestID) { readyReads.append((rs.index, done)) }
            }
            if !readyReads.isEmpty {
                waitLock.withLock { for r in readyReads { readWaitApplied.append((index: r.0, done: r.1)) } }
                releaseReads()
            }
            node.advance(rd)
        }
        if !commitFlushArmed && node.commitFlushDue { armCommitFlush() }
        let (role, leaderNow) = (node.role, node.leader)
        roleLock.withLock {
            cachedRole = role
            cachedLeader = leaderNow
        }
        if node.role != lastRole {
            Log.info("raft", "role_change", ["from": lastRole.rawValue, "to": node.role.rawValue, "term": node.term, "leader": node.leader ?? ""])
            lastRole = node.role
        }
    }

    /// Raft queue: a commit that followers holding every entry have not been told yet (the core
    /// sends the new commit index only with entries: `RaftNode.bcastCommitted`) reaches them
    /// this much later at the latest — usually the next append carries it first, and then the
    /// flush finds nothing to send. Followers apply, and answer local reads, up to this late.
    /// (1 client, `bench raft`: 2 ms, 20 ms and none at all gave the same p50 and CPU per op;
    /// the p99 was best at 20 ms — the timer's own wake-ups land inside other txs' round trips.)
    static let commitFlushDelay = 0.01
    private var commitFlushArmed = false
    private func armCommitFlush() {
        commitFlushArmed = true
        queue.asyncAfter(deadline: .now() + Consensus.commitFlushDelay) { [self] in
            commitFlushArmed = false
            guard !stopped else { return }
            node.flushCommit()
            process()
        }
    }

    /// Answer linearizable reads whose index the ledger has applied (any queue).
    func releaseReads() {
        let ready: [(UInt64, @Sendable (Result<UInt64, ConsensusError>) -> Void)] = waitLock.withLock {
            guard !readWaitApplied.isEmpty else { return [] }
            var out: [(UInt64, @Sendable (Result<UInt64, ConsensusError>) -> Void)] = []
            var keep: [(index: UInt64, done: @Sendable (Result<UInt64, ConsensusError>) -> Void)] = []
            for r in readWaitApplied {
                if r.index <= ledgerApplied { out.append((r.index, r.done)) } else { keep.append(r) }
            }
            readWaitApplied = keep
            return out
        }
        for (idx, done) in ready { done(.success(idx)) }
    }

    func send(_ msgs: [RaftMessage]) {
        guard !msgs.isEmpty else { return }
        var byPeer: [String: [[UInt8]]] = [:]
        for m in msgs { byPeer[m.to, default: []].append(m.encode()) }
        for (peer, frames) in byPeer {
            let link: PeerLink
            if let l = links[peer] { link = l } else { link = PeerLink(peer: peer); links[peer] = link }
            link.enqueue(frames, host: daemon.host)
        }
    }

    func apply(_ entries: [Entry]) {
        defer { waitLock.withLock { applyBacklog -= 1 } }
        guard !entries.isEmpty else { return }
        for e in entries { logBytesSinceSnapshot += e.data.count }
        awaitPreverify(through: entries[entries.count - 1].index)
        var batch: [LedgerEntry] = []
        var terms: [UInt64: UInt64] = [:]
        for e in entries where e.kind == .normal && !e.data.isEmpty && e.data[0] != 0 {
            batch.append(LedgerEntry(raftIndex: e.index, txBytes: e.data, decoded: takeDecoded(e)))
            terms[e.index] = e.term
        }
        var results: [UInt64: TxResult] = [:]
        let t0 = Monotonic.nanos()
        defer {
            if trace && !batch.isEmpty {
                traceLine("apply n=\(batch.count) us=\((Monotonic.nanos() - t0) / 1000) role=\(roleLock.withLock { cachedRole }.rawValue)")
            }
        }
        do {
            if !batch.isEmpty {
                let rs = try ledger.applyBatch(batch, appliedThrough: entries.last?.index)
                for (e, r) in zip(batch, rs) { results[e.raftIndex] = r }
            } else if let last = entries.last?.index {
                try ledger.markApplied(raftIndex: last)
            }
        } catch {
            Log.error("ledger", "apply_failed", ["reason": "\(error)"])
            fatalError("ledger apply failed: \(error)")
        }
        let last = entries.last!.index
        waitLock.withLock { ledgerApplied = max(ledgerApplied, last) }
        let leaderHint = roleLock.withLock { cachedLeader }
        for e in entries {
            guard let w = waitLock.withLock({ waiters.removeValue(forKey: e.index) }) else { continue }
            if w.term == e.term, let r = results[e.index] {
                w.done(.success(r))
            } else if w.term == e.term {
                w.done(.failure(ConsensusError(code: "NOT_COMMITTED", message: "entry \(e.index) was not a transaction", leaderHint: nil, leaderAddr: nil)))
            } else {
                w.done(.failure(ConsensusError(code: "NOT_COMMITTED", message: "leadership changed before the entry committed; retry (same tx is idempotent)", leaderHint: leaderHint, leaderAddr: nil)))
            }
        }
        releaseReads()
        scheduleLedgerCommit()
        maybeSnapshot()
    }

    /// Run `body` on the apply queue (it owns the ledger connection), counted as apply work so
    /// the raft queue does not apply inline behind it.
    func onApplyQueue<T>(_ body: () throws -> T) rethrows -> T {
        try countedAsApplyWork { try applyQueue.sync(execute: body) }
    }

    /// Run `body` counted in `applyBacklog`, so the raft queue does not apply inline behind it.
    private func countedAsApplyWork<T>(_ body: () throws -> T) rethrows -> T {
        waitLock.withLock { applyBacklog += 1 }
        defer { waitLock.withLock { applyBacklog -= 1 } }
        return try body()
    }

    /// Apply queue: the ledger's open write transaction is committed once it is 2.5 s old or
    /// holds 16,384 entries — results were already answered from it (apply is deterministic and a
    /// crash replays the uncommitted part from the Raft log). A timer bounds how long other
    /// connections (pre-proposal checks, compaction snapshots) wait to see it. (Queries read
    /// through this connection and see applied state at once.) Why so long: the trees' keys are
    /// random, so each tx dirties its own leaf pages, and every commit writes each dirty page
    /// into the WAL once however often it changed; the longer the group, the more changes share
    /// a page write. Ledger apply alone (30k txs): 17.5 µs of commit per tx at 600-entry groups,
    /// 7 µs at 2400. Side by side at 1/16/64 clients, 1 s against 250 ms gave +3–7 % tx/s and
    /// 3–5 % less CPU per tx (docs/benchmarks.md, ninth session; 20 ms → 250 ms gave +13–15 % in
    /// the seventh). And the tail: apply waits while its connection commits (12–24 ms per commit
    /// at 64 clients here), so every commit delays the txs that commit in Raft meanwhile; at 1 s
    /// those stalls covered more than 1 % of the time and set the p99. 2.5 s against 1 s, three
    /// alternating pairs at 64 clients: p99 37.6–42.9 against 46.3–60.9 ms, +3–5 % tx/s; 5 s was
    /// no better than 2.5 (twelfth session). The dirty pages of a group stay within the 32 MiB
    /// page cache at these rates (SQLite spills to the WAL beyond it, still correct).
    private var commitTimerArmed = false
    /// After a commit that leaves at least this many frames (16 MiB of 8 KiB pages) in the
    /// ledger's WAL, the apply connection checkpoints it itself, before its next write
    /// transaction begins, so that transaction's commit writes the log from its start again.
    /// SQLite rewinds a WAL only at the commit of a write transaction that began with every frame
    /// copied into the database; under load the next transaction begins right after a commit,
    /// before the background checkpoint (`checkpointTimer`) has copied it, so the log never
    /// rewound: it grew to ~145 MB in 40 s at 64 clients, until SQLite's own checkpoint at
    /// 16,384 frames ran inside a commit (67–100 ms stalls). With this the WAL stays about one
    /// commit group long; the checkpoint takes ~10–13 ms after a ~2,000-page commit. Twelve
    /// alternating pairs of `p2pos bench tx --nodes 3 --clients 64 --compare none` (10 and 20 s):
    /// p99 lower in all twelve (median 21.35 → 19.65 ms), throughput higher in eight
    /// (docs/benchmarks.md, twentieth session).
    static let ledgerWALRewindFrames = 2048
    static let ledgerCommitDelay = 2.5
    static let ledgerCommitMaxEntries = 16_384
    func scheduleLedgerCommit() {
        guard let since = ledger.pendingSince else { return }
        if ledger.pendingEntries >= Consensus.ledgerCommitMaxEntries || Monotonic.nanos() - since >= UInt64(Consensus.ledgerCommitDelay * 1e9) {
            commitLedger()
            return
        }
        armCommitTimer(after: 2 * Consensus.ledgerCommitDelay)
    }

    /// The timer only covers a pause in applies: while they keep coming, the commit runs right
    /// after one of them has answered its waiters (`scheduleLedgerCommit`), in the gap before the
    /// next entry commits. A timer committing at the same deadline would land at a random moment
    /// and make the next apply wait behind the commit, so it commits only a transaction that has
    /// waited twice as long, and otherwise re-arms.
    private func armCommitTimer(after seconds: Double) {
        guard !commitTimerArmed else { return }
        commitTimerArmed = true
        applyQueue.asyncAfter(deadline: .now() + seconds) { [self] in
            countedAsApplyWork {
                commitTimerArmed = false
                guard let since = ledger.pendingSince else { return }
                let age = Double(Monotonic.nanos() &- since) / 1e9
                if age >= 2 * Consensus.ledgerCommitDelay - 0.001 {
                    commitLedger()
                } else {
                    armCommitTimer(after: 2 * Consensus.ledgerCommitDelay - age)
                }
            }
        }
    }

    func commitLedger() {
        let started = trace ? Monotonic.nanos() : 0
        let cpu0 = trace ? Monotonic.threadCPUNanos() : 0
        let entries = ledger.pendingEntries
        let framesBefore = trace ? ledgerWAL.frames : 0
        do { try ledger.commitPending() } catch {
            Log.error("ledger", "commit_failed", ["reason": "\(error)"])
            fatalError("ledger commit failed: \(error)")
        }
        if trace && entries > 0 {
            let frames = ledgerWAL.frames
            traceLine("ledger_commit us=\((Monotonic.nanos() &- started) / 1000) cpu_us=\((Monotonic.threadCPUNanos() &- cpu0) / 1000) entries=\(entries) pages=\(frames >= framesBefore ? frames - framesBefore : frames)")
        }
        if entries > 0 && ledgerWAL.frames >= Consensus.ledgerWALRewindFrames {
            // See `ledgerWALRewindFrames`. PASSIVE never waits: a reader still on older frames
            // (a snapshot being built) or the background checkpoint running just makes this a
            // partial checkpoint, and the log rewinds after a later commit instead.
            checkpoint(ledger.db, "wal_rewind_checkpoint frames=\(ledgerWAL.frames)")
        }
    }

    /// A PASSIVE checkpoint of ledger.db's WAL through `db` (it never waits; a failure leaves the
    /// frames for a later one), traced as `what` with its duration.
    private func checkpoint(_ db: SQLiteDB, _ what: @autoclosure () -> String) {
        let started = trace ? Monotonic.nanos() : 0
        do { try db.exec("PRAGMA wal_checkpoint(PASSIVE)") } catch {
            Log.debug("ledger", "checkpoint_failed", ["reason": "\(error)"])
        }
        if trace { traceLine("\(what()) us=\((Monotonic.nanos() - started) / 1000)") }
    }

    /// Ledger apply runs here, behind persistence: acknowledging batch N+1 never waits for
    /// applying batch N. Owns `ledger` (its SQLite connection) after start.
    let applyQueue = DispatchQueue(label: "p2pos.apply")
    /// A second connection to ledger.db for the raft queue's pre-proposal checks.
    var readLedger: Ledger!
    /// A third connection, used only on `snapshotQueue`, to build compaction snapshots from a
    /// consistent read transaction while apply continues.
    var snapshotLedger: Ledger!
    let snapshotQueue = DispatchQueue(label: "p2pos.snapshot", qos: .utility)
    /// Where compaction snapshots are built: a thread at nice 19 (see `BackgroundThread`).
    let snapshotWorker = BackgroundThread(name: "p2pos-snapshot", niceIncrement: 19)
    private var snapshotInFlight = false
    private let waitLock = NSLock()
    /// Apply batches handed to the apply queue and not finished yet (under `waitLock`).
    private var applyBacklog = 0
    private var ledgerApplied: UInt64 = 0
    /// P2POS_TRACE=1 prints per-batch apply timings, ledger commits, WAL checkpoints and
    /// compactions to stderr (diagnostics for benchmarks).
    let trace = ProcessInfo.processInfo.environment["P2POS_TRACE"] == "1"

    /// One diagnostic line, `TRACE t=<monotonic µs> <text>`: the clock is the one the bench
    /// client measures latencies with, so stalls can be matched with slow requests.
    func traceLine(_ text: String) {
        FileHandle.standardError.write("TRACE t=\(Monotonic.nanos() / 1000) \(text)\n".data(using: .utf8)!)
    }

    private let roleLock = NSLock()
    private var cachedRole: RaftRole = .follower
    private var cachedLeader: String?
    private var durableHardState = HardState()
    private let inboxLock = NSLock()
    private var inbox: [Input] = []
    private var drainScheduled = false
    private var benchWaiters: [UInt64: (term: UInt64, done: @Sendable (Bool) -> Void)] = [:]

    /// Benchmark-only: replicate an opaque entry (prefixed 0x00, never applied to the ledger).
    /// Goes through the inbox like transactions, so concurrent proposals share one Ready.
    public func proposeRaw(_ data: [UInt8], done: @escaping @Sendable (Bool) -> Void) {
        enqueue(.raw([0] + data, done))
    }

    /// Benchmark entries have no state machine: they are acknowledged once committed.
    private func completeRaw(_ entries: [Entry]) {
        var done: [(@Sendable (Bool) -> Void, Bool)] = []
        waitLock.withLock {
            guard !benchWaiters.isEmpty else { return }
            for e in entries where e.data.first == 0 {
                if let b = benchWaiters.removeValue(forKey: e.index) { done.append((b.done, b.term == e.term)) }
            }
        }
        for (d, ok) in done { d(ok) }
    }

    /// Log bytes applied since a snapshot of `snapshotBytes` before the next one is due (before
    /// this node's spread). A snapshot costs time in proportion to the whole state and the log
    /// since the last one is kept in memory, so this trades CPU against memory: twice the
    /// state's size while that is at most `compactionLogCap` (snapshots then write half a byte
    /// per byte of log applied, where half the state's size made it two), never more than the
    /// cap unless half the state is larger (from 2 × cap on, the log kept is half the state's
    /// size, so the amortized cost per applied byte stays constant), and never more than
    /// `compactionLogCeiling`: past a state of twice the ceiling, memory stays bounded and each
    /// byte of log costs snapshot work in proportion to the state instead (a node with a 4 GiB
    /// ledger keeps at most 256 MiB of log, times its spread, and writes 16 snapshot bytes per
    /// log byte).
    static func compactionLogBytes(after snapshotBytes: Int) -> Int {
        max(min(2 * snapshotBytes, compactionLogCap), min(snapshotBytes / 2, compactionLogCeiling))
    }

    /// See `compactionLogBytes(after:)`.
    static let compactionLogCap = 32 << 20
    /// See `compactionLogBytes(after:)`.
    static let compactionLogCeiling = 256 << 20

    /// On the apply queue: when enough has been applied since the last snapshot, build one on
    /// the snapshot queue from a read transaction (a consistent view at the index it reads), then
    /// compact the log up to that index on the raft queue. Apply is never blocked by it.
    /// "Enough" is `snapshotEvery` entries and at least `compactionLogBytes(after:)` bytes of log
    /// (times this node's spread).
    func maybeSnapshot() {
        let applied = waitLock.withLock { ledgerApplied }
        let spread = compactionSpread
        guard !snapshotInFlight, applied > lastSnapshotIndex + snapshotEvery,
              Double(logBytesSinceSnapshot) >= Double(Consensus.compactionLogBytes(after: lastSnapshotBytes)) * spread else { return }
        // The snapshot is read from committed state: commit what was applied first, so that it
        // covers everything applied (a commit group can hold more entries than `snapshotEvery`;
        // without this the build could find nothing new committed and be redone after every apply).
        commitLedger()
        if trace { traceLine("snapshot_start") }
        snapshotInFlight = true
        snapshotQueue.async { [self] in
            // Built on a thread of its own at a lower CPU priority: reading the whole ledger
            // then takes idle CPU time instead of time from admission, replication and apply.
            let (result, buildMs, buildCPUMs) = snapshotWorker.run { [self] in buildSnapshot() }
            if let (index, file, data) = result {
                queue.async { [self, buildMs, buildCPUMs] in
                    let meta: SnapshotMetadata
                    do { meta = try node.compact(upTo: index, snapshotData: data) } catch {
                        // E.g. a snapshot received from the leader got past this index: never recorded.
                        storage.discardSnapshotFile(file)
                        Log.warn("raft", "compact_failed", ["reason": "\(error)"])
                        return
                    }
                    do {
                        let compactStarted = Monotonic.nanos()
                        try storage.compact(snapshot: meta, file: file)
                        if trace {
                            traceLine("compact us=\((Monotonic.nanos() - compactStarted) / 1000) build_ms=\(buildMs) build_cpu_ms=\(buildCPUMs) bytes=\(data.count)")
                        }
                        Log.info("raft", "log_compacted", ["index": meta.index, "bytes": data.count,
                                                           "build_ms": buildMs, "build_cpu_ms": buildCPUMs])
                    } catch {
                        // The file stays: a failed COMMIT may still have reached the WAL (an
                        // unrecorded file is removed when raft.db is next opened).
                        Log.warn("raft", "compact_failed", ["reason": "\(error)"])
                    }
                }
            }
            let done = result.map { ($0.index, $0.data.count) }
            applyQueue.async { [self] in
                if let (index, bytes) = done, index > lastSnapshotIndex {
                    lastSnapshotIndex = index
                    lastSnapshotBytes = bytes
                    logBytesSinceSnapshot = 0
                }
                snapshotInFlight = false
            }
        }
    }

    /// Build a compaction snapshot of the committed ledger into a new snapshot file (on
    /// `snapshotWorker`). The state is streamed from one read transaction straight into the
    /// file, which is then mapped: no copy of the whole state is ever held on the heap. The read
    /// transaction ends before the fsync, so it holds back WAL checkpoints no longer than the
    /// reading takes. Writing the file off the Raft queue matters: writing megabytes into
    /// raft.db there stalled every proposal for 50–200 ms per compaction.
    func buildSnapshot() -> (result: (index: UInt64, file: SnapshotFile, data: SnapshotData)?, buildMs: UInt64, buildCPUMs: UInt64) {
        var result: (index: UInt64, file: SnapshotFile, data: SnapshotData)? = nil
        var buildMs: UInt64 = 0, buildCPUMs: UInt64 = 0
        do {
            var index: UInt64 = 0
            var writer: SnapshotFileWriter? = nil
            let started = Monotonic.nanos()
            let cpuStarted = Monotonic.threadCPUNanos()
            do {
                try snapshotLedger.db.exec("BEGIN")
                defer { try? snapshotLedger.db.exec("COMMIT") }    // ends the read before the fsync
                index = try snapshotLedger.lastAppliedIndex()
                let w = try storage.createSnapshotFile(index: index)
                writer = w
                try snapshotLedger.snapshot { try w.write($0) }
            } catch {
                writer?.abandon()
                throw error
            }
            if let w = writer {
                let file = try w.finish()
                buildMs = (Monotonic.nanos() &- started) / 1_000_000
                buildCPUMs = (Monotonic.threadCPUNanos() &- cpuStarted) / 1_000_000
                do { result = (index, file, try storage.mapSnapshotFile(file.name, digest: nil)) } catch {
                    storage.discardSnapshotFile(file)
                    throw error
                }
            }
        } catch {
            Log.warn("raft", "snapshot_failed", ["reason": "\(error)"])
        }
        return (result, buildMs, buildCPUMs)
    }

    // MARK: membership → configuration (leader only, one change at a time)

    func reconcileConf() {
        guard node.role == .leader, !node.hasPendingConfChange else { return }
        let members = daemon.members
        guard !members.isEmpty, members.contains(selfID) || true else { return }
        let conf = node.conf
        let memberSet = Set(members)
        // 1. Remove nodes that are no longer members (leader last: transfer first).
        for id in conf.members where !memberSet.contains(id) {
            if id == selfID {
                if let t = conf.voters.first(where: { $0 != selfID && memberSet.contains($0) }) { try? node.transferLeadership(to: t) }
                return
            }
            propose(.removeNode(id))
            return
        }
        // 2. Add new members as learners.
        for id in members.sorted() where !conf.isMember(id) {
            propose(.addLearner(id))
            return
        }
        // 3. Promote caught-up learners while there is room for voters.
        if conf.voters.count < maxVoters {
            for id in conf.learners.sorted() {
                if let m = node.matchIndex(of: id), m + 64 >= node.lastIndex {
                    propose(.promoteLearner(id))
                    return
                }
            }
        }
    }

    func propose(_ change: ConfChange) {
        do {
            _ = try node.proposeConfChange(change)
            Log.info("raft", "conf_change_proposed", ["change": "\(change)"])
        } catch {
            Log.debug("raft", "conf_change_deferred", ["change": "\(change)", "reason": "\(error)"])
        }
    }

    // MARK: inbound raft stream

    func serveRaftStream(_ s: Libp2pStream) async {
        let peer = s.remotePeer.base58
        guard daemon.isMember(peer) else {
            Log.warn("raft", "refused", ["from": peer, "reason": "not a member"])
            s.reset()
            return
        }
        // Frames are split and decoded on the event loop and handed to the raft queue in one
        // batch per arriving chunk: no task wake-up per message.
        let reader = RaftFrameReader(maxFrame: 8 << 20)
        let me = selfID
        await withCheckedContinuation { (cont: CheckedContinuation<Void, Never>) in
            s.setReceiver({ [self, weak s] chunk in
                var msgs: [RaftMessage] = []
                do {
                    for frame in try reader.feed(chunk) {
                        let m = try RaftMessage.decode(frame)
                        guard m.from == peer, m.to == me else {
                            Log.warn("raft", "bad_message", ["from": peer, "reason": "message from \(m.from) to \(m.to) on \(peer)'s stream"])
                            continue
                        }
                        msgs.append(m)
                    }
                } catch {
                    Log.warn("raft", "bad_message", ["from": peer, "reason": "\(error)"])
                    s?.reset()
                }
                if !msgs.isEmpty { enqueue(msgs.map { .message($0) }) }
            }, closed: { _ in cont.resume() })
        }
        await s.close()
    }

    // MARK: proposals

    /// Propose one admitted tx; completes when applied (or fails). Runs `done` off the raft queue.
    public func submit(_ txBytes: [UInt8], done: @escaping @Sendable (Result<TxResult, ConsensusError>) -> Void) {
        enqueue(.proposal(nil, txBytes, done))
    }

    /// Propose an admitted tx; an already-applied tx_id or a reused nonce is answered from the
    /// ledger on the raft queue, right before proposing.
    public func submit(_ tx: Tx, done: @escaping @Sendable (Result<TxResult, ConsensusError>) -> Void) {
        enqueue(.proposal(tx, tx.encoded, done))
    }

    enum Input {
        case message(RaftMessage)
        case proposal(Tx?, [UInt8], @Sendable (Result<TxResult, ConsensusError>) -> Void)
        /// A tx submitted without waiting for its commit (`?wait=false`): answered as soon as the
        /// raft queue has either proposed it or decided it without proposing.
        case proposalNoWait(Tx, @Sendable (NoWaitAnswer) -> Void)
        case raw([UInt8], @Sendable (Bool) -> Void)
    }

    /// Inputs arriving while the raft queue is busy (persisting) are handled together, so one
    /// Ready — one fsync — covers all of them (group commit).
    func enqueue(_ input: Input) { enqueue([input]) }

    func enqueue(_ inputs: [Input]) {
        let schedule: Bool = inboxLock.withLock {
            inbox.append(contentsOf: inputs)
            if drainScheduled { return false }
            drainScheduled = true
            return true
        }
        if schedule { queue.async { [self] in drain() } }
    }

    private let verifyQueue = DispatchQueue(label: "p2pos.verify", attributes: .concurrent)
    private let decodedLock = NSLock()
    /// The first raft index of each pre-verification still running (guarded by `preverifyCond`).
    private var preverifying: [Int: UInt64] = [:]
    private var preverifyTicket = 0
    private let preverifyCond = NSCondition()

    /// Apply waits for pre-verifications of the entries it is about to apply instead of checking
    /// their signatures a second time: once a follower keeps up, its applies often overtook the
    /// batch verifying the same entries on the other core (measured: a sixth of all entries were
    /// verified twice at 64 clients). Bounded, so a stalled verifier only costs a redo.
    /// A small batch is applied inline on the raft queue, which then waits too: no longer than
    /// re-verifying there would take, since the verification it waits for is already running.
    /// (The bound is on the monotonic clock; the condition's own timeout is wall-clock time, so
    /// it only paces the re-checks.)
    func awaitPreverify(through last: UInt64) {
        preverifyCond.lock()
        defer { preverifyCond.unlock() }
        let deadline = Monotonic.nanos() &+ 1_000_000_000
        while preverifying.values.contains(where: { $0 <= last }) {
            guard Monotonic.nanos() < deadline else { return }
            _ = preverifyCond.wait(until: Date().addingTimeInterval(0.05))
        }
    }
    private var decodedByIndex: [UInt64: (term: UInt64, bytes: [UInt8], tx: Tx)] = [:]

    /// Remember a tx decoded from exactly `bytes`, the data of the entry at (index, term).
    static let decodedCacheLimit = 16_384

    func rememberDecoded(index: UInt64, term: UInt64, bytes: [UInt8], tx: Tx) {
        decodedLock.withLock {
            // Entries are normally applied (and taken out) within milliseconds; the bound only
            // drops entries that will never be applied (e.g. overwritten by a new leader).
            if decodedByIndex.count >= Consensus.decodedCacheLimit { decodedByIndex.removeAll(keepingCapacity: true) }
            decodedByIndex[index] = (term, bytes, tx)
        }
    }

    /// The decoded tx for this entry, only if it was decoded from identical bytes.
    func takeDecoded(_ e: Entry) -> Tx? {
        decodedLock.withLock {
            guard let d = decodedByIndex.removeValue(forKey: e.index), d.term == e.term, d.bytes == e.data else { return nil }
            return d.tx
        }
    }

    /// Appends waiting for the pre-verifier, with their tickets (guarded by `preverifyCond`).
    private var verifyBacklog: [(ticket: Int, entries: [Entry])] = []
    private var verifierRunning = false

    /// Check signatures of arriving entries on another core while the raft queue persists them.
    /// One verifier at a time takes every append that arrived while it was busy as one batch:
    /// under load the batches grow by themselves (a batch verifies cheaper per signature the
    /// larger it is), and an idle node verifies each append at once.
    func preverify(_ entries: [Entry]) {
        let txEntries = entries.filter { $0.kind == .normal && !$0.data.isEmpty && $0.data[0] == 0x7b }
        guard let first = txEntries.first?.index else { return }
        let start: Bool = preverifyCond.withLock {
            preverifyTicket &+= 1
            preverifying[preverifyTicket] = first
            verifyBacklog.append((preverifyTicket, txEntries))
            if verifierRunning { return false }
            verifierRunning = true
            return true
        }
        if start { verifyQueue.async { [self] in runPreverifier() } }
    }

    private func runPreverifier() {
        while true {
            let work: [(ticket: Int, entries: [Entry])] = preverifyCond.withLock {
                let w = verifyBacklog
                verifyBacklog = []
                if w.isEmpty { verifierRunning = false }
                return w
            }
            if work.isEmpty { return }
            let all = work.count == 1 ? work[0].entries : work.flatMap(\.entries)
            // A large backlog (catching up) is split in two to use the second core.
            let chunks = max(1, min(2, all.count / 64))
            let per = (all.count + chunks - 1) / chunks
            DispatchQueue.concurrentPerform(iterations: chunks) { c in
                let part = all[min(all.count, c * per)..<min(all.count, (c + 1) * per)]
                var txs: [Tx] = []
                var kept: [Entry] = []
                txs.reserveCapacity(part.count)
                kept.reserveCapacity(part.count)
                for e in part {
                    guard let tx = try? Tx.decodeUnverified(e.data) else { continue }
                    txs.append(tx)
                    kept.append(e)
                }
                SignatureMemo.shared.verifyBatch(txs)
                for (e, tx) in zip(kept, txs) { rememberDecoded(index: e.index, term: e.term, bytes: e.data, tx: tx) }
            }
            preverifyCond.withLock {
                for w in work { preverifying[w.ticket] = nil }
                preverifyCond.broadcast()
            }
        }
    }

    func drain() {
        let batch: [Input] = inboxLock.withLock {
            let b = inbox
            inbox = []
            drainScheduled = false
            return b
        }
        let now = Timestamp.now()
        // The prechecks of many proposals share one read transaction: one WAL read lock (two
        // fcntl calls) for the batch instead of one per tx. They may see a state a few entries
        // old, which costs nothing: apply checks again.
        var proposals = 0
        for input in batch { if case .proposal = input { proposals += 1 } }
        let grouped = proposals >= 2 && (try? readLedger.db.run("BEGIN")) != nil
        for input in batch {
            switch input {
            case .message(let m):
                // Only entries the log will take: an append that is about to be rejected (a
                // probe to a follower missing earlier entries) is not worth verifying.
                if m.type == .append && !m.entries.isEmpty && node.role != .leader
                    && node.logMatches(index: m.index, term: m.logTerm) {
                    preverify(m.entries)
                }
                node.step(m)
            case .proposal(let tx, let bytes, let done):
                switch proposeChecked(tx, bytes, now: now) {
                case .decided(let r): done(r)
                case .proposed(let index, let term): waitLock.withLock { waiters[index] = (term, done) }
                }
            case .proposalNoWait(let tx, let answer):
                // Already looked up on the apply connection, which is fresher than `readLedger`.
                answer(proposeChecked(tx, tx.encoded, now: now, precheck: false))
            case .raw(let data, let done):
                guard node.role == .leader, let (index, term) = try? node.propose(data: data) else { done(false); continue }
                waitLock.withLock { benchWaiters[index] = (term, done) }
            }
        }
        if grouped { _ = try? readLedger.db.run("COMMIT") }
        process()
    }

    /// What the raft queue did with a submitted tx.
    enum NoWaitAnswer {
        /// Answered without proposing: its recorded result (already applied), `REPLAYED`,
        /// `EXPIRED`, or an error (not the leader, overloaded).
        case decided(Result<TxResult, ConsensusError>)
        /// Appended to the leader's log at this index and term (not yet committed).
        case proposed(UInt64, UInt64)
    }

    /// On the raft queue: answer a tx from the ledger when that is certain (recorded already,
    /// nonce taken — both re-checked at apply), refuse it outside the `ts` window, else propose it.
    private func proposeChecked(_ tx: Tx?, _ bytes: [UInt8], now: Timestamp, precheck: Bool = true) -> NoWaitAnswer {
        guard node.role == .leader else { return .decided(.failure(notLeader())) }
        if precheck, let tx, let prior = try? readLedger.precheck(tx) { return .decided(.success(prior)) }
        if let tx, let r = Tx.windowRejection(tx, now: now) { return .decided(.success(.rejected(r, txID: nil, raftIndex: 0))) }
        do {
            let (index, term) = try node.propose(data: bytes)
            // `bytes` is `tx.encoded`: the canonical encoding of this very tx.
            if let tx { rememberDecoded(index: index, term: term, bytes: bytes, tx: tx) }
            return .proposed(index, term)
        } catch {
            return .decided(.failure(ConsensusError(code: "OVERLOADED", message: "\(error)", leaderHint: node.leader, leaderAddr: nil)))
        }
    }

    func notLeader() -> ConsensusError {
        let leader = node.leader
        let addr = leader.flatMap { l in daemon.knownAddrs(l).first }
        return ConsensusError(code: "NOT_LEADER", message: leader == nil ? "no leader is known right now; retry shortly" : "this node is not the leader",
                              leaderHint: leader, leaderAddr: addr)
    }

    public var leader: String? { roleLock.withLock { cachedLeader } }
    public var isLeader: Bool { roleLock.withLock { cachedRole == .leader } }

    /// Linearizable read barrier: resolves once this node has applied everything committed before the call.
    public func readBarrier(done: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void) {
        queue.async { [self] in
            let id = nextReadID
            nextReadID += 1
            do {
                try node.readIndex(requestID: id)
                reads[id] = done
                process()
            } catch {
                done(.failure(ConsensusError(code: "UNAVAILABLE", message: "read index: \(error)", leaderHint: node.leader, leaderAddr: nil)))
            }
        }
    }

    public func status() -> [String: Any] {
        queue.sync {
            let st = node.status
            var peers: [[String: Any]] = []
            for id in st.conf.members.sorted() where id != selfID {
                var o: [String: Any] = ["peer_id": id, "voter": st.conf.isVoter(id)]
                if let m = node.matchIndex(of: id) { o["match_index"] = m }
                o["dropped"] = links[id]?.dropped ?? 0
                peers.append(o)
            }
            return ["term": st.term, "role": st.role.rawValue, "leader": st.leader ?? "", "commit_index": st.commitIndex,
                    "applied_index": waitLock.withLock { ledgerApplied }, "last_index": st.lastIndex, "snapshot_index": st.snapshotIndex,
                    "voters": st.conf.voters, "learners": st.conf.learners, "peers": peers, "self": selfID]
        }
    }

    /// Admission checks (shape, size, cluster, signature, ts window) for each tx, the signatures
    /// as one batch: a rejection row at its position, or the admitted tx. `parsed[i]`, when
    /// present, is `txs[i]` already parsed.
    func admitAll(_ txs: [[UInt8]], parsed: [JSONDocument?] = []) -> (results: [[String: Any]?], admitted: [(Int, Tx)]) {
        var results = [[String: Any]?](repeating: nil, count: txs.count)
        var admitted: [(Int, Tx)] = []
        for (i, r) in Tx.admit(batch: txs, parsed: parsed, clusterID: daemon.clusterID, now: Timestamp.now()).enumerated() {
            switch r {
            case .success(let tx): admitted.append((i, tx))
            case .failure(let e) where e.code == .expired:
                // Signed and well formed, only too old (or too new) to be admitted: it still goes
                // to the leader's raft queue, which answers a tx already recorded with its original
                // result (a retry after a long outage learns what happened) and rejects anything
                // else EXPIRED there, unproposed (`drain`).
                if let tx = try? Tx.decodeForAdmission(txs[i], parsed: i < parsed.count ? parsed[i] : nil) {
                    admitted.append((i, tx))
                } else {
                    results[i] = TxCodec.rejection(e)
                }
            case .failure(let e): results[i] = TxCodec.rejection(e)
            }
        }
        return (results, admitted)
    }

    /// Propose admitted txs and call `completion` once every one has a result (from the raft queue).
    func proposeAll(_ admitted: [(Int, Tx)], completion: @escaping @Sendable ([IndexedRow]) -> Void) {
        let box = RowCollector(expected: admitted.count, completion: completion)
        for (i, tx) in admitted {
            let txID = tx.txID
            submit(tx) { r in
                switch r {
                case .success(let res): box.add(IndexedRow(index: i, value: TxCodec.json(res)))
                case .failure(let e): box.add(IndexedRow(index: i, value: TxCodec.error(e, txID: txID)))
                }
            }
        }
    }

    /// The write path without async hops: admission on the calling thread, then proposals whose
    /// completions answer directly. Falls back to `submitLocal` (forwarding) on followers.
    func submitFast(_ txs: [[UInt8]], parsed: JSONDocument? = nil, wait: Bool, completion: @escaping @Sendable ([[String: Any]]) -> Void) {
        guard isLeader, wait else {
            let c = self
            Task { completion(await c.submitLocal(txs, allowForward: true, wait: wait)) }
            return
        }
        let (results, admitted) = admitAll(txs, parsed: txs.count == 1 ? [parsed] : [])
        if admitted.isEmpty { completion(results.map { $0 ?? [:] }); return }
        let fixed = RowsBox(results)
        proposeAll(admitted) { rows in
            var r = fixed.value
            for row in rows { r[row.index] = row.value }
            completion(r.map { $0 ?? ["status": "rejected", "code": "INTERNAL"] })
        }
    }

    /// A single tx that arrived during the control API's current poll round.
    struct RoundTx {
        let bytes: [UInt8]
        let parsed: JSONDocument?
        let completion: @Sendable ([[String: Any]]) -> Void
    }
    private let roundLock = NSLock()
    private var roundTxs: [RoundTx] = []

    /// `submitFast` for one tx, deferred to the end of the poll round (`flushRound`). Only for
    /// the server's round thread, which runs `flushRound` after every round.
    func submitInRound(_ bytes: [UInt8], parsed: JSONDocument?, completion: @escaping @Sendable ([[String: Any]]) -> Void) {
        roundLock.withLock { roundTxs.append(RoundTx(bytes: bytes, parsed: parsed, completion: completion)) }
    }

    /// Admit the round's single txs with one batch signature check, then propose each (leader)
    /// or forward them together (follower). Answers are what `submitFast` gives each alone.
    func flushRound() {
        let items = roundLock.withLock { () -> [RoundTx] in
            let p = roundTxs
            roundTxs = []
            return p
        }
        guard !items.isEmpty else { return }
        guard items.count > 1 else {
            for i in items { submitFast([i.bytes], parsed: i.parsed, wait: true, completion: i.completion) }
            return
        }
        guard isLeader else {
            // A follower checks the round's txs as one batch and forwards them to the leader in
            // one exchange (one stream, one batch check there) instead of one stream each.
            let c = self
            let bytes = items.map(\.bytes), completions = items.map(\.completion)
            Task {
                let rows = await c.submitLocal(bytes, allowForward: true)
                for (done, row) in zip(completions, rows) { done([row]) }
            }
            return
        }
        let (results, admitted) = admitAll(items.map(\.bytes), parsed: items.map(\.parsed))
        for (item, row) in zip(items, results) { if let row { item.completion([row]) } }
        for (i, tx) in admitted {
            let item = items[i]
            proposeAll([(0, tx)]) { rows in item.completion([rows.first?.value ?? ["status": "rejected", "code": "INTERNAL"]]) }
        }
    }

    // MARK: follower → leader forwarding over /p2pos/tx/1.0.0

    /// Forward txs to the leader; answers one result object per tx.
    /// `wait: false` asks the leader to answer once each tx is proposed (a leader from before
    /// that field ignores it and waits).
    func forward(_ txs: [[UInt8]], to leader: String, wait: Bool = true) async throws -> [[String: Any]] {
        var req: [String: Any] = ["txs": txs.map { String(decoding: $0, as: UTF8.self) }]
        if !wait { req["wait"] = false }
        let reply = try await daemon.exchange(peer: leader, proto: P2POSProtocol.tx,
                                              request: try JSONSerialization.data(withJSONObject: req), maxReply: 16 << 20, timeout: 30)
        guard let obj = try JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any], let rs = obj["results"] as? [[String: Any]] else {
            throw P2POSError("BAD_REPLY", "leader sent an unreadable answer")
        }
        return rs
    }

    func serveTxForward(_ s: Libp2pStream) async {
        let peer = s.remotePeer.base58
        guard daemon.isMember(peer) else { s.reset(); return }
        guard let req = await daemon.readRequest(s, max: 16 << 20),
              let obj = try? JSONSerialization.jsonObject(with: Data(req)) as? [String: Any],
              let txs = obj["txs"] as? [String] else { s.reset(); return }
        let wait = (obj["wait"] as? Bool) ?? (obj["wait"] as? NSNumber)?.boolValue ?? true
        let results = await submitLocal(txs.map { Array($0.utf8) }, allowForward: false, wait: wait)
        await daemon.reply(s, ["results": results])
    }

    /// Admit and propose txs here (leader) or forward them (follower). One result object per tx.
    public func submitLocal(_ txs: [[UInt8]], allowForward: Bool, wait: Bool = true) async -> [[String: Any]] {
        var (results, admitted) = admitAll(txs)
        if !admitted.isEmpty {
            if isLeader && !wait {
                // Answered once each tx is proposed (`accepted`) or decided without a proposal: a
                // tx already recorded gets its original result, a reused nonce `REPLAYED`, as
                // when waiting. Looked up first on the apply queue's own connection, which sees
                // what was applied but not yet committed to ledger.db (up to a commit interval,
                // which the raft queue's connection does not see; a wait=true submission
                // learns the same from apply).
                // In blocks of 256, so a large batch does not hold up apply.
                let ledger = self.ledger
                var known: [Int: TxResult] = [:]
                for from in stride(from: 0, to: admitted.count, by: 256) {
                    let part = Array(admitted[from..<min(admitted.count, from + 256)])
                    let found: [Int: TxResult] = await withCheckedContinuation { cont in
                        applyQueue.async {
                            var k: [Int: TxResult] = [:]
                            for (i, tx) in part { if let r = try? ledger.precheck(tx) { k[i] = r } }
                            cont.resume(returning: k)
                        }
                    }
                    known.merge(found) { a, _ in a }
                }
                for (i, r) in known { results[i] = TxCodec.json(r) }
                let rest = admitted.filter { known[$0.0] == nil }
                let rows: [IndexedRow] = rest.isEmpty ? [] : await withCheckedContinuation { cont in
                    let box = RowCollector(expected: rest.count) { cont.resume(returning: $0) }
                    enqueue(rest.map { (i, tx) in
                        Input.proposalNoWait(tx) { answer in
                            switch answer {
                            case .proposed: box.add(IndexedRow(index: i, value: ["status": "accepted", "tx_id": tx.txID]))
                            case .decided(.success(let res)): box.add(IndexedRow(index: i, value: TxCodec.json(res)))
                            case .decided(.failure(let e)): box.add(IndexedRow(index: i, value: TxCodec.error(e, txID: tx.txID)))
                            }
                        }
                    })
                }
                for row in rows { results[row.index] = row.value }
            } else if isLeader {
                let rows: [IndexedRow] = await withCheckedContinuation { cont in
                    proposeAll(admitted) { cont.resume(returning: $0) }
                }
                for row in rows { results[row.index] = row.value }
            } else if allowForward, let leader = leader {
                do {
                    let rs = try await forward(admitted.map { $0.1.encoded }, to: leader, wait: wait)
                    for (k, (i, _)) in admitted.enumerated() { results[i] = k < rs.count ? rs[k] : ["status": "rejected", "code": "UNAVAILABLE"] }
                } catch {
                    let e = notLeader()
                    for (i, tx) in admitted {
                        var o = TxCodec.error(e, txID: tx.txID)
                        o["message"] = "forwarding to the leader failed: \(error)"
                        results[i] = o
                    }
                }
            } else {
                let e = notLeader()
                for (i, tx) in admitted { results[i] = TxCodec.error(e, txID: tx.txID) }
            }
        }
        return results.map { $0 ?? ["status": "rejected", "code": "INTERNAL"] }
    }
}

/// Counts completions and reports all rows once the last arrives.
final class RowCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var rows: [IndexedRow] = []
    private let expected: Int
    private let completion: @Sendable ([IndexedRow]) -> Void
    init(expected: Int, completion: @escaping @Sendable ([IndexedRow]) -> Void) {
        self.expected = expected
        self.completion = completion
    }
    func add(_ r: IndexedRow) {
        let done: [IndexedRow]? = lock.withLock {
            rows.append(r)
            return rows.count == expected ? rows : nil
        }
        if let done { completion(done) }
    }
}

/// Partial results carried into a completion closure.
struct RowsBox: @unchecked Sendable {
    let value: [[String: Any]?]
    init(_ v: [[String: Any]?]) { value = v }
}

/// One result row with its position (crosses task boundaries; built by one task).
struct IndexedRow: @unchecked Sendable { let index: Int; let value: [String: Any] }

/// JSON shapes of tx results on the API and the forwarding protocol.
enum TxCodec {
    static func json(_ r: TxResult) -> [String: Any] {
        var o: [String: Any] = ["status": r.status.rawValue, "raft_index": r.raftIndex]
        if let id = r.txID { o["tx_id"] = id }
        if let c = r.code { o["code"] = c.rawValue }
        if !r.message.isEmpty { o["message"] = r.message }
        if let s = r.eventSeq { o["event_seq"] = s }
        if r.duplicate { o["duplicate"] = true }
        return o
    }

    /// A tx refused before consensus (admission): no tx_id, no raft index.
    static func rejection(_ r: TxRejection) -> [String: Any] {
        ["status": "rejected", "code": r.code.rawValue, "message": r.message]
    }

    static func error(_ e: ConsensusError, txID: String) -> [String: Any] {
        var o: [String: Any] = ["status": "error", "code": e.code, "message": e.message, "tx_id": txID]
        if let l = e.leaderHint { o["leader"] = l }
        if let a = e.leaderAddr { o["leader_addr"] = a }
        return o
    }
}

/// Bodies up to this size that hold one tx are admitted on the control API's own thread.
enum ControlServerInline {
    static let txBytes = 8 * 1024
    /// Where batches (and large single txs) are parsed and admitted.
    static let batchQueue = DispatchQueue(label: "p2pos.tx-batches", qos: .utility)
}

extension Consensus {
    /// Register the tx, raft and ledger query routes; they answer 503 until the node has a cluster.
    static func registerRoutes(_ r: Router, daemon: Daemon) {
        r.addRoundEndHook { [daemon] in daemon.consensus?.flushRound() }
        r.addInlineCallback("POST", "/v1/p2p/tx") { [daemon] req, responder in
            do {
                try txRoute(daemon: daemon, req: req, responder: responder)
            } catch {
                _ = responder.complete(Router.errorResponse(error))
            }
        }
        @Sendable func txRoute(daemon: Daemon, req: HTTPRequest, responder: HTTPResponder) throws {
            let c = try daemon.requireConsensus()
            guard daemon.state == .healthy else {
                throw HTTPError(status: 503, code: "NOT_HEALTHY", message: "node is \(daemon.state.rawValue); writes need a healthy cluster")
            }
            let body = req.body
            guard !body.isEmpty else { throw HTTPError(status: 400, code: "MALFORMED", message: "empty body; send one tx or {\"txs\":[…]}") }
            // Parsed once: with the tx's own (stricter) limits when it fits them — the common case,
            // one tx, then reuses the value for admission — otherwise with the request's limits.
            // This route runs on the control API's poll thread, which must stay free for everyone
            // else: only a small single tx (one parse of a few KiB, one signature check) is
            // admitted here. A batch, or anything larger, is parsed and admitted on a worker.
            let small = body.count <= ControlServerInline.txBytes
            let strict = small ? parseStrict(body) : nil
            if let one = strict, one.value["txs"] == nil {
                // On the server's thread, single txs wait for the end of the poll round, so all
                // that arrived together have their signatures checked as one batch.
                if r.onRoundThread && req.queryValue("wait") != "false" {
                    c.submitInRound(req.body, parsed: one) { results in _ = responder.complete(singleTxResponse(results[0])) }
                } else {
                    submitOne(c, req: req, tx: one, responder: responder)
                }
                return
            }
            // One serial queue: batches take turns on at most one core, and the shared global
            // pool (where the other routes run) stays free.
            ControlServerInline.batchQueue.async {
                do { try batchRoute(c, req: req, strict: small ? strict : parseStrict(body), responder: responder) } catch {
                    _ = responder.complete(Router.errorResponse(error))
                }
            }
        }
        /// The body parsed with the tx's own (stricter) limits, when it fits and parses that way.
        @Sendable func parseStrict(_ body: [UInt8]) -> JSONDocument? {
            body.count <= Tx.maxBytes ? try? JSONDocument(body, limits: Tx.parseLimits) : nil
        }
        @Sendable func submitOne(_ c: Consensus, req: HTTPRequest, tx one: JSONDocument, responder: HTTPResponder) {
            c.submitFast([req.body], parsed: one, wait: req.queryValue("wait") != "false") { results in
                _ = responder.complete(singleTxResponse(results[0]))
            }
        }
        @Sendable func batchRoute(_ c: Consensus, req: HTTPRequest, strict: JSONDocument?, responder: HTTPResponder) throws {
            let body = req.body
            if let one = strict, one.value["txs"] == nil { submitOne(c, req: req, tx: one, responder: responder); return }
            let parsed: JSONValue
            if let strict { parsed = strict.value } else {
                do { parsed = try JSONValue.parse(body, limits: JSONLimits(maxBytes: 16 << 20, maxDepth: 32)) } catch {
                    throw HTTPError(status: 400, code: "MALFORMED", message: "\(error)")
                }
            }
            var txs: [[UInt8]] = []
            var batch = false
            if let arr = parsed["txs"]?.arrayValue {
                batch = true
                guard arr.count <= 10_000 else { throw HTTPError(status: 413, code: "TOO_MANY", message: "at most 10000 txs per request") }
                txs = arr.map { $0.compactString }.map { Array($0.utf8) }
            } else {
                txs = [body]
            }
            let isBatch = batch
            c.submitFast(txs, wait: req.queryValue("wait") != "false") { results in
                if isBatch { _ = responder.complete(.jsonObject(["results": results])); return }
                _ = responder.complete(singleTxResponse(results[0]))
            }
        }
        @Sendable func singleTxResponse(_ one: [String: Any]) -> HTTPResponse {
            let status: Int
            switch (one["status"] as? String, one["code"] as? String) {
            case ("applied", _): status = 200
            case ("accepted", _): status = 202
            case ("rejected", _): status = 422
            case (_, "NOT_LEADER"): status = 503
            case (_, "OVERLOADED"): status = 429
            default: status = 503
            }
            // An error status carries the contract's error object too (SPEC §10), beside the
            // result fields that `tx submit` and scripts read.
            var body = one
            if status >= 400 {
                body["error"] = ["code": one["code"] as? String ?? "UNAVAILABLE", "message": one["message"] as? String ?? ""]
            }
            return .jsonObject(body, status: status)
        }
        r.get("/v1/p2p/raft") { [daemon] _ in .jsonObject(try daemon.requireConsensus().status()) }
        if ProcessInfo.processInfo.environment["P2POS_BENCH"] == "1" {
            r.addInlineCallback("POST", "/v1/bench/propose") { [daemon] req, responder in
                guard let c = daemon.consensus else { _ = responder.complete(.error(status: 503, code: "UNAVAILABLE", message: "no cluster")); return }
                c.proposeRaw(req.body) { ok in
                    _ = responder.complete(ok ? .jsonObject(["ok": true]) : .error(status: 503, code: "NOT_COMMITTED", message: "not leader or not committed"))
                }
            }
        }
        func query(_ pattern: String, _ body: @escaping @Sendable (Ledger, HTTPRequest) throws -> JSONValue?) {
            r.addTask("GET", pattern) { [daemon] req in
                let c = try daemon.requireConsensus()
                if req.queryValue("consistency") == "strong" {
                    let res: Result<UInt64, ConsensusError> = await withCheckedContinuation { cont in
                        c.readBarrier { cont.resume(returning: $0) }
                    }
                    if case .failure(let e) = res {
                        throw HTTPError(status: 503, code: e.code, message: e.message + (e.leaderHint.map { " (leader \($0))" } ?? ""))
                    }
                } else if let c = req.queryValue("consistency"), c != "local" {
                    throw HTTPError(status: 400, code: "MALFORMED", message: "consistency must be local or strong")
                }
                guard let v = try c.onApplyQueue({ try body(c.ledger, req) }) else {
                    throw HTTPError(status: 404, code: "NOT_FOUND", message: "no such object")
                }
                return .text(v.prettyString + "\n", contentType: "application/json")
            }
        }
        query("/v1/p2p/stats") { l, _ in try l.stats() }
        query("/v1/p2p/sessions/{id}") { l, q in try l.session(id: q.param("id") ?? "") }
        query("/v1/p2p/sessions/{id}/participants") { l, q in try l.participants(sessionID: q.param("id") ?? "") }
        query("/v1/p2p/sessions/{id}/steps/open") { l, q in try l.openSteps(sessionID: q.param("id") ?? "") }
        query("/v1/p2p/sessions/{id}/events") { l, q in
            // A cursor or page size that does not parse is an error, not page 1: a client paging
            // with a bad cursor would otherwise loop over the same events.
            func integer(_ name: String, _ range: ClosedRange<Int64>, default d: Int64) throws -> Int64 {
                guard let text = q.queryValue(name) else { return d }
                guard let v = Int64(text), range.contains(v) else {
                    throw HTTPError(status: 400, code: "MALFORMED", message: "\(name) must be an integer \(range.lowerBound)…\(range.upperBound)")
                }
                return v
            }
            let after = try integer("after", 0...Int64.max, default: 0)
            let limit = Int(try integer("limit", 1...1000, default: 100))
            return try l.events(sessionID: q.param("id"), after: after, limit: limit)
        }
        query("/v1/p2p/steps/{id}") { l, q in try l.step(id: q.param("id") ?? "") }
        query("/v1/p2p/steps/{id}/artifacts") { l, q in try l.artifacts(stepID: q.param("id") ?? "") }
    }
}
