import Foundation
import Support

/// Entry point of the p2pos command line.
public enum P2POSCLI {
    /// Run a command line and return its exit code (tests call this; main() exits with it).
    public static func run(_ argv: [String]) -> Int32 {
        let args = Array(argv.dropFirst())
        if args.isEmpty {
            Out.err(Docs.overview())
            return ExitCode.usage
        }
        if args == ["--help"] || args == ["-h"] {
            Out.print(Docs.overview(), terminator: "")
            return ExitCode.success
        }
        if args == ["--version"] || args == ["-V"] {
            Out.print("p2pos \(p2posVersion)")
            return ExitCode.success
        }
        guard let (spec, used) = CommandTable.find(args) else {
            let group = CommandTable.group(args[0])
            if !group.isEmpty {
                let sub = args.count > 1 ? "unknown subcommand \"\(args[1])\"" : "missing subcommand"
                Out.err("p2pos \(args[0]): \(sub); expected one of: \(group.map { $0.words[1] }.joined(separator: ", ")) (see 'p2pos help')")
            } else if args[0].hasPrefix("-") {
                Out.err("p2pos: unknown option \(args[0]) before the command (see 'p2pos help')")
            } else {
                Out.err("p2pos: unknown command \"\(args[0])\" (see 'p2pos help')")
            }
            return ExitCode.usage
        }
        do {
            let parsed = try ParsedArgs.parse(spec, Array(args[used...]))
            if parsed.has("--help") {
                Out.print(Docs.help(spec), terminator: "")
                return ExitCode.success
            }
            return try spec.handler(parsed)
        } catch let e as CLIError {
            Out.err(e.message)
            return e.code
        } catch let e as P2POSError {
            Out.err("p2pos \(spec.name): \(e.description)")
            return ExitCode.failure
        } catch {
            Out.err("p2pos \(spec.name): \(error)")
            return ExitCode.failure
        }
    }

    public static func main(_ argv: [String]) -> Never {
        signal(SIGPIPE, SIG_IGN)
        let code = run(argv)
        Out.flush()
        exit(code)
    }
}

/// Output for commands: stdout for results, stderr for errors (one line).
public enum Out {
    nonisolated(unsafe) static var captured: [String]? = nil

    public static func print(_ s: String, terminator: String = "\n") {
        if captured != nil { captured!.append(s + terminator); return }
        FileHandle.standardOutput.write((s + terminator).data(using: .utf8)!)
    }

    public static func err(_ s: String) {
        let line = s.hasSuffix("\n") ? s : s + "\n"
        if captured != nil { captured!.append("ERR:" + line); return }
        FileHandle.standardError.write(line.data(using: .utf8)!)
    }

    public static func flush() {}

    /// JSON text of a Foundation object (sorted keys, no escaped slashes).
    public static func json(_ obj: Any, pretty: Bool = true) -> String {
        var opts: JSONSerialization.WritingOptions = [.sortedKeys, .withoutEscapingSlashes]
        if pretty { opts.insert(.prettyPrinted) }
        guard let d = try? JSONSerialization.data(withJSONObject: obj, options: opts) else { return "{}" }
        return String(decoding: d, as: UTF8.self)
    }
}

let versionHandler: @Sendable (ParsedArgs) throws -> Int32 = { p in
    if p.json {
        Out.print(Out.json(["version": p2posVersion, "name": "p2pos"], pretty: false))
    } else {
        Out.print("p2pos \(p2posVersion)")
    }
    return ExitCode.success
}

let helpHandler: @Sendable (ParsedArgs) throws -> Int32 = { p in
    if p.has("--man") {
        Out.print(Docs.manPage(), terminator: "")
        return ExitCode.success
    }
    if p.positionals.isEmpty {
        Out.print(Docs.overview(), terminator: "")
        return ExitCode.success
    }
    if let (spec, used) = CommandTable.find(p.positionals), used == p.positionals.count {
        Out.print(Docs.help(spec), terminator: "")
        return ExitCode.success
    }
    let group = CommandTable.group(p.positionals[0])
    if !group.isEmpty && p.positionals.count == 1 {
        var s = "Commands of p2pos \(p.positionals[0]):\n"
        for c in group { s += "  \(c.name)  \(c.summary)\n" }
        Out.print(s, terminator: "")
        return ExitCode.success
    }
    throw CLIError.usage("help", "unknown command \"\(p.positionals.joined(separator: " "))\"")
}

let completionsHandler: @Sendable (ParsedArgs) throws -> Int32 = { p in
    guard let text = Docs.completion(p.positionals[0]) else {
        throw CLIError.usage("completions", "unknown shell \"\(p.positionals[0])\"; expected bash, zsh or fish")
    }
    Out.print(text, terminator: "")
    return ExitCode.success
}
