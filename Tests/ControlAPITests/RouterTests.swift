import XCTest
import Foundation
@testable import ControlAPI

final class RouterTests: XCTestCase {
    /// Dispatch synchronously-ish and wait for the one response.
    func run(_ router: Router, _ method: String, _ target: String, body: String = "") -> HTTPResponse {
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        let responder = HTTPResponder { r in box.set(r); done.signal() }
        router.dispatch(HTTPRequest(method: method, target: target, body: Array(body.utf8)), responder: responder)
        XCTAssertEqual(done.wait(timeout: .now() + 5), .success)
        return box.get() ?? HTTPResponse(status: 0)
    }

    func errorCode(_ r: HTTPResponse) -> String? {
        let obj = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
        return (obj?["error"] as? [String: Any])?["code"] as? String
    }

    func makeRouter() -> Router {
        let router = Router()
        router.get("/healthz") { _ in .text("ok\n") }
        router.get("/v1/p2p/sessions/{id}") { req in .jsonObject(["id": req.param("id") ?? "?"]) }
        router.get("/v1/p2p/sessions/{id}/events") { req in .jsonObject(["events_of": req.param("id") ?? "?", "after": req.queryValue("after") ?? ""]) }
        router.get("/v1/p2p/steps/open") { _ in .jsonObject(["literal": true]) }
        router.get("/v1/p2p/steps/{id}") { req in .jsonObject(["step": req.param("id") ?? "?"]) }
        router.post("/v1/echo") { req in
            let v = try req.jsonObject()
            return .jsonObject(["echo": v])
        }
        router.get("/boom") { _ in throw HTTPError(status: 409, code: "CONFLICT", message: "nope") }
        router.post("/v1/p2p/tx") { _ in throw HTTPError(status: 421, code: "NOT_LEADER", message: "not the leader", details: ["leader_peer_id": "12D3KooWX"]) }
        router.addCallback("GET", "/later") { _, responder in
            DispatchQueue.global().asyncAfter(deadline: .now() + 0.05) { responder.complete(.text("later")) }
        }
        router.addTask("GET", "/actor") { _ in
            let v = await Counter.shared.increment()
            return .jsonObject(["n": v])
        }
        return router
    }

    func testParamsQueryAndPrecedence() throws {
        let router = makeRouter()
        XCTAssertEqual(String(decoding: run(router, "GET", "/healthz").body, as: UTF8.self), "ok\n")
        XCTAssertEqual(String(decoding: run(router, "GET", "/v1/p2p/sessions/s%201").body, as: UTF8.self), "{\"id\":\"s 1\"}\n")
        XCTAssertEqual(String(decoding: run(router, "GET", "/v1/p2p/sessions/abc/events?after=5").body, as: UTF8.self), "{\"after\":\"5\",\"events_of\":\"abc\"}\n")
        XCTAssertEqual(String(decoding: run(router, "GET", "/v1/p2p/steps/open").body, as: UTF8.self), "{\"literal\":true}\n")
        XCTAssertEqual(String(decoding: run(router, "GET", "/v1/p2p/steps/x").body, as: UTF8.self), "{\"step\":\"x\"}\n")
    }

    func testErrors() {
        let router = makeRouter()
        let nf = run(router, "GET", "/nope")
        XCTAssertEqual(nf.status, 404)
        XCTAssertEqual(errorCode(nf), "NOT_FOUND")
        XCTAssertEqual(run(router, "GET", "/v1/p2p/sessions/").status, 404, "empty parameter does not match")
        XCTAssertEqual(run(router, "GET", "/healthz/").status, 404)
        let na = run(router, "DELETE", "/healthz")
        XCTAssertEqual(na.status, 405)
        XCTAssertEqual(na.headers["Allow"], "GET, HEAD")
        XCTAssertEqual(errorCode(na), "METHOD_NOT_ALLOWED")
        let bad = run(router, "POST", "/v1/echo", body: "{not json")
        XCTAssertEqual(bad.status, 400)
        XCTAssertEqual(errorCode(bad), "BAD_JSON")
        XCTAssertEqual(run(router, "GET", "/v1/p2p/sessions/%zz").status, 400)
        let empty = run(router, "POST", "/v1/echo")
        XCTAssertEqual(errorCode(empty), "BAD_JSON")
        XCTAssertTrue(String(decoding: empty.body, as: UTF8.self).contains("empty"))
        let thrown = run(router, "GET", "/boom")
        XCTAssertEqual(thrown.status, 409)
        XCTAssertEqual(errorCode(thrown), "CONFLICT")
        XCTAssertEqual(String(decoding: run(router, "POST", "/v1/p2p/tx").body, as: UTF8.self),
                       #"{"error":{"code":"NOT_LEADER","leader_peer_id":"12D3KooWX","message":"not the leader"}}"# + "\n")
    }

    func testDecodeJSON() throws {
        struct Tx: Decodable { var op: String; var nonce: String }
        let ok = HTTPRequest(method: "POST", target: "/", body: Array(#"{"op":"SESSION_CREATE","nonce":"1"}"#.utf8))
        XCTAssertEqual(try ok.decodeJSON(Tx.self).op, "SESSION_CREATE")
        let missing = HTTPRequest(method: "POST", target: "/", body: Array(#"{"op":"X"}"#.utf8))
        XCTAssertThrowsError(try missing.decodeJSON(Tx.self)) { e in
            XCTAssertEqual((e as? HTTPError)?.status, 400)
            XCTAssertTrue((e as? HTTPError)?.message.contains("nonce") == true)
        }
    }

    func testHeadFallsBackToGet() {
        XCTAssertEqual(run(makeRouter(), "HEAD", "/healthz").status, 200)
    }

    func testAsyncCompletionAndTask() {
        let router = makeRouter()
        XCTAssertEqual(String(decoding: run(router, "GET", "/later").body, as: UTF8.self), "later")
        XCTAssertEqual(run(router, "GET", "/actor").status, 200)
        XCTAssertEqual(String(decoding: run(router, "POST", "/v1/echo", body: "[1,\"a\"]").body, as: UTF8.self), "{\"echo\":[1,\"a\"]}\n")
    }

    func testResponderCompletesOnce() {
        let box = Box()
        let responder = HTTPResponder { r in box.set(r) }
        XCTAssertTrue(responder.complete(.text("one")))
        XCTAssertFalse(responder.complete(.text("two")))
        XCTAssertTrue(responder.isCompleted)
        XCTAssertEqual(String(decoding: box.get()!.body, as: UTF8.self), "one")
    }

    func testRouteReplacement() {
        let router = makeRouter()
        router.get("/healthz") { _ in .text("replaced") }
        XCTAssertEqual(String(decoding: run(router, "GET", "/healthz").body, as: UTF8.self), "replaced")
    }
}

final class Box: @unchecked Sendable {
    private let lock = NSLock()
    private var value: HTTPResponse?
    func set(_ v: HTTPResponse) { lock.lock(); value = v; lock.unlock() }
    func get() -> HTTPResponse? { lock.lock(); defer { lock.unlock() }; return value }
}

actor Counter {
    static let shared = Counter()
    var n = 0
    func increment() -> Int { n += 1; return n }
}
