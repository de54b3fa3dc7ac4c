// A deterministic cluster simulator: runs real RaftNode instances over a faulty network
// with crashes, partitions and membership changes, and checks Raft's safety properties
// after every step. Everything derives from one seed, so any failure replays exactly.
import Foundation
import Raft
import RaftStorage
import Storage
import Support

/// Seeded PRNG for the simulator (independent of the core's).
struct SimRNG {
    private var base: SplitMix64
    init(seed: UInt64) { base = SplitMix64(seed: seed &* 0x2545_F491_4F6C_DD1D &+ 0x1234_5678) }
    mutating func next() -> UInt64 { base.next() }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
    mutating func chance(_ p: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < p }
}

struct SimFailure: Error, CustomStringConvertible {
    var description: String
}

/// What is on one simulated node's disk, plus its state machine.
struct SimDisk {
    var hard = HardState()
    var snapshot: Snapshot?
    var snapHash: UInt64 = 0
    var entries: [Entry] = []
    /// Rolling hash of the log prefix ending at each entry.
    var hashes: [UInt64] = []
}

final class SimNode {
    let id: NodeID
    var raft: RaftNode?
    var disk = SimDisk()
    /// State machine: proposal IDs in apply order.
    var applied: [UInt64] = []
    var appliedIndex: UInt64 = 0
    var lastTicked = 0
    /// Optional real SQLite storage mirroring `disk` (closed on crash, reopened on restart).
    var store: RaftStorage?
    var storePath: String?
    /// Incoming snapshot bytes staged by the "host" (`stageSnapshots`); lost in a crash.
    var staging: [UInt8]?

    init(id: NodeID) { self.id = id }
}

struct InFlight {
    var at: Int
    var msg: RaftMessage
}

/// Options for one simulated run.
struct SimOptions {
    var seed: UInt64
    var nodes: Int          // founding voters
    var spares: Int = 1     // nodes that may join through membership changes
    var steps: Int
    var lossRate = 0.05
    var dupRate = 0.03
    var maxDelay = 12
    var tickEvery = 4
    var codecEvery = 7      // round-trip every Nth delivered message through the codec
    var faultScale = 1      // multiplies crash, partition and link-cut rates
    var sqliteDir: String?  // when set, every node also persists through RaftStorage here
    var stepBetweenReadyAndAdvance = true
    var stageSnapshots = false  // nodes hand incoming snapshot chunks to the host (stageIncomingSnapshots)
}

final class Simulator {
    let opt: SimOptions
    var rng: SimRNG
    var nodes: [SimNode] = []
    var ids: [NodeID] = []
    var now = 0
    var net: [InFlight] = []
    /// Partition group per node index (equal numbers can talk).
    var group: [Int]
    /// One-way link cuts, encoded from * 64 + to.
    var oneWay: Set<Int> = []
    var trace: [String] = []
    var nextProposal: UInt64 = 1
    /// Proposal ID -> (index, term) returned by propose.
    var proposed: [UInt64: (UInt64, UInt64)] = [:]
    var acked: Set<UInt64> = []
    // Global knowledge for the safety checks.
    var leaderOfTerm: [UInt64: NodeID] = [:]
    var committedTerm: [UInt64: UInt64] = [:]
    var committedEntry: [UInt64: Entry] = [:]
    var maxCommitted: UInt64 = 0
    var prefixHash: [UInt64: [UInt64: UInt64]] = [:]   // index -> term -> hash
    var canon: [UInt64] = []
    var pendingReads: [UInt64: (node: Int, minIndex: UInt64)] = [:]
    var nextRead: UInt64 = 1
    var readsServed = 0
    var delivered = 0
    var lastLeaders: [NodeID: UInt64] = [:]
    var confChanges = 0
    var snapshotsInstalled = 0
    var storageWrites = 0
    var storageReopens = 0

    init(_ opt: SimOptions) {
        self.opt = opt
        rng = SimRNG(seed: opt.seed)
        let total = opt.nodes + opt.spares
        group = Array(repeating: 0, count: total)
        for i in 0..<total {
            let id = "n\(i + 1)"
            ids.append(id)
            nodes.append(SimNode(id: id))
        }
        for i in 0..<total { start(i) }
    }

    func log(_ s: @autoclosure () -> String) {
        trace.append("[\(now)] " + s())
        if trace.count > 400 { trace.removeFirst(200) }
    }

    func config(for id: NodeID) -> RaftConfig {
        var c = RaftConfig(id: id, randomSeed: rng.next())
        c.electionTick = 10
        c.heartbeatTick = 2
        c.maxInflightAppends = 4
        c.maxEntriesPerAppend = 3
        c.maxBytesPerAppend = 64
        c.snapshotChunkBytes = 24
        c.maxApplyEntries = 5
        c.maxUncommittedEntries = 200
        c.stageIncomingSnapshots = opt.stageSnapshots
        return c
    }

    /// Starts (or restarts) node `i` from its disk. Founders always pass the founding voter
    /// list, which only takes effect while their storage is empty.
    func start(_ i: Int) {
        let n = nodes[i]
        let bootstrap = i < opt.nodes ? Array(ids.prefix(opt.nodes)) : []
        var state = RaftInitialState(hardState: n.disk.hard, snapshot: n.disk.snapshot, entries: n.disk.entries)
        if let dir = opt.sqliteDir {
            // Reopen the node's database and check it holds exactly what the model disk holds.
            let path = n.storePath ?? "\(dir)/\(n.id).db"
            n.storePath = path
            n.store = nil
            do {
                let st = try RaftStorage(db: SQLiteDB(path: path, synchronous: "OFF"), syncLog: false, segmentBytes: 4096)
                let loaded = try st.load()
                if loaded.hardState != state.hardState || loaded.snapshot != state.snapshot || loaded.entries != state.entries {
                    fail("RaftStorage of \(n.id) differs from the model disk after reopen")
                }
                state = loaded
                n.store = st
                storageReopens += 1
            } catch {
                fail("RaftStorage of \(n.id): \(error)")
            }
        }
        do {
            n.raft = try RaftNode(config: config(for: n.id), state: state, bootstrapVoters: bootstrap)
        } catch {
            fatalError("restart of \(n.id) failed: \(error)")
        }
        // The state machine restarts from the snapshot on disk.
        n.applied = decodeIDs(n.disk.snapshot?.data.array ?? [])
        n.appliedIndex = n.disk.snapshot?.metadata.index ?? 0
        n.lastTicked = now
        n.staging = nil
    }

    // MARK: - Running

    func run() throws {
        for _ in 0..<opt.steps {
            try step(faults: true)
        }
        try settle()
    }

    func step(faults: Bool) throws {
        now += 1
        if faults { try randomEvent() }
        deliver(faults: faults)
        for (i, n) in nodes.enumerated() where n.raft != nil {
            if (now + i) % opt.tickEvery == 0 { n.raft!.tick() }
        }
        for i in nodes.indices where nodes[i].raft != nil {
            if !faults || rng.chance(0.75) { try processReady(i) }
        }
        try checkInvariants()
    }

    func randomEvent() throws {
        let r = rng.below(1000)
        let k = opt.faultScale
        // Cumulative thresholds (per mille) for each kind of event.
        let crashT = 150 + 5 * k, restartT = crashT + 15, partT = restartT + 3 * k, healT = partT + 7
        let cutT = healT + 2 * k, confT = cutT + 6, compactT = confT + 6, readT = compactT + 10, transferT = readT + 2
        if r < 150 {
            propose()
        } else if r < crashT {
            let up = nodes.indices.filter { nodes[$0].raft != nil }
            if let i = up.randomElement(using: &rng) { crash(i) }
        } else if r < restartT {
            let down = nodes.indices.filter { nodes[$0].raft == nil }
            if let i = down.randomElement(using: &rng) { log("restart \(ids[i])"); start(i) }
        } else if r < partT {
            for i in group.indices { group[i] = rng.below(2) }
            log("partition \(group)")
        } else if r < healT {
            if group.contains(where: { $0 != 0 }) || !oneWay.isEmpty { log("heal") }
            for i in group.indices { group[i] = 0 }
            oneWay = []
        } else if r < cutT {
            // A one-way link failure: from can no longer reach to, but to still reaches from.
            let a = rng.below(ids.count), b = rng.below(ids.count)
            if a != b { oneWay.insert(a * 64 + b); log("cut \(ids[a]) -> \(ids[b])") }
        } else if r < confT {
            confChange()
        } else if r < compactT {
            compact()
        } else if r < readT {
            read()
        } else if r < transferT {
            transfer()
        }
    }

    func crash(_ i: Int) {
        log("crash \(ids[i])")
        nodes[i].raft = nil
        nodes[i].store = nil
        net.removeAll { $0.msg.to == ids[i] }
    }

    func leaderIndex() -> Int? {
        var best: Int?
        for (i, n) in nodes.enumerated() {
            if let r = n.raft, r.role == .leader, best == nil || r.term > nodes[best!].raft!.term { best = i }
        }
        return best
    }

    @discardableResult
    func propose() -> Bool {
        let up = nodes.indices.filter { nodes[$0].raft != nil }
        guard let i = (rng.chance(0.8) ? leaderIndex() : nil) ?? up.randomElement(using: &rng) else { return false }
        let pid = nextProposal
        var bytes: [UInt8] = []
        var v = pid
        for _ in 0..<8 { bytes.append(UInt8(v & 0xFF)); v >>= 8 }
        do {
            let (idx, t) = try nodes[i].raft!.propose(data: bytes)
            nextProposal += 1
            proposed[pid] = (idx, t)
            return true
        } catch {
            return false
        }
    }

    func confChange() {
        guard let li = leaderIndex() else { return }
        let r = nodes[li].raft!
        let conf = r.conf
        let nonMembers = ids.filter { !conf.isMember($0) }
        var options: [ConfChange] = []
        for id in nonMembers { options.append(.addLearner(id)); options.append(.addVoter(id)) }
        for id in conf.learners { options.append(.promoteLearner(id)); options.append(.removeNode(id)) }
        if conf.voters.count > 2 { for id in conf.voters { options.append(.removeNode(id)) } }
        guard let c = options.randomElement(using: &rng) else { return }
        do {
            try nodes[li].raft!.proposeConfChange(c)
            confChanges += 1
            log("\(ids[li]) proposes \(c)")
        } catch {}
    }

    func compact() {
        let cands = nodes.indices.filter { nodes[$0].raft != nil }
        guard let i = cands.randomElement(using: &rng) else { return }
        let n = nodes[i]
        guard n.appliedIndex > n.raft!.snapshotIndex + 3 else { return }
        let data = encodeIDs(n.applied)
        do {
            let meta = try n.raft!.compact(upTo: n.appliedIndex, snapshotData: data)
            // Disk: store snapshot, drop covered entries.
            let keepFrom = Int(meta.index - (n.disk.snapshot?.metadata.index ?? 0))
            n.disk.snapHash = n.disk.hashes[keepFrom - 1]
            n.disk.entries.removeFirst(keepFrom)
            n.disk.hashes.removeFirst(keepFrom)
            n.disk.snapshot = Snapshot(metadata: meta, data: data)
            try n.store?.compact(snapshot: meta, data: data)
            log("\(n.id) compacts to \(meta.index)")
        } catch {
            fail("compact failed on \(n.id): \(error)")
        }
    }

    func read() {
        let up = nodes.indices.filter { nodes[$0].raft != nil }
        guard let i = up.randomElement(using: &rng) else { return }
        let rid = nextRead
        // Anything acknowledged before the read starts must be visible at the read index.
        let minIndex = acked.compactMap { proposed[$0]?.0 }.max() ?? 0
        do {
            try nodes[i].raft!.readIndex(requestID: rid)
            nextRead += 1
            pendingReads[rid] = (i, minIndex)
        } catch {}
    }

    func transfer() {
        guard let li = leaderIndex() else { return }
        let voters = nodes[li].raft!.conf.voters.filter { $0 != ids[li] }
        guard let t = voters.randomElement(using: &rng) else { return }
        log("\(ids[li]) transfers leadership to \(t)")
        try? nodes[li].raft!.transferLeadership(to: t)
    }

    func deliver(faults: Bool) {
        guard !net.isEmpty else { return }
        var due: [RaftMessage] = []
        var keep: [InFlight] = []
        keep.reserveCapacity(net.count)
        for f in net { if f.at <= now { due.append(f.msg) } else { keep.append(f) } }
        net = keep
        if due.count > 1 { due.shuffle(using: &rng) }
        for var m in due {
            guard let ti = ids.firstIndex(of: m.to), let fi = ids.firstIndex(of: m.from) else { continue }
            guard nodes[ti].raft != nil, group[ti] == group[fi], !oneWay.contains(fi * 64 + ti) else { continue }
            if faults && rng.chance(opt.lossRate) { continue }
            if faults && rng.chance(opt.dupRate) { send(m) }
            delivered += 1
            if delivered % opt.codecEvery == 0 {
                let enc = m.encode()
                guard let dec = try? RaftMessage.decode(enc), dec == m else {
                    fail("codec round trip changed \(m)")
                    continue
                }
                m = dec
            }
            nodes[ti].raft!.step(m)
        }
    }

    func send(_ m: RaftMessage) {
        let delay = rng.chance(0.02) ? opt.maxDelay * 4 : 1 + rng.below(opt.maxDelay)
        net.append(InFlight(at: now + delay, msg: m))
    }

    var failure: String?
    func fail(_ s: String) { if failure == nil { failure = s } }

    // MARK: - Ready handling (durability contract: persist, then send, then apply)

    func processReady(_ i: Int) throws {
        let n = nodes[i]
        guard n.raft!.hasReady else { return }
        let handed = n.raft!.ready()
        var rd = handed
        // Sometimes a message arrives between ready() and advance() (a driver persisting
        // asynchronously); its effects must wait for the next Ready.
        if opt.stepBetweenReadyAndAdvance && rng.chance(0.15),
           let k = net.firstIndex(where: { $0.msg.to == n.id && $0.at <= now + 2 }) {
            let m = net.remove(at: k).msg
            if let fi = ids.firstIndex(of: m.from), group[fi] == group[i], !oneWay.contains(fi * 64 + i) {
                n.raft!.step(m)
            }
        }
        // 0. stage incoming snapshot chunks; a staged snapshot comes back with its bytes
        for c in rd.snapshotChunks {
            if c.offset == 0 { n.staging = [] }
            guard let have = n.staging, UInt64(have.count) == c.offset else {
                throw SimFailure(description: "\(n.id): snapshot chunk at \(c.offset) out of order (staged \(n.staging?.count ?? -1))")
            }
            n.staging = have + c.data
        }
        if var s = rd.snapshot, opt.stageSnapshots {
            guard s.data.isEmpty, n.raft!.snapshotDataPending, let bytes = n.staging else {
                throw SimFailure(description: "\(n.id): staged snapshot \(s.metadata.index) without staged bytes")
            }
            s.data = SnapshotData(bytes)
            guard n.raft!.replaceSnapshotData(index: s.metadata.index, with: s.data) else {
                throw SimFailure(description: "\(n.id): staged snapshot \(s.metadata.index) of \(bytes.count) bytes refused")
            }
            n.staging = nil
            rd.snapshot = s
        }
        // 1. persist
        if let s = rd.snapshot {
            n.disk.snapshot = s
            n.disk.entries = []
            n.disk.hashes = []
            n.disk.snapHash = prefixHash[s.metadata.index]?[s.metadata.term] ?? 0
        }
        if let first = rd.entries.first {
            let snapIdx = n.disk.snapshot?.metadata.index ?? 0
            let diskLast = snapIdx + UInt64(n.disk.entries.count)
            guard first.index > snapIdx, first.index <= diskLast + 1 else {
                throw SimFailure(description: "\(n.id): Ready entries start at \(first.index), disk has (\(snapIdx), \(diskLast)]")
            }
            let keep = Int(first.index - snapIdx - 1)
            n.disk.entries.removeSubrange(keep...)
            n.disk.hashes.removeSubrange(keep...)
            var h = keep == 0 ? n.disk.snapHash : n.disk.hashes[keep - 1]
            for e in rd.entries {
                h = mix(h, e)
                if let prev = prefixHash[e.index]?[e.term], prev != h {
                    throw SimFailure(description: "LOG MATCHING violated: \(n.id) entry \(e.index)/\(e.term) has a different prefix than another node")
                }
                prefixHash[e.index, default: [:]][e.term] = h
                n.disk.entries.append(e)
                n.disk.hashes.append(h)
            }
        }
        if let hs = rd.hardState {
            if hs.term < n.disk.hard.term { throw SimFailure(description: "\(n.id): term went backwards on disk") }
            if hs.term == n.disk.hard.term, let v = n.disk.hard.vote, hs.vote != v {
                throw SimFailure(description: "\(n.id): vote changed within term \(hs.term)")
            }
            n.disk.hard = hs
        }
        if n.store != nil && rd.mustPersist { storageWrites += 1 }
        do { try n.store?.save(rd) } catch { throw SimFailure(description: "RaftStorage save on \(n.id): \(error)") }
        // 2. send
        for m in rd.messages { send(m) }
        // 3. apply
        if let s = rd.snapshot {
            let ids = decodeIDs(s.data.array)
            guard ids.count <= canon.count, Array(canon.prefix(ids.count)) == ids else {
                throw SimFailure(description: "STATE MACHINE SAFETY: snapshot at \(s.metadata.index) on \(n.id) is not a prefix of the applied history")
            }
            n.applied = ids
            n.appliedIndex = s.metadata.index
            snapshotsInstalled += 1
            log("\(n.id) installs snapshot \(s.metadata.index)")
        }
        for e in rd.committedEntries {
            guard e.index == n.appliedIndex + 1 else {
                throw SimFailure(description: "\(n.id): applied \(e.index) after \(n.appliedIndex)")
            }
            if let t = committedTerm[e.index] {
                if t != e.term || committedEntry[e.index] != e {
                    throw SimFailure(description: "STATE MACHINE SAFETY: index \(e.index) applied as term \(e.term) on \(n.id), term \(t) elsewhere")
                }
            } else {
                committedTerm[e.index] = e.term
                committedEntry[e.index] = e
                maxCommitted = max(maxCommitted, e.index)
            }
            n.appliedIndex = e.index
            if e.kind == .normal {
                var pid: UInt64 = 0
                for (k, b) in e.data.prefix(8).enumerated() { pid |= UInt64(b) << (8 * UInt64(k)) }
                n.applied.append(pid)
                let c = n.applied.count
                if canon.count >= c {
                    if canon[c - 1] != pid {
                        throw SimFailure(description: "STATE MACHINE SAFETY: \(n.id) applied \(pid) as #\(c), others applied \(canon[c - 1])")
                    }
                } else if canon.count == c - 1 {
                    canon.append(pid)
                } else {
                    throw SimFailure(description: "\(n.id) applied history ahead of canon")
                }
                if let p = proposed[pid], p.0 == e.index { acked.insert(pid) }
            }
        }
        for rs in rd.readStates {
            guard let pr = pendingReads.removeValue(forKey: rs.requestID) else { continue }
            if rs.index < pr.minIndex {
                throw SimFailure(description: "LINEARIZABILITY: read \(rs.requestID) got index \(rs.index) < acknowledged \(pr.minIndex)")
            }
            readsServed += 1
        }
        n.raft!.advance(handed)
    }

    // MARK: - Invariants

    func checkInvariants() throws {
        if let f = failure { throw SimFailure(description: f) }
        for n in nodes {
            guard let r = n.raft, r.role == .leader else { continue }
            if let other = leaderOfTerm[r.term], other != n.id {
                throw SimFailure(description: "ELECTION SAFETY: \(other) and \(n.id) both leaders in term \(r.term)")
            }
            leaderOfTerm[r.term] = n.id
            if lastLeaders[n.id] != r.term {
                lastLeaders[n.id] = r.term
                log("\(n.id) leader term \(r.term) last \(r.lastIndex) commit \(r.commitIndex)")
                // Leader completeness: every committed entry is in the new leader's log.
                if r.lastIndex < maxCommitted {
                    throw SimFailure(description: "LEADER COMPLETENESS: \(n.id) leads term \(r.term) with last \(r.lastIndex) < committed \(maxCommitted)")
                }
                var i = max(r.snapshotIndex + 1, 1)
                while i <= maxCommitted {
                    if let t = committedTerm[i], r.entry(at: i)?.term != t {
                        throw SimFailure(description: "LEADER COMPLETENESS: \(n.id) term \(r.term) lacks committed entry \(i)")
                    }
                    i += 1
                }
            }
        }
    }

    // MARK: - Final convergence

    func settle() throws {
        for i in group.indices { group[i] = 0 }
        oneWay = []
        for i in nodes.indices where nodes[i].raft == nil { start(i) }
        log("settle")
        var finalProposal: UInt64?
        for k in 0..<30_000 {
            try step(faults: false)
            guard k % 20 == 0, let li = leaderIndex() else { continue }
            let l = nodes[li].raft!
            // The final proposal must be committed by the current leader in its own term: only
            // then is its commit index at least everything committed before (a new leader's
            // commit index can lag until it commits an entry of its term).
            if finalProposal == nil || proposed[finalProposal!]!.1 != l.term {
                let pid = nextProposal
                if propose(), proposed[pid]?.1 == l.term { finalProposal = pid }
            }
            guard let fp = finalProposal, acked.contains(fp), proposed[fp]!.1 == l.term,
                  l.commitIndex >= proposed[fp]!.0, l.commitIndex >= maxCommitted else { continue }
            let members = l.conf.members
            let caught = members.allSatisfy { id in
                let n = nodes[ids.firstIndex(of: id)!]
                return n.raft != nil && n.appliedIndex == l.commitIndex
            }
            if caught { return try finalChecks(leader: li) }
        }
        throw SimFailure(description: "LIVENESS: cluster did not converge after healing")
    }

    func finalChecks(leader li: Int) throws {
        let l = nodes[li].raft!
        let ref = nodes[li].applied
        if Set(ref).count != ref.count { throw SimFailure(description: "a proposal was applied twice") }
        for id in l.conf.members {
            let n = nodes[ids.firstIndex(of: id)!]
            if n.applied != ref {
                throw SimFailure(description: "STATE MACHINE SAFETY: \(id) applied \(n.applied.count) ids differing from leader's \(ref.count)")
            }
        }
        let have = Set(ref)
        let missing = acked.filter { !have.contains($0) }.sorted()
        if let a = missing.first {
            let p = proposed[a]!
            throw SimFailure(description: "DURABILITY: \(missing.count) acknowledged proposals missing from the final state, first \(a) proposed at \(p.0)/\(p.1); leader \(ids[li]) applied \(ref.count) ids up to \(nodes[li].appliedIndex), global history has \(canon.count), highest committed index seen \(maxCommitted)")
        }
    }
}

func mix(_ h: UInt64, _ e: Entry) -> UInt64 {
    var x = h ^ 0xCBF2_9CE4_8422_2325
    func f(_ v: UInt64) { x = (x ^ v) &* 0x100_0000_01B3; x ^= x >> 29 }
    f(e.index)
    f(e.term)
    f(UInt64(e.kind.rawValue))
    for b in e.data { f(UInt64(b)) }
    return x
}

func encodeIDs(_ ids: [UInt64]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(ids.count * 8)
    for var v in ids { for _ in 0..<8 { out.append(UInt8(v & 0xFF)); v >>= 8 } }
    return out
}

func decodeIDs(_ b: [UInt8]) -> [UInt64] {
    var out: [UInt64] = []
    var i = 0
    while i + 8 <= b.count {
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(b[i + k]) << (8 * UInt64(k)) }
        out.append(v)
        i += 8
    }
    return out
}

extension SimRNG: RandomNumberGenerator {}
