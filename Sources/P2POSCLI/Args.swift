import Foundation

/// Arguments of one invocation, parsed against a CommandSpec.
public struct ParsedArgs: Sendable {
    public let command: CommandSpec
    public var values: [String: [String]] = [:]
    public var flags: Set<String> = []
    public var positionals: [String] = []

    public func has(_ name: String) -> Bool { flags.contains(name) }
    public func value(_ name: String) -> String? { values[name]?.last }
    public func all(_ name: String) -> [String] { values[name] ?? [] }
    public var json: Bool { has("--json") }
    public var commandName: String { command.name }

    /// Parse `args` (the words after the command) strictly: unknown options are usage errors.
    public static func parse(_ spec: CommandSpec, _ args: [String]) throws -> ParsedArgs {
        var p = ParsedArgs(command: spec)
        let opts = spec.allOptions
        var i = 0
        var onlyPositionals = false
        while i < args.count {
            let a = args[i]
            i += 1
            if onlyPositionals || a == "-" || !a.hasPrefix("-") {
                p.positionals.append(a)
                continue
            }
            if a == "--" { onlyPositionals = true; continue }
            var name = a
            var inline: String? = nil
            if a.hasPrefix("--"), let eq = a.firstIndex(of: "=") {
                name = String(a[..<eq])
                inline = String(a[a.index(after: eq)...])
            }
            guard let o = opts.first(where: { $0.name == name || $0.short == name }) else {
                throw CLIError.usage(spec.name, "unknown option \(name)")
            }
            if o.value == nil {
                if inline != nil { throw CLIError.usage(spec.name, "option \(o.name) takes no value") }
                p.flags.insert(o.name)
                continue
            }
            let v: String
            if let inline { v = inline } else {
                guard i < args.count else { throw CLIError.usage(spec.name, "option \(o.name) needs a value \(o.value!)") }
                v = args[i]
                i += 1
            }
            if !o.repeatable && p.values[o.name] != nil {
                throw CLIError.usage(spec.name, "option \(o.name) given more than once")
            }
            p.values[o.name, default: []].append(v)
        }
        if p.has("--help") { return p }
        let required = spec.args.filter { !$0.optional }.count
        let variadic = spec.args.contains { $0.variadic }
        if p.positionals.count < required {
            let missing = spec.args.filter { !$0.optional }[p.positionals.count].name
            throw CLIError.usage(spec.name, "missing argument \(missing)")
        }
        if !variadic && p.positionals.count > spec.args.count {
            throw CLIError.usage(spec.name, "unexpected argument \"\(p.positionals[spec.args.count])\"")
        }
        return p
    }

    public func int(_ name: String, default d: Int, min lo: Int = 0, max hi: Int = Int.max) throws -> Int {
        guard let v = value(name) else { return d }
        guard let n = Int(v), n >= lo, n <= hi else { throw CLIError.usage(commandName, "\(name) must be an integer \(lo)…\(hi), got \"\(v)\"") }
        return n
    }
}
