import Foundation

/// Completes one request exactly once, from any thread; later calls are ignored.
public final class HTTPResponder: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    private let sink: @Sendable (HTTPResponse) -> Void

    public init(_ sink: @escaping @Sendable (HTTPResponse) -> Void) {
        self.sink = sink
    }

    /// Send `response`; returns false when the request was already answered (or timed out).
    @discardableResult
    public func complete(_ response: HTTPResponse) -> Bool {
        lock.lock()
        if done { lock.unlock(); return false }
        done = true
        lock.unlock()
        sink(response)
        return true
    }

    /// Answer with the JSON error for `error` (HTTPError keeps its status; others become 500).
    @discardableResult
    public func fail(_ error: Error) -> Bool {
        complete(Router.errorResponse(error))
    }

    public var isCompleted: Bool {
        lock.lock(); defer { lock.unlock() }
        return done
    }
}

/// How a route produces its response.
public enum RouteHandler: Sendable {
    /// Answer immediately (runs on the server's handler queue; keep it short).
    case sync(@Sendable (HTTPRequest) throws -> HTTPResponse)
    /// Answer later, from any thread, through the responder (e.g. after a Raft commit).
    case callback(@Sendable (HTTPRequest, HTTPResponder) -> Void)
    /// A callback that never blocks: may run on the server's own thread (`addInlineCallback`).
    case inlineCallback(@Sendable (HTTPRequest, HTTPResponder) -> Void)
    /// Answer from Swift concurrency (actors); the server starts a Task.
    case task(@Sendable (HTTPRequest) async throws -> HTTPResponse)
}

/// Method + path-pattern routing with `{name}` parameters; safe to extend while serving.
public final class Router: @unchecked Sendable {
    struct Route {
        let method: String
        let pattern: String
        let segments: [Segment]
        let literalCount: Int
        let handler: RouteHandler
    }
    enum Segment: Equatable {
        case literal(String)
        case param(String)
    }

    /// Result of looking a request up.
    public enum Match: Sendable {
        case found(RouteHandler, params: [String: String], pattern: String)
        case methodNotAllowed(allowed: [String])
        case notFound
        case badPath
    }

    private let lock = NSLock()
    private var routes: [Route] = []
    /// Routes without parameters by "METHOD /path": a request for one of them (the tx route,
    /// status, stats) needs no split, decode or scan. Such a route always wins the scan too (no
    /// other route of the same method has as many literal segments).
    private var exact: [String: Route] = [:]
    private var roundEndHooks: [@Sendable () -> Void] = []

    public init() {}

    /// Run `hook` on the server's thread after each round of I/O, once every ready connection's
    /// request went through its inline handler: work those handlers deferred (such as checking
    /// the signatures of every tx that arrived in the round as one batch) is done there.
    public func addRoundEndHook(_ hook: @escaping @Sendable () -> Void) {
        lock.withLock { roundEndHooks.append(hook) }
    }

    /// Called by the server after each round.
    public func roundEnded() {
        let hooks = lock.withLock { roundEndHooks }
        for h in hooks { h() }
    }

    private var roundThread: pthread_t?

    /// Called by the server on the thread that will call `roundEnded`.
    public func markRoundThread() { lock.withLock { roundThread = pthread_self() } }

    /// Whether the caller runs on the server's round thread: only there may a handler leave
    /// work for the round-end hooks (anywhere else, nothing would run them soon).
    public var onRoundThread: Bool {
        guard let t = lock.withLock({ roundThread }) else { return false }
        return pthread_equal(t, pthread_self()) != 0
    }

    /// Register `handler` for `method` and `pattern` (`/v1/sessions/{id}/events`).
    /// A later registration of the same method and pattern replaces the earlier one.
    public func add(_ method: String, _ pattern: String, _ handler: RouteHandler) {
        let segs: [Segment] = pattern.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map { s in
            if s.hasPrefix("{") && s.hasSuffix("}") && s.count > 2 { return .param(String(s.dropFirst().dropLast())) }
            return .literal(String(s))
        }
        precondition(pattern.hasPrefix("/"), "route pattern must start with /: \(pattern)")
        let literals = segs.filter { if case .literal = $0 { return true } else { return false } }.count
        let route = Route(method: method, pattern: pattern, segments: segs, literalCount: literals, handler: handler)
        lock.lock()
        routes.removeAll { $0.method == method && $0.pattern == pattern }
        routes.append(route)
        if literals == segs.count { exact[method + " " + pattern] = route }
        lock.unlock()
    }

    /// Synchronous GET handler.
    public func get(_ pattern: String, _ handler: @escaping @Sendable (HTTPRequest) throws -> HTTPResponse) {
        add("GET", pattern, .sync(handler))
    }

    /// Synchronous POST handler.
    public func post(_ pattern: String, _ handler: @escaping @Sendable (HTTPRequest) throws -> HTTPResponse) {
        add("POST", pattern, .sync(handler))
    }

    /// Handler that completes later through the responder, from any thread.
    public func addCallback(_ method: String, _ pattern: String, _ handler: @escaping @Sendable (HTTPRequest, HTTPResponder) -> Void) {
        add(method, pattern, .callback(handler))
    }

    /// Like `addCallback`, but the handler is quick and never blocks (it only checks the request
    /// and hands it on), so the server may run it on its own thread for small requests and save
    /// a thread hop; large requests still go to the handler pool.
    public func addInlineCallback(_ method: String, _ pattern: String, _ handler: @escaping @Sendable (HTTPRequest, HTTPResponder) -> Void) {
        add(method, pattern, .inlineCallback(handler))
    }

    /// Handler written with async/await (may call actors).
    public func addTask(_ method: String, _ pattern: String, _ handler: @escaping @Sendable (HTTPRequest) async throws -> HTTPResponse) {
        add(method, pattern, .task(handler))
    }

    /// Find the route for a method and a (percent-encoded) path. HEAD falls back to GET.
    public func match(method: String, path: String) -> Match {
        if !path.utf8.contains(UInt8(ascii: "%")), let r = lock.withLock({ exact[method + " " + path] }) {
            return .found(r.handler, params: [:], pattern: r.pattern)
        }
        var decoded: [String] = []
        for raw in path.split(separator: "/", omittingEmptySubsequences: false).dropFirst() {
            guard let d = percentDecode(String(raw)) else { return .badPath }
            decoded.append(d)
        }
        lock.lock()
        let snapshot = routes
        lock.unlock()
        var best: (Route, [String: String])? = nil
        var allowed: [String] = []
        for route in snapshot where route.segments.count == decoded.count {
            var params: [String: String] = [:]
            var ok = true
            for (seg, value) in zip(route.segments, decoded) {
                switch seg {
                case .literal(let l): if l != value { ok = false }
                case .param(let name):
                    if value.isEmpty { ok = false } else { params[name] = value }
                }
                if !ok { break }
            }
            guard ok else { continue }
            if route.method == method || (method == "HEAD" && route.method == "GET") {
                if best == nil || route.literalCount > best!.0.literalCount
                    || (route.literalCount == best!.0.literalCount && route.method == method && best!.0.method != method) {
                    best = (route, params)
                }
            } else {
                allowed.append(route.method)
            }
        }
        if let (route, params) = best { return .found(route.handler, params: params, pattern: route.pattern) }
        if !allowed.isEmpty {
            if allowed.contains("GET") && !allowed.contains("HEAD") { allowed.append("HEAD") }
            return .methodNotAllowed(allowed: Array(Set(allowed)).sorted())
        }
        return .notFound
    }

    /// Route `request` and run its handler; `responder` receives exactly one response.
    public func dispatch(_ request: HTTPRequest, responder: HTTPResponder) {
        run(request, match(method: request.method, path: request.path), responder: responder)
    }

    /// Route `request` once; run it here if `inlineAllowed` and its route is an inline callback,
    /// otherwise hand the run to `offload` (the server's handler pool).
    public func dispatch(_ request: HTTPRequest, responder: HTTPResponder, inlineAllowed: Bool,
                         offload: (@escaping @Sendable () -> Void) -> Void) {
        let m = match(method: request.method, path: request.path)
        if inlineAllowed, case .found(.inlineCallback, _, _) = m {
            run(request, m, responder: responder)
        } else {
            offload { self.run(request, m, responder: responder) }
        }
    }

    private func run(_ request: HTTPRequest, _ m: Match, responder: HTTPResponder) {
        switch m {
        case .badPath:
            responder.complete(.error(status: 400, code: "BAD_REQUEST", message: "malformed percent-encoding in path"))
        case .notFound:
            responder.complete(.error(status: 404, code: "NOT_FOUND", message: "no route for \(request.path)"))
        case .methodNotAllowed(let allowed):
            var r = HTTPResponse.error(status: 405, code: "METHOD_NOT_ALLOWED", message: "\(request.method) is not allowed on \(request.path); allowed: \(allowed.joined(separator: ", "))")
            r.headers["Allow"] = allowed.joined(separator: ", ")
            responder.complete(r)
        case .found(let handler, let params, _):
            var req = request
            req.pathParams = params
            let frozen = req
            switch handler {
            case .sync(let h):
                do { responder.complete(try h(frozen)) } catch { responder.fail(error) }
            case .callback(let h), .inlineCallback(let h):
                h(frozen, responder)
            case .task(let h):
                Task {
                    do { responder.complete(try await h(frozen)) } catch { responder.fail(error) }
                }
            }
        }
    }

    /// JSON error response for any error thrown by a handler.
    public static func errorResponse(_ error: Error) -> HTTPResponse {
        if let e = error as? HTTPError { return e.response }
        return .error(status: 500, code: "INTERNAL", message: "\(error)")
    }
}
