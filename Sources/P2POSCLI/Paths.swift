import Foundation
import Node
import Support

/// Where data, config and the control socket live, by precedence flag > environment > config > default.
enum Paths {
    static var env: [String: String] { ProcessInfo.processInfo.environment }

    /// Installed default: /var/lib/p2pos for root, else $XDG_DATA_HOME/p2pos or ~/.local/share/p2pos.
    static func defaultDataDir() -> String {
        if getuid() == 0 { return "/var/lib/p2pos" }
        if let x = env["XDG_DATA_HOME"], !x.isEmpty { return x + "/p2pos" }
        return NSHomeDirectory() + "/.local/share/p2pos"
    }

    static func absolute(_ p: String) -> String {
        if p.hasPrefix("/") { return p }
        return FileManager.default.currentDirectoryPath + "/" + p
    }

    /// Data dir from flag or environment only (nil when neither is set).
    static func explicitDataDir(_ p: ParsedArgs) -> String? {
        if let d = p.value("--data-dir") { return absolute(d) }
        if let d = env["P2POS_DATA_DIR"], !d.isEmpty { return absolute(d) }
        return nil
    }

    static func explicitConfig(_ p: ParsedArgs) -> String? {
        if let c = p.value("--config") { return absolute(c) }
        if let c = env["P2POS_CONFIG"], !c.isEmpty { return absolute(c) }
        return nil
    }

    /// The config path to use: flag/env, else <data-dir>/config.json.
    static func configPath(_ p: ParsedArgs) -> String {
        if let c = explicitConfig(p) { return c }
        return (explicitDataDir(p) ?? defaultDataDir()) + "/config.json"
    }

    /// Load the config and settle the data dir: flag > env > config data_dir > config's directory.
    static func loadConfig(_ p: ParsedArgs) throws -> NodeConfig {
        let path = configPath(p)
        var c = try NodeConfig.load(path: path)
        if let d = explicitDataDir(p) {
            c.dataDir = d
        } else if c.dataDir.isEmpty {
            c.dataDir = (path as NSString).deletingLastPathComponent
        } else {
            c.dataDir = absolute(c.dataDir)
        }
        if let s = p.value("--socket") { c.apiSocket = absolute(s) }
        else if let s = env["P2POS_SOCKET"], !s.isEmpty { c.apiSocket = absolute(s) }
        return c
    }

    /// Candidate control sockets in the order SPEC §10 gives.
    static func socketCandidates(_ p: ParsedArgs) -> [String] {
        var out: [String] = []
        if let s = p.value("--socket") { return [absolute(s)] }
        if let s = env["P2POS_SOCKET"], !s.isEmpty { return [absolute(s)] }
        if explicitConfig(p) != nil || explicitDataDir(p) != nil {
            if let c = try? loadConfig(p) { out.append(c.socketPath) }
            else if let d = explicitDataDir(p) { out.append(d + "/p2pos.sock") }
            else if let c = explicitConfig(p) { out.append((c as NSString).deletingLastPathComponent + "/p2pos.sock") }
        }
        for d in ["/var/lib/p2pos", defaultDataDir(), absolute("p2pos-dev")] where !out.contains(d + "/p2pos.sock") {
            out.append(d + "/p2pos.sock")
        }
        return out
    }
}
