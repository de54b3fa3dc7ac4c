// swift-tools-version:6.0
// p2pos — one binary for a small, self-governing peer-to-peer cluster.
// No Swift package dependencies: only the toolchain and system C libraries.
import PackageDescription

let strict: [SwiftSetting] = []

let package = Package(
    name: "p2pos",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "p2pos", targets: ["p2pos"]),
    ],
    targets: [
        // System C libraries.
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CResolv"),

        // Leaves.
        .target(name: "Support", swiftSettings: strict),
        .target(name: "Wire", dependencies: ["Support"], swiftSettings: strict),
        // Optimized in every configuration: the Ed25519 field arithmetic is ~100x slower at
        // -Onone, which would make every test that submits txs to a debug node crawl.
        .target(name: "Identity", dependencies: ["CSodium", "Wire", "Support"], swiftSettings: strict + [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .target(name: "Storage", dependencies: ["CSQLite", "Support"], swiftSettings: strict),

        // Layers.
        .target(name: "Libp2p", dependencies: ["CSodium", "Identity", "Wire", "Support"], swiftSettings: strict),
        .target(name: "Membership", dependencies: ["Identity", "Wire", "Support"], swiftSettings: strict),
        .target(name: "Raft", dependencies: [], swiftSettings: strict),
        .target(name: "RaftStorage", dependencies: ["Raft", "Storage", "Identity", "Support"], swiftSettings: strict),
        .target(name: "Ledger", dependencies: ["Identity", "Wire", "Storage", "Support"], swiftSettings: strict),
        .target(name: "DNS", dependencies: ["CResolv", "Wire", "Support"], swiftSettings: strict),
        .target(name: "ControlAPI", dependencies: ["Wire", "Support"], swiftSettings: strict),
        .target(name: "Node", dependencies: ["Libp2p", "Membership", "Raft", "RaftStorage", "Ledger", "DNS", "ControlAPI", "Storage", "Identity", "Wire", "Support"], swiftSettings: strict),
        .target(name: "P2POSCLI", dependencies: ["Node", "Libp2p", "Membership", "Ledger", "DNS", "ControlAPI", "Storage", "Identity", "Wire", "Support"], swiftSettings: strict),
        .executableTarget(name: "p2pos", dependencies: ["P2POSCLI"], swiftSettings: strict),

        // libFuzzer targets, one per decoder (docs/fuzzing.md; scripts/fuzz NAME).
        .target(name: "FuzzSupport", path: "Fuzz/Support"),
        .executableTarget(name: "fuzz-multiaddr", dependencies: ["Wire", "FuzzSupport"], path: "Fuzz/multiaddr"),
        .executableTarget(name: "fuzz-protobuf", dependencies: ["Wire", "FuzzSupport"], path: "Fuzz/protobuf"),
        .executableTarget(name: "fuzz-multistream", dependencies: ["Libp2p", "FuzzSupport"], path: "Fuzz/multistream"),
        .executableTarget(name: "fuzz-noise", dependencies: ["Libp2p", "FuzzSupport"], path: "Fuzz/noise"),
        .executableTarget(name: "fuzz-yamux", dependencies: ["Libp2p", "FuzzSupport"], path: "Fuzz/yamux"),
        .executableTarget(name: "fuzz-identify", dependencies: ["Libp2p", "FuzzSupport"], path: "Fuzz/identify"),
        .executableTarget(name: "fuzz-json", dependencies: ["Wire", "FuzzSupport"], path: "Fuzz/json"),
        .executableTarget(name: "fuzz-http", dependencies: ["ControlAPI", "FuzzSupport"], path: "Fuzz/http"),
        .executableTarget(name: "fuzz-raft", dependencies: ["Raft", "FuzzSupport"], path: "Fuzz/raft"),
        .executableTarget(name: "fuzz-tx", dependencies: ["Ledger", "FuzzSupport"], path: "Fuzz/tx"),
        .executableTarget(name: "fuzz-snapshot", dependencies: ["Membership", "FuzzSupport"], path: "Fuzz/snapshot"),

        // Tests.
        .testTarget(name: "WireTests", dependencies: ["Wire", "Support"]),
        .testTarget(name: "IdentityTests", dependencies: ["Identity", "Wire"]),
        .testTarget(name: "StorageTests", dependencies: ["Storage"]),
        .testTarget(name: "Libp2pTests", dependencies: ["Libp2p", "Identity", "Wire"]),
        .testTarget(name: "MembershipTests", dependencies: ["Membership", "Identity"]),
        .testTarget(name: "RaftTests", dependencies: ["Raft", "RaftStorage", "Storage", "Identity", "Support"]),
        .testTarget(name: "LedgerTests", dependencies: ["Ledger", "Identity", "Storage", "Wire", "Support"]),
        .testTarget(name: "DNSTests", dependencies: ["DNS"]),
        .testTarget(name: "ControlAPITests", dependencies: ["ControlAPI", "Support"]),
        .testTarget(name: "CLITests", dependencies: ["P2POSCLI", "Node", "Raft", "RaftStorage", "Support"]),
    ],
    swiftLanguageModes: [.v6]
)
