import Foundation
import Raft
import XCTest

/// Runs the deterministic cluster simulator over many seeds.
///
/// - `RAFT_SIM_SEED=N` reruns exactly one seed and prints its trace.
/// - `RAFT_SIM_SEEDS=N` / `RAFT_SIM_STEPS=M` / `RAFT_SIM_FIRST_SEED=K` size a soak run.
final class RaftSimulatorTests: XCTestCase {
    #if DEBUG
    static let defaultSteps = 1000
    #else
    static let defaultSteps = 2000
    #endif

    static func options(seed: UInt64, steps: Int) -> SimOptions {
        // Even seeds: 3 founding voters + 1 spare; odd seeds: 5 + 1. Every fourth pair of
        // seeds uses a harsher network, every fourth a harsher fault schedule.
        var o = SimOptions(seed: seed, nodes: seed % 2 == 0 ? 3 : 5, spares: 1, steps: steps)
        switch (seed / 2) % 4 {
        case 1:
            o.lossRate = 0.2
            o.dupRate = 0.1
            o.maxDelay = 30
        case 2:
            o.faultScale = 4
        default:
            break
        }
        // Every third seed: followers stage incoming snapshots with the host (as the daemon does).
        o.stageSnapshots = seed % 3 == 0
        return o
    }

    /// A few seeds with every node also persisting through the real SQLite `RaftStorage`;
    /// each restart reopens the database and checks it against the model disk.
    func testSimulatedClustersWithSQLiteStorage() throws {
        let env = ProcessInfo.processInfo.environment
        if env["RAFT_SIM_SEED"] != nil || env["RAFT_SIM_SEEDS"] != nil { return }
        let count = env["RAFT_SIM_SQLITE_SEEDS"].flatMap { UInt64($0) } ?? 12
        let steps = env["RAFT_SIM_STEPS"].flatMap { Int($0) } ?? 600
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("raftsim-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        var writes = 0, reopens = 0
        for seed in UInt64(0)..<count {
            let d = dir.appendingPathComponent("\(seed)")
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            var o = Self.options(seed: 900_000 + seed, steps: steps)
            o.sqliteDir = d.path
            let sim = Simulator(o)
            do {
                try sim.run()
                writes += sim.storageWrites
                reopens += sim.storageReopens
            } catch {
                XCTFail("sqlite seed \(900_000 + seed) failed: \(error)\n" + sim.trace.suffix(30).joined(separator: "\n"))
            }
        }
        print("raft simulator with SQLite: \(writes) transactions, \(reopens) reopens")
        XCTAssertGreaterThan(writes, 1000)
        XCTAssertGreaterThan(reopens, Int(count))
    }

    func testSimulatedClusters() throws {
        let env = ProcessInfo.processInfo.environment
        let steps = env["RAFT_SIM_STEPS"].flatMap { Int($0) } ?? Self.defaultSteps
        if let one = env["RAFT_SIM_SEED"].flatMap({ UInt64($0) }) {
            let sim = Simulator(Self.options(seed: one, steps: steps))
            do {
                try sim.run()
                print(sim.trace.joined(separator: "\n"))
                print("seed \(one): ok, \(sim.acked.count) acked, \(sim.canon.count) applied, \(sim.readsServed) reads, \(sim.confChanges) conf changes, \(sim.snapshotsInstalled) snapshots installed")
            } catch {
                print(sim.trace.joined(separator: "\n"))
                XCTFail("seed \(one): \(error)")
            }
            return
        }
        let seeds = env["RAFT_SIM_SEEDS"].flatMap { UInt64($0) } ?? 1000
        let first = env["RAFT_SIM_FIRST_SEED"].flatMap { UInt64($0) } ?? 0
        var failures = 0
        var acked = 0, reads = 0, confs = 0, snaps = 0
        for seed in first..<(first + seeds) {
            let sim = Simulator(Self.options(seed: seed, steps: steps))
            do {
                try sim.run()
                acked += sim.acked.count
                reads += sim.readsServed
                confs += sim.confChanges
                snaps += sim.snapshotsInstalled
            } catch {
                failures += 1
                let tail = sim.trace.suffix(40).joined(separator: "\n")
                XCTFail("seed \(seed) failed: \(error)\nrerun: RAFT_SIM_SEED=\(seed) RAFT_SIM_STEPS=\(steps) swift test --filter RaftSimulatorTests\nlast events:\n\(tail)")
                if failures >= 3 { break }
            }
        }
        print("raft simulator: \(seeds) seeds x \(steps) steps: \(acked) acked proposals, \(reads) reads, \(confs) conf changes, \(snaps) snapshot installs, \(failures) failures")
        XCTAssertGreaterThan(acked, 0)
    }
}
