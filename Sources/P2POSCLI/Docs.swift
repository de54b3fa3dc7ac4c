import Foundation

/// Help text, the man page and shell completions, all generated from CommandTable.
public enum Docs {
    static let exitCodes: [(Int32, String)] = [
        (ExitCode.success, "success"),
        (ExitCode.failure, "failure (the message on stderr says what failed and what to do next)"),
        (ExitCode.usage, "usage error: unknown command or option, missing or bad argument"),
        (ExitCode.unreachable, "the daemon could not be reached on any control socket tried"),
    ]

    static func optionLabel(_ o: OptionSpec) -> String {
        var s = o.short.map { "\($0), " } ?? ""
        s += o.name
        if let v = o.value { s += " \(v)" }
        return s
    }

    /// `p2pos help`: every visible command with its summary.
    public static func overview() -> String {
        var out = "p2pos \(p2posVersion): run a small, self-governing peer-to-peer cluster\n\n"
        out += "Usage: p2pos <command> [options]\n\nCommands:\n"
        let width = CommandTable.visible.map { $0.name.count }.max() ?? 10
        for c in CommandTable.visible {
            out += "  " + c.name.padding(toLength: width + 2, withPad: " ", startingAt: 0) + c.summary + "\n"
        }
        out += "\nRun 'p2pos <command> --help' for a command's options.\n"
        out += "Exit codes: 0 success, 1 failure, 2 usage error, 3 daemon not reachable.\n"
        return out
    }

    /// `p2pos <cmd> --help`: same layout for every command.
    public static func help(_ c: CommandSpec) -> String {
        var out = "Usage: \(c.synopsis)\n\n\(c.summary.prefix(1).uppercased() + c.summary.dropFirst()).\n"
        if !c.details.isEmpty { out += "\n" + wrap(c.details, width: 78) + "\n" }
        if !c.args.isEmpty {
            out += "\nArguments:\n"
            let w = c.args.map { $0.name.count }.max()!
            for a in c.args { out += "  " + a.name.padding(toLength: w + 2, withPad: " ", startingAt: 0) + a.help + "\n" }
        }
        out += "\nOptions:\n"
        let labels = c.allOptions.map(optionLabel)
        let w = labels.map { $0.count }.max()!
        for (o, l) in zip(c.allOptions, labels) {
            out += "  " + l.padding(toLength: w + 2, withPad: " ", startingAt: 0) + o.help + (o.repeatable ? " (repeatable)" : "") + "\n"
        }
        if !c.examples.isEmpty {
            out += "\nExamples:\n" + c.examples.map { "  \($0)\n" }.joined()
        }
        out += "\nExit codes: 0 success, 1 failure, 2 usage error, 3 daemon not reachable.\n"
        return out
    }

    static func wrap(_ text: String, width: Int) -> String {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ") {
            if !line.isEmpty && line.count + 1 + word.count > width {
                lines.append(line)
                line = ""
            }
            line += line.isEmpty ? String(word) : " " + word
        }
        if !line.isEmpty { lines.append(line) }
        return lines.joined(separator: "\n")
    }

    static func roff(_ s: String) -> String {
        var out = s.replacingOccurrences(of: "\\", with: "\\e").replacingOccurrences(of: "-", with: "\\-")
        if out.hasPrefix(".") || out.hasPrefix("'") { out = "\\&" + out }
        return out
    }

    /// man/p2pos.1
    public static func manPage() -> String {
        var m = ".\\\" Generated from the p2pos command table; do not edit. Regenerate: p2pos help --man > man/p2pos.1\n"
        m += ".TH P2POS 1 \"\" \"p2pos \(p2posVersion)\" \"User Commands\"\n"
        m += ".SH NAME\np2pos \\- run a small, self\\-governing peer\\-to\\-peer cluster\n"
        m += ".SH SYNOPSIS\n.B p2pos\n.I command\n[\\fIoptions\\fR]\n"
        m += ".SH DESCRIPTION\n"
        m += "p2pos is one binary that runs a node of a peer\\-to\\-peer cluster: an Ed25519 identity speaking libp2p over TCP, an admin\\-signed membership snapshot, signed heartbeats, Raft consensus and a replicated collaboration state machine written through signed transactions. The daemon is \\fBp2pos node run\\fR; the other commands either work on their own or talk to the daemon over its Unix socket.\n"
        m += ".SH COMMANDS\n"
        for c in CommandTable.visible {
            m += ".SS \"\(roff(c.synopsis))\"\n\(roff(c.summary.prefix(1).uppercased() + c.summary.dropFirst())).\n"
            if !c.details.isEmpty { m += roff(c.details) + "\n" }
            for a in c.args {
                m += ".TP\n.I \(roff(a.name))\n\(roff(a.help))\n"
            }
            for o in c.options {
                m += ".TP\n.B \(roff(optionLabel(o)))\n\(roff(o.help))\(o.repeatable ? " (repeatable)" : "")\n"
            }
            for e in c.examples { m += ".PP\nExample:\n.nf\n\(roff(e))\n.fi\n" }
        }
        m += ".SH ENVIRONMENT\n"
        for (k, v) in [("P2POS_CONFIG", "config file, when \\-\\-config is not given"),
                       ("P2POS_DATA_DIR", "data directory, when \\-\\-data\\-dir is not given"),
                       ("P2POS_SOCKET", "control socket, when \\-\\-socket is not given")] {
            m += ".TP\n.B \(k)\n\(v)\n"
        }
        m += ".SH EXIT STATUS\n"
        for (code, what) in exitCodes { m += ".TP\n.B \(code)\n\(roff(what))\n" }
        m += ".SH FILES\n.TP\n.I /var/lib/p2pos/config.json\nconfiguration (mode 0600: it holds the node key)\n"
        m += ".TP\n.I /var/lib/p2pos/p2pos.sock\ncontrol socket of the daemon\n"
        m += ".SH SEE ALSO\nThe README and docs/ of the p2pos source tree.\n"
        return m
    }

    // MARK: completions

    static var topWords: [String] {
        var seen: [String] = []
        for c in CommandTable.visible where !seen.contains(c.words[0]) { seen.append(c.words[0]) }
        return seen
    }

    public static func completion(_ shell: String) -> String? {
        switch shell {
        case "bash": return bash()
        case "zsh": return zsh()
        case "fish": return fish()
        default: return nil
        }
    }

    static func bash() -> String {
        var s = "# bash completion for p2pos; generated from the command table, do not edit.\n"
        s += "_p2pos() {\n    local cur prev words cword\n    cur=\"${COMP_WORDS[COMP_CWORD]}\"\n    prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
        s += "    local cmd=\"${COMP_WORDS[1]}\" sub=\"${COMP_WORDS[2]}\"\n"
        s += "    if [ \"$COMP_CWORD\" -eq 1 ]; then\n        COMPREPLY=($(compgen -W \"\(topWords.joined(separator: " "))\" -- \"$cur\"))\n        return\n    fi\n"
        s += "    case \"$cmd\" in\n"
        for w in topWords {
            let group = CommandTable.visible.filter { $0.words[0] == w }
            if group.count == 1 && group[0].words.count == 1 {
                s += "    \(w))\n" + bashOptions(group[0], indent: "        ") + "        ;;\n"
            } else {
                s += "    \(w))\n        if [ \"$COMP_CWORD\" -eq 2 ]; then\n"
                s += "            COMPREPLY=($(compgen -W \"\(group.map { $0.words[1] }.joined(separator: " "))\" -- \"$cur\"))\n            return\n        fi\n"
                s += "        case \"$sub\" in\n"
                for c in group {
                    s += "        \(c.words[1]))\n" + bashOptions(c, indent: "            ") + "            ;;\n"
                }
                s += "        esac\n        ;;\n"
            }
        }
        s += "    esac\n}\ncomplete -F _p2pos p2pos\n"
        return s
    }

    static func bashOptions(_ c: CommandSpec, indent: String) -> String {
        var s = ""
        let valued = c.allOptions.filter { $0.value != nil }
        if !valued.isEmpty {
            s += indent + "case \"$prev\" in\n"
            for o in valued {
                let names = ([o.name] + (o.short.map { [$0] } ?? [])).joined(separator: "|")
                if o.complete == ["file"] {
                    s += indent + "\(names)) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"
                } else if o.complete == ["dir"] {
                    s += indent + "\(names)) COMPREPLY=($(compgen -d -- \"$cur\")); return ;;\n"
                } else if !o.complete.isEmpty {
                    s += indent + "\(names)) COMPREPLY=($(compgen -W \"\(o.complete.joined(separator: " "))\" -- \"$cur\")); return ;;\n"
                } else {
                    s += indent + "\(names)) return ;;\n"
                }
            }
            s += indent + "esac\n"
        }
        var words = c.allOptions.map { $0.name }
        if c.name == "completions" { words += ["bash", "zsh", "fish"] }
        if c.name == "bench" { words += ["net", "raft", "tx"] }
        if c.name == "help" { words += topWords }
        s += indent + "COMPREPLY=($(compgen -W \"\(words.joined(separator: " "))\" -- \"$cur\"))\n"
        return s
    }

    static func zshEscape(_ s: String) -> String {
        s.replacingOccurrences(of: "'", with: "'\\''").replacingOccurrences(of: "[", with: "\\[").replacingOccurrences(of: "]", with: "\\]").replacingOccurrences(of: ":", with: "\\:")
    }

    static func zsh() -> String {
        var s = "#compdef p2pos\n# zsh completion for p2pos; generated from the command table, do not edit.\n\n"
        s += "_p2pos() {\n    local -a commands\n    if (( CURRENT == 2 )); then\n        commands=(\n"
        for w in topWords {
            let group = CommandTable.visible.filter { $0.words[0] == w }
            let summary = group.count == 1 && group[0].words.count == 1 ? group[0].summary : group.map { $0.words.joined(separator: " ") }.joined(separator: ", ")
            s += "            '\(w):\(zshEscape(summary))'\n"
        }
        s += "        )\n        _describe 'command' commands\n        return\n    fi\n"
        s += "    local key=\"${words[2]}\"\n    if (( CURRENT >= 3 )) && [[ \"${words[3]}\" != -* ]]; then key=\"${words[2]} ${words[3]}\"; fi\n"
        s += "    case \"$key\" in\n"
        for w in topWords {
            let group = CommandTable.visible.filter { $0.words[0] == w }
            if group.count > 1 || group[0].words.count > 1 {
                s += "    '\(w)')\n        local -a subs\n        subs=(\(group.map { "'\($0.words[1]):\(zshEscape($0.summary))'" }.joined(separator: " ")))\n        _describe 'subcommand' subs\n        ;;\n"
            }
        }
        for c in CommandTable.visible {
            let shift = c.words.count
            s += "    '\(c.name)')\n        shift \(shift) words; (( CURRENT -= \(shift) ))\n        _arguments \\\n"
            for o in c.allOptions {
                var spec = "'\(o.repeatable ? "*" : "")\(o.name)[\(zshEscape(o.help))]"
                if let v = o.value {
                    let action = o.complete == ["file"] ? "_files" : o.complete == ["dir"] ? "_files -/" : o.complete.isEmpty ? "" : "(\(o.complete.joined(separator: " ")))"
                    spec += ":\(zshEscape(v)):\(action)"
                }
                s += "            \(spec)' \\\n"
            }
            var argAction = "_files"
            if c.name == "completions" { argAction = "(bash zsh fish)" }
            if c.name == "bench" { argAction = "(net raft tx)" }
            s += "            '*::arg:\(argAction)'\n        ;;\n"
        }
        s += "    esac\n}\n\n_p2pos \"$@\"\n"
        return s
    }

    static func fishEscape(_ s: String) -> String { s.replacingOccurrences(of: "'", with: "\\'") }

    static func fish() -> String {
        var s = "# fish completion for p2pos; generated from the command table, do not edit.\n"
        s += "complete -c p2pos -f\n"
        for w in topWords {
            let group = CommandTable.visible.filter { $0.words[0] == w }
            let summary = group.count == 1 && group[0].words.count == 1 ? group[0].summary : group.map { $0.name }.joined(separator: ", ")
            s += "complete -c p2pos -n '__fish_use_subcommand' -a '\(w)' -d '\(fishEscape(summary))'\n"
        }
        for c in CommandTable.visible {
            var cond = "__fish_seen_subcommand_from \(c.words[0])"
            if c.words.count > 1 {
                s += "complete -c p2pos -n '__fish_seen_subcommand_from \(c.words[0]); and not __fish_seen_subcommand_from \(CommandTable.group(c.words[0]).map { $0.words[1] }.joined(separator: " "))' -a '\(c.words[1])' -d '\(fishEscape(c.summary))'\n"
                cond += "; and __fish_seen_subcommand_from \(c.words[1])"
            }
            for o in c.allOptions {
                var line = "complete -c p2pos -n '\(cond)' -l \(o.name.dropFirst(2))"
                if let sh = o.short { line += " -s \(sh.dropFirst())" }
                if o.value != nil {
                    line += " -r"
                    if o.complete == ["file"] || o.complete == ["dir"] { line += " -F" }
                    else if !o.complete.isEmpty { line += " -a '\(o.complete.joined(separator: " "))'" }
                }
                line += " -d '\(fishEscape(o.help))'"
                s += line + "\n"
            }
            if c.name == "completions" { s += "complete -c p2pos -n '\(cond)' -a 'bash zsh fish'\n" }
            if c.name == "bench" { s += "complete -c p2pos -n '\(cond)' -a 'net raft tx'\n" }
        }
        return s
    }
}
