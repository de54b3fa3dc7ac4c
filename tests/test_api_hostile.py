"""The tx and query routes of a live node against hostile or careless clients: a heavy batch does
not stall other clients, error answers carry the error object, bad paging values are refused."""
import multiprocessing
import socket
import statistics
import sys
import time
import pathlib

import nacl.signing

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "ledger"))
import sign_tx  # noqa: E402  (the documented Python signer)

from cluster import api
from test_raft_cluster import start_cluster


def post_raw(sock_path, body, timeout=30):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    s.sendall(b"POST /v1/p2p/tx HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    return int(read_to_close(s).split(b" ", 2)[1])


def read_to_close(s):
    """Everything the server sends until it closes the connection (then closed here too)."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def hammer(sock_path, body, stop, out):
    while not stop.is_set():
        out.put(post_raw(sock_path, body))


def test_tx_route_errors_paging_and_heavy_batches(tmp_path, env):
    (a,) = start_cluster(tmp_path, env, 1)
    try:
        sk = nacl.signing.SigningKey.generate()
        tx = sign_tx.sign_tx(sk, "SESSION_CREATE", {"session_id": "s0", "title": "t", "steps": [{"step_id": "s0-a", "title": "a"}]},
                             "test-cluster", nonce="n0", ts=sign_tx.utc_now_rfc3339())[0]

        # A rejected single tx: 422, its result fields, and the contract's error object.
        forged = dict(tx, signature=sign_tx.sign_tx(sk, "SESSION_CREATE", {"session_id": "x", "title": "t", "steps": [{"step_id": "x-a", "title": "a"}]},
                                                     "test-cluster", nonce="n9", ts=sign_tx.utc_now_rfc3339())[0]["signature"])
        code, body = api(a.sock, "POST", "/v1/p2p/tx", forged)
        assert code == 422, body
        assert body["status"] == "rejected" and body["code"] == "BAD_SIGNATURE", body
        assert body["error"]["code"] == "BAD_SIGNATURE" and body["error"]["message"], body
        other = sign_tx.sign_tx(sk, "SESSION_CREATE", {"session_id": "y", "title": "t", "steps": [{"step_id": "y-a", "title": "a"}]},
                                "other-cluster", nonce="n8", ts=sign_tx.utc_now_rfc3339())[0]
        code, body = api(a.sock, "POST", "/v1/p2p/tx", other)
        assert code == 422 and body["error"]["code"] == "WRONG_CLUSTER", body
        code, body = api(a.sock, "POST", "/v1/p2p/tx", tx)
        assert code == 200 and body["status"] == "applied" and "error" not in body, body

        # Paging values that do not parse are refused, not read as "from the start".
        for q in ["after=abc", "after=-1", "after=99999999999999999999", "after=", "limit=0", "limit=1001", "limit=x", "limit=-5"]:
            code, body = api(a.sock, "GET", f"/v1/p2p/sessions/s0/events?{q}")
            assert code == 400 and body["error"]["code"] == "MALFORMED", (q, code, body)
        code, body = api(a.sock, "GET", "/v1/p2p/sessions/s0/events?after=0&limit=1")
        assert code == 200 and [e["seq"] for e in body["events"]] == [1], body
        code, body = api(a.sock, "GET", "/v1/p2p/sessions/s0/events?after=1")
        assert code == 200 and body["events"] == [], body

        # Heavy batches (64 KiB of 8,190 items each, admitted one by one) from three clients in a
        # loop must not hold up anyone else: they used to run on the API's poll thread.
        items = b",".join([b'{"v":1}'] * 8190)
        batch = b'{"txs":[' + items + b"]}"
        batch = batch[:-2] + b" " * (65536 - len(batch)) + b"]}"
        assert len(batch) == 65536
        # Separate processes: Python threads would share one interpreter lock with the measuring
        # loop and time themselves, not the daemon.
        ctx = multiprocessing.get_context("fork")
        stop = ctx.Event()
        statuses = ctx.Queue()
        threads = [ctx.Process(target=hammer, args=(a.sock, batch, stop, statuses), daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        lat = []
        for _ in range(30):
            t0 = time.monotonic()
            code, _ = api(a.sock, "GET", "/healthz", timeout=10)
            lat.append(time.monotonic() - t0)
            assert code == 200
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        got = []
        while not statuses.empty():
            got.append(statuses.get())
        statuses = got
        assert statuses and all(s == 200 for s in statuses), statuses[:5]
        med = statistics.median(lat)
        print(f"/healthz under heavy batches: median {med * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms, {len(statuses)} batches")
        assert med < 0.05, f"/healthz median {med * 1000:.1f} ms while batches were admitted"
    finally:
        a.stop()


def test_api_connection_limit_comes_from_config_and_fds_are_raised(tmp_path, env):
    """`api.max_connections` sets the control API's limit (requests in progress are never dropped
    to make room, so the next client gets 503 OVERLOADED naming the limit), and a node started
    with a low open-file soft limit raises it to what its connection limits need."""
    import json
    import os
    import resource
    from cluster import Node

    n = Node(tmp_path, "a", env)
    n.init_new()
    cfg_path = n.dir / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.setdefault("api", {})["max_connections"] = 3
    cfg_path.write_text(json.dumps(cfg))
    os.chmod(cfg_path, 0o600)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        n.start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    held = []
    try:
        limits = pathlib.Path(f"/proc/{n.proc.pid}/limits").read_text()
        line = next(l for l in limits.splitlines() if l.startswith("Max open files"))
        node_soft = int(line.split()[3])
        wanted = 2 * 3 + 512 + 256
        assert node_soft >= min(wanted, hard), line

        # Three uploads in progress (head sent, body not finished) hold every slot.
        for _ in range(3):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(n.sock)
            s.sendall(b"POST /v1/p2p/tx HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            held.append(s)
        time.sleep(0.3)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(n.sock)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = read_to_close(s)
        assert data.startswith(b"HTTP/1.1 503"), data[:200]
        assert b"OVERLOADED" in data and b"limit 3" in data, data
        # Once one upload goes away, a new client is served again.
        held.pop().close()
        time.sleep(0.3)
        assert api(n.sock, "GET", "/healthz")[0] == 200
    finally:
        for s in held:
            s.close()
        n.stop()
