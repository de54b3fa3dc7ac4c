import Foundation

/// One option of a command: a flag (no value) or an option taking a value.
public struct OptionSpec: Sendable {
    public let name: String          // "--cluster-id"
    public let short: String?        // "-n"
    public let value: String?        // "ID" (nil: a flag)
    public let help: String
    public let repeatable: Bool
    /// Shell completion hint for the value: "file", "dir", or a fixed word list.
    public let complete: [String]

    public init(_ name: String, short: String? = nil, value: String? = nil, _ help: String, repeatable: Bool = false, complete: [String] = []) {
        self.name = name
        self.short = short
        self.value = value
        self.help = help
        self.repeatable = repeatable
        self.complete = complete
    }
}

/// One positional argument.
public struct ArgSpec: Sendable {
    public let name: String
    public let help: String
    public let optional: Bool
    public let variadic: Bool
    public init(_ name: String, _ help: String, optional: Bool = false, variadic: Bool = false) {
        self.name = name
        self.help = help
        self.optional = optional
        self.variadic = variadic
    }
}

/// A command of the table: its words, documentation, options and handler.
public struct CommandSpec: Sendable {
    public let words: [String]       // ["node", "run"]
    public let summary: String
    public let details: String
    public let options: [OptionSpec]
    public let args: [ArgSpec]
    public let examples: [String]
    public let hidden: Bool
    public let handler: @Sendable (ParsedArgs) throws -> Int32

    public init(_ words: [String], _ summary: String, details: String = "", options: [OptionSpec] = [], args: [ArgSpec] = [],
                examples: [String] = [], hidden: Bool = false, handler: @escaping @Sendable (ParsedArgs) throws -> Int32) {
        self.words = words
        self.summary = summary
        self.details = details
        self.options = options
        self.args = args
        self.examples = examples
        self.hidden = hidden
        self.handler = handler
    }

    public var name: String { words.joined(separator: " ") }

    /// Every option including the common ones.
    public var allOptions: [OptionSpec] { options + [Common.help] }

    public var synopsis: String {
        var s = "p2pos \(name)"
        if !options.isEmpty { s += " [options]" }
        for a in args {
            var n = a.name
            if a.variadic { n += "..." }
            s += a.optional ? " [\(n)]" : " \(n)"
        }
        return s
    }
}

/// Options shared by many commands.
public enum Common {
    public static let help = OptionSpec("--help", short: "-h", "show this help and exit")
    public static let json = OptionSpec("--json", "machine-readable JSON output")
    public static let config = OptionSpec("--config", value: "FILE", "config file (default: <data-dir>/config.json; env P2POS_CONFIG)", complete: ["file"])
    public static let dataDir = OptionSpec("--data-dir", value: "DIR", "data directory (env P2POS_DATA_DIR)", complete: ["dir"])
    public static let socket = OptionSpec("--socket", value: "PATH", "control socket of the daemon (env P2POS_SOCKET)", complete: ["file"])
    public static let force = OptionSpec("--force", "replace existing keys and config")
    /// Options every daemon-talking command takes.
    public static let daemon: [OptionSpec] = [socket, config, dataDir, json]
}

/// Process exit codes; documented in the man page.
public enum ExitCode {
    public static let success: Int32 = 0
    public static let failure: Int32 = 1
    public static let usage: Int32 = 2
    public static let unreachable: Int32 = 3
}

/// An error that ends the command with a specific exit code and one-line message.
public struct CLIError: Error, CustomStringConvertible {
    public let code: Int32
    public let message: String
    public init(_ code: Int32, _ message: String) { self.code = code; self.message = message }
    public static func usage(_ cmd: String, _ what: String) -> CLIError {
        CLIError(ExitCode.usage, "p2pos \(cmd): \(what) (see 'p2pos \(cmd) --help')")
    }
    public static func notImplemented(_ cmd: String) -> CLIError {
        CLIError(ExitCode.failure, "p2pos \(cmd): not implemented yet in this version; see 'p2pos help' for what is available")
    }
    public var description: String { message }
}

/// The command table: one place that feeds parsing, help, the man page and completions.
public enum CommandTable {
    public static let all: [CommandSpec] = [
        initCommand,
        keygenCommand,
        CommandSpec(["node", "run"], "run the p2pos daemon",
                    details: "Loads the config, opens the data directory, listens for libp2p peers and serves the control API on <data-dir>/p2pos.sock. With --dev and no config, creates a throwaway one-node system under ./p2pos-dev first.",
                    options: [Common.config, Common.dataDir, OptionSpec("--dev", "create and run a throwaway one-node system in ./p2pos-dev")],
                    handler: nodeRunHandler),
        CommandSpec(["tx", "sign"], "sign a transaction with a key file",
                    options: [OptionSpec("--key", value: "FILE", "private key file (base64 libp2p protobuf, or p2pos keygen output; mode 0600)", complete: ["file"]),
                              OptionSpec("--op", value: "OP", "operation, e.g. SESSION_CREATE"),
                              OptionSpec("--payload", value: "JSON", "payload object"),
                              OptionSpec("--cluster-id", value: "ID", "cluster the tx is for (default: from config)"),
                              Common.config, Common.dataDir],
                    args: [ArgSpec("-", "read {op, payload} lines (NDJSON) from stdin", optional: true)],
                    handler: txSignHandler),
        CommandSpec(["tx", "submit"], "submit signed transactions through the local daemon",
                    options: [OptionSpec("--no-wait", "return once proposed (accepted), without waiting for commit")] + Common.daemon,
                    args: [ArgSpec("FILE", "signed txs, one JSON value each (NDJSON or pretty-printed), or - for stdin", optional: true)],
                    handler: txSubmitHandler),
        CommandSpec(["api"], "call any control API route and pretty-print the answer",
                    options: Common.daemon,
                    args: [ArgSpec("METHOD", "GET or POST"), ArgSpec("PATH", "route, e.g. /v1/p2p/stats"), ArgSpec("BODY", "request body, or - for stdin", optional: true)],
                    examples: ["p2pos api GET /v1/p2p/raft", "p2pos api GET '/v1/p2p/sessions/s1/events?after=10'"],
                    handler: apiHandler),
        CommandSpec(["snapshot", "publish"], "sign and publish a new membership snapshot",
                    options: [OptionSpec("--members", value: "ID,...", "the complete member list"),
                              OptionSpec("--add", value: "ID", "add a member to the current list", repeatable: true),
                              OptionSpec("--remove", value: "ID", "remove a member from the current list", repeatable: true),
                              OptionSpec("--admin-key", value: "FILE", "admin private key file (default: <data-dir>/keys/admin.key)", complete: ["file"]),
                              OptionSpec("--to", value: "MULTIADDR", "push directly to this peer instead of the local daemon")] + Common.daemon,
                    handler: snapshotPublishHandler),
        CommandSpec(["snapshot", "push"], "push an already signed snapshot (file or -) to the daemon or a peer",
                    details: "Sends a snapshot JSON as it is, e.g. one signed on an offline machine. The answer says whether it was applied and, if not, why.",
                    options: [OptionSpec("--to", value: "MULTIADDR", "push directly to this peer over /p2pos/membership-push/1.0.0")] + Common.daemon,
                    args: [ArgSpec("FILE", "snapshot JSON file, or - for stdin", optional: true)],
                    handler: snapshotPushHandler),
        CommandSpec(["dns", "resolve"], "resolve a bootstrap DNS name to peers and addresses",
                    options: [OptionSpec("--server", value: "HOST[:PORT]", "ask this DNS server instead of the system resolver"), Common.json],
                    args: [ArgSpec("DOMAIN", "name to resolve (_dnsaddr.DOMAIN first, then DOMAIN)")],
                    handler: dnsResolveHandler),
        CommandSpec(["status"], "show this node's state and its peers",
                    options: [OptionSpec("--cluster", "merge the views of all connected members"),
                              OptionSpec("--watch", "refresh every 2 seconds")] + Common.daemon,
                    handler: statusHandler),
        CommandSpec(["peers"], "list connected peers", options: Common.daemon, handler: peersHandler),
        CommandSpec(["ping"], "ping a libp2p peer",
                    options: [OptionSpec("--count", short: "-n", value: "COUNT", "number of pings (default 5)"),
                              OptionSpec("--key", value: "FILE", "identity key file (default: an ephemeral identity)", complete: ["file"]),
                              Common.json],
                    args: [ArgSpec("MULTIADDR", "address of the peer, e.g. /ip4/127.0.0.1/tcp/4100/p2p/12D3KooW...")],
                    handler: pingHandler),
        CommandSpec(["bench", "net"], "benchmark libp2p round trips and /perf throughput on loopback",
                    details: "Measures 1,000 sequential 256-byte request/response round trips on one stream (p50, p95, p99, max) and a single-stream /perf upload and download (default 1 GiB) between two p2pos hosts; with --compare py-libp2p the same against py-libp2p in the same run.",
                    options: [OptionSpec("--compare", value: "IMPL", "also measure py-libp2p (needs the test venv)", complete: ["py-libp2p"]),
                              OptionSpec("--target", value: "MULTIADDR", "measure against a running 'p2pos debug listen --echo --perf'"),
                              OptionSpec("--round-trips", value: "N", "round trips to time (default 1000)"),
                              OptionSpec("--perf-gib", value: "GIB", "bytes per /perf direction in GiB (default 1)")],
                    handler: benchNetHandler),
        CommandSpec(["bench", "heartbeat"], "benchmark heartbeat absorption: many members signing heartbeats to one node",
                    details: "Starts one node whose membership lists --members synthetic identities, then sends each identity's signed heartbeats at --rate per second over libp2p, and reports how many the node verified and recorded per second and the node's CPU use.",
                    options: [OptionSpec("--members", value: "N", "synthetic members (default 200)"), OptionSpec("--rate", value: "N", "heartbeats per member per second (default 10)"),
                              OptionSpec("--duration", value: "TIME", "measured window (default 10s)"), Common.json],
                    handler: benchHeartbeatHandler),
        CommandSpec(["bench", "verify"], "benchmark Ed25519 verification: libsodium next to p2pos's own verifier, alone and in batches",
                    details: "Signs --count 300-byte messages with --signers keys, then times libsodium's crypto_sign_verify_detached and the verifier transactions use (one at a time, and in batches of 16, 64 and 256); prints the median microseconds per signature over --rounds and the speedup over libsodium.",
                    options: [OptionSpec("--count", value: "N", "signatures per round (default 2048)"), OptionSpec("--signers", value: "N", "distinct keys (default 64)"),
                              OptionSpec("--rounds", value: "N", "rounds; the median is reported (default 5)"), Common.json],
                    handler: benchVerifyHandler),
        CommandSpec(["bench", "status"], "benchmark status --cluster latency on a local cluster",
                    options: [OptionSpec("--nodes", value: "N", "cluster size (default 5)"), OptionSpec("--requests", value: "N", "requests (default 50)"), Common.json],
                    handler: benchStatusHandler),
        CommandSpec(["debug", "listen"], "serve libp2p with echo/perf for interop tests",
                    options: [OptionSpec("--listen", value: "MULTIADDR", "address to listen on", repeatable: true),
                              OptionSpec("--echo", "serve /echo/1.0.0"), OptionSpec("--perf", "serve /perf/1.0.0"),
                              OptionSpec("--key", value: "FILE", "identity key file", complete: ["file"]),
                              OptionSpec("--key-b64", value: "KEY", "identity key (base64)")],
                    hidden: true, handler: debugListenHandler),
        CommandSpec(["debug", "dial"], "dial a libp2p peer and exercise identify/ping/echo/perf (JSON out)",
                    options: [OptionSpec("--ping", value: "N", "pings"), OptionSpec("--echo-bytes", value: "N", "echo payload size"),
                              OptionSpec("--perf-upload", value: "N", "perf upload bytes"), OptionSpec("--perf-download", value: "N", "perf download bytes"),
                              OptionSpec("--no-identify", "skip identify"),
                              OptionSpec("--key", value: "FILE", "identity key file", complete: ["file"]),
                              OptionSpec("--key-b64", value: "KEY", "identity key (base64)")],
                    args: [ArgSpec("MULTIADDR", "peer address")],
                    hidden: true, handler: debugDialHandler),
        CommandSpec(["bench", "raft"], "benchmark Raft commits on a local cluster of real processes, next to etcd",
                    details: "Starts --nodes p2pos processes on loopback and, beside them, a local etcd cluster (scripts/etcd-cluster, Debian's etcd-server; not with --compare none), then drives each concurrency level of --clients for --duration in a closed loop, fsync on: replicated entries of --size bytes on p2pos and puts on etcd, each system measured twice for half of --duration in the order A B B A (A = p2pos in odd runs, etcd in even runs), with both clusters quiet and the page cache synced before each measurement. Reports ops/s, latency percentiles, errors and the CPU the cluster's processes used per op. With --runs N the whole pass is repeated N times (fresh clusters each time) and a summary per level gives the medians and ranges, the ratios to etcd, and in how many runs p2pos had at least etcd's throughput and a lower p99.",
                    options: benchClusterOptions, handler: { try runClusterBench($0, kind: "raft") }),
        CommandSpec(["bench", "tx"], "benchmark signed transactions end to end on a local cluster, next to etcd",
                    details: "Like bench raft, with distinct pre-signed SESSION_CREATE transactions submitted through the control API of the leader (each verified at admission and applied on every node). The cluster's nodes serve as many control API connections as the largest level has clients; a client whose request fails pauses 1 ms before the next, and a client that has used up its pre-signed transactions stops (the report flags the level).",
                    options: benchClusterOptions, handler: { try runClusterBench($0, kind: "tx") }),
        idCommand,
        CommandSpec(["completions"], "print shell completions",
                    args: [ArgSpec("SHELL", "bash | zsh | fish")],
                    examples: ["p2pos completions bash > /etc/bash_completion.d/p2pos"],
                    handler: completionsHandler),
        CommandSpec(["version"], "print the version", options: [Common.json], handler: versionHandler),
        CommandSpec(["help"], "show help for a command",
                    options: [OptionSpec("--man", "print the man page (roff)")],
                    args: [ArgSpec("COMMAND", "command to describe", optional: true, variadic: true)],
                    handler: helpHandler),
    ]

    public static var visible: [CommandSpec] { all.filter { !$0.hidden } }

    /// Longest match of the leading words against the table.
    public static func find(_ args: [String]) -> (CommandSpec, Int)? {
        var best: (CommandSpec, Int)? = nil
        for c in all where args.count >= c.words.count && Array(args[0..<c.words.count]) == c.words {
            if best == nil || c.words.count > best!.1 { best = (c, c.words.count) }
        }
        return best
    }

    /// Command groups ("node", "tx", …) whose first word matches.
    public static func group(_ word: String) -> [CommandSpec] {
        all.filter { $0.words.count > 1 && $0.words[0] == word && !$0.hidden }
    }
}

let benchClusterOptions: [OptionSpec] = [
    OptionSpec("--nodes", value: "N", "cluster size (default 3)"),
    OptionSpec("--clients", value: "LIST", "concurrency levels (default 1,16,64)"),
    OptionSpec("--duration", value: "TIME", "time per level (default 10s)"),
    OptionSpec("--size", value: "BYTES", "entry size for bench raft (default 256)"),
    OptionSpec("--compare", value: "SYSTEM", "etcd (default) or none", complete: ["etcd", "none"]),
    OptionSpec("--runs", value: "N", "repeat the whole pass N times and summarize (medians, ranges, how often each target held; default 1)"),
    Common.json,
]

/// The version of this build.
public let p2posVersion = "0.1.0"
