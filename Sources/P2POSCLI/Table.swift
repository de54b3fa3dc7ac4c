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
                    handler: { _ in throw CLIError.notImplemented("node run") }),
        CommandSpec(["tx", "sign"], "sign a transaction with a key file",
                    options: [OptionSpec("--key", value: "FILE", "private key file (base64 libp2p protobuf, mode 0600)", complete: ["file"]),
                              OptionSpec("--op", value: "OP", "operation, e.g. SESSION_CREATE"),
                              OptionSpec("--payload", value: "JSON", "payload object"),
                              OptionSpec("--cluster-id", value: "ID", "cluster the tx is for (default: from config)"),
                              Common.config, Common.dataDir],
                    args: [ArgSpec("-", "read {op, payload} lines (NDJSON) from stdin", optional: true)],
                    handler: { _ in throw CLIError.notImplemented("tx sign") }),
        CommandSpec(["tx", "submit"], "submit signed transactions through the local daemon",
                    options: [OptionSpec("--no-wait", "return once admitted, without waiting for commit")] + Common.daemon,
                    args: [ArgSpec("FILE", "file of signed txs (NDJSON), or - for stdin", optional: true)],
                    handler: { _ in throw CLIError.notImplemented("tx submit") }),
        CommandSpec(["snapshot", "publish"], "sign and publish a new membership snapshot",
                    options: [OptionSpec("--members", value: "ID,...", "the complete member list"),
                              OptionSpec("--add", value: "ID", "add a member to the current list", repeatable: true),
                              OptionSpec("--remove", value: "ID", "remove a member from the current list", repeatable: true),
                              OptionSpec("--admin-key", value: "FILE", "admin private key file (default: <data-dir>/keys/admin.key)", complete: ["file"]),
                              OptionSpec("--to", value: "MULTIADDR", "push directly to this peer instead of the local daemon")] + Common.daemon,
                    handler: { _ in throw CLIError.notImplemented("snapshot publish") }),
        CommandSpec(["dns", "resolve"], "resolve a bootstrap DNS name to peers and addresses",
                    options: [OptionSpec("--server", value: "HOST[:PORT]", "ask this DNS server instead of the system resolver"), Common.json],
                    args: [ArgSpec("DOMAIN", "name to resolve (_dnsaddr.DOMAIN first, then DOMAIN)")],
                    handler: { _ in throw CLIError.notImplemented("dns resolve") }),
        CommandSpec(["status"], "show this node's state and its peers",
                    options: [OptionSpec("--cluster", "merge the views of all connected members"),
                              OptionSpec("--watch", "refresh every 2 seconds")] + Common.daemon,
                    handler: { _ in throw CLIError.notImplemented("status") }),
        CommandSpec(["peers"], "list connected peers", options: Common.daemon,
                    handler: { _ in throw CLIError.notImplemented("peers") }),
        CommandSpec(["ping"], "ping a libp2p peer",
                    options: [OptionSpec("--count", short: "-n", value: "COUNT", "number of pings (default 5)"),
                              OptionSpec("--key", value: "FILE", "identity key file (default: an ephemeral identity)", complete: ["file"]),
                              Common.json],
                    args: [ArgSpec("MULTIADDR", "address of the peer, e.g. /ip4/127.0.0.1/tcp/4100/p2p/12D3KooW...")],
                    handler: { _ in throw CLIError.notImplemented("ping") }),
        CommandSpec(["bench"], "run a benchmark (net, raft, tx)",
                    args: [ArgSpec("KIND", "net | raft | tx"), ArgSpec("ARGS", "benchmark options", optional: true, variadic: true)],
                    handler: { _ in throw CLIError.notImplemented("bench") }),
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

/// The version of this build.
public let p2posVersion = "0.1.0"
