"""Snapshot validation over the control API and the push protocol, and control API bad input."""
import json
import socket
import threading
import time

import nacl.signing
import pytest

import snaputil as su
from cluster import Node, api, make_cluster, wait_for


@pytest.fixture
def single(tmp_path, env):
    a = Node(tmp_path, "a", env)
    a.init_new(cluster="c1")
    a.start()
    yield a
    a.stop()


def bad_snapshots(a):
    system = su.load_key(a.dir / "keys" / "system.key")
    admin = su.load_key(a.dir / "keys" / "admin.key")
    cfg = json.loads((a.dir / "config.json").read_text())
    good_proof = cfg["admin_proof"]
    members = [a.peer_id]
    other_system = nacl.signing.SigningKey.generate()
    forged = su.snapshot(admin, "c1", members, good_proof)
    forged["members"] = members + [su.peer_id(nacl.signing.SigningKey.generate())]
    return {
        "bad signature": (forged, "signature does not verify"),
        "stale issued_at": (su.snapshot(admin, "c1", members, good_proof, issued_at=su.now(-86400 * 400)), "stale"),
        "other cluster": (su.snapshot(admin, "c2", members, good_proof), "cluster"),
        "admin proof expired": (su.snapshot(admin, "c1", members, su.proof(system, "c1", su.peer_id(admin), su.now(-7200), su.now(-3600))), "expired"),
        "proof by another system key": (su.snapshot(admin, "c1", members, su.proof(other_system, "c1", su.peer_id(admin), su.now(-60), su.now(3600))), "system key"),
        "issuer not the proof's peer": (su.snapshot(nacl.signing.SigningKey.generate(), "c1", members, good_proof), "issued by"),
    }


def test_rejections_over_control_api(single):
    a = single
    for name, (snap, reason) in bad_snapshots(a).items():
        code, body = api(a.sock, "POST", "/v1/membership", snap)
        assert code == 409, (name, code, body)
        assert body["error"]["code"] == "SNAPSHOT_REJECTED"
        assert reason in body["error"]["message"], (name, body)
    log = a.logtext()
    assert log.count("action=snapshot_rejected") >= 6
    assert "reason=" in log
    assert a.state() == "healthy"          # nothing changed


def test_rejections_over_push_protocol(single, tmp_path):
    a = single
    for name, (snap, reason) in bad_snapshots(a).items():
        f = tmp_path / "snap.json"
        f.write_text(json.dumps(snap))
        r = a.cli("snapshot", "push", str(f), "--to", a.addr, "--json")
        assert r.returncode == 1, (name, r.stdout, r.stderr)
        answer = json.loads(r.stdout)
        assert answer["applied"] is False and reason in answer["error"], (name, answer)
    # A valid one, signed in Python, is applied.
    admin = su.load_key(a.dir / "keys" / "admin.key")
    cfg = json.loads((a.dir / "config.json").read_text())
    extra = su.peer_id(nacl.signing.SigningKey.generate())
    good = su.snapshot(admin, "c1", [a.peer_id, extra], cfg["admin_proof"])
    f = tmp_path / "good.json"
    f.write_text(json.dumps(good))
    r = a.cli("snapshot", "push", str(f), "--to", a.addr, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["applied"] is True
    assert a.status()["node"]["members_total"] == 2
    assert a.state() == "degraded"         # 1 of 2 online


def test_snapshot_survives_restart(single):
    a = single
    extra = su.peer_id(nacl.signing.SigningKey.generate())
    r = a.cli("snapshot", "publish", "--data-dir", str(a.dir), "--add", extra)
    assert r.returncode == 0, r.stderr
    a.stop()
    a.start()
    code, body = api(a.sock, "GET", "/v1/membership")
    assert extra in body["snapshot"]["members"]


def raw_request(path, data, read=True, timeout=10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(data)
    out = b""
    if read:
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out:
                    head, _, rest = out.partition(b"\r\n\r\n")
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:") and len(rest) >= int(line.split(b":")[1]):
                            s.close()
                            return out
        except socket.timeout:
            pass
    s.close()
    return out


def test_control_api_bad_input(single):
    a = single
    # A slow client trickling one byte a second must not block others.
    slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    slow.connect(a.sock)
    stop = threading.Event()

    def trickle():
        for ch in b"GET /v1/status HTTP/1.1\r\nHost: x\r\n":
            if stop.is_set():
                return
            try:
                slow.send(bytes([ch]))
            except OSError:
                return
            time.sleep(1)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        code, body = api(a.sock, "POST", "/v1/membership", b"{not json")
        assert code == 400 and body["error"]["code"], body
        resp = raw_request(a.sock, b"POST /v1/membership HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\n" + b"x" * 1000)
        assert resp.startswith(b"HTTP/1.1 413"), resp[:200]
        code, body = api(a.sock, "GET", "/v1/nope")
        assert code == 404 and body["error"]["code"]
        snaps = bad_snapshots(a)
        code, body = api(a.sock, "POST", "/v1/membership", snaps["other cluster"][0])
        assert code == 409 and "cluster" in body["error"]["message"]
        t0 = time.time()
        for _ in range(20):
            assert api(a.sock, "GET", "/healthz")[0] == 200
        assert time.time() - t0 < 5
    finally:
        stop.set()
        slow.close()
    assert a.proc.poll() is None


def test_metrics_and_curl(single):
    import shutil, subprocess
    a = single
    code, text = api(a.sock, "GET", "/metrics")
    assert code == 200 and "p2pos_members_online" in text and 'p2pos_state{state="healthy"} 1' in text
    # Every sample line is `name{labels} value` with a number, under its HELP/TYPE lines.
    samples = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    assert 2e6 < samples["process_resident_memory_bytes"] <= samples["p2pos_process_peak_resident_memory_bytes"]
    assert samples["process_open_fds"] >= 5 and samples["process_cpu_seconds_total"] > 0
    assert abs(samples["process_start_time_seconds"] - time.time()) < 3600
    # A single-node cluster: this node leads and has applied its own entries.
    wait_for(lambda: "p2pos_raft_leader 1" in api(a.sock, "GET", "/metrics")[1], timeout=30, what="raft leader metric")
    code, text = api(a.sock, "GET", "/metrics")
    samples = dict((l.rsplit(" ", 1)[0], float(l.rsplit(" ", 1)[1])) for l in text.splitlines() if l and not l.startswith("#"))
    assert samples["p2pos_raft_term"] >= 1 and samples["p2pos_raft_applied_index"] >= 1
    assert samples["p2pos_raft_commit_index"] >= samples["p2pos_raft_applied_index"]
    assert samples['p2pos_storage_bytes{file="raft.db"}'] > 0 and samples['p2pos_storage_bytes{file="raft-log"}'] >= 64 << 20 and samples['p2pos_storage_bytes{file="ledger.db"}'] > 0
    assert samples['p2pos_storage_bytes{file="raft-snapshot"}'] >= 0
    if shutil.which("curl"):
        r = subprocess.run(["curl", "-s", "--unix-socket", a.sock, "http://p2pos/v1/status"], capture_output=True, text=True, timeout=10)
        assert json.loads(r.stdout)["node"]["peer_id"] == a.peer_id


def test_second_daemon_on_same_data_dir_is_refused(single):
    import subprocess
    from binpath import binary
    a = single
    r = subprocess.run([binary(), "node", "run", "--data-dir", str(a.dir)], capture_output=True, text=True, env=a.env, timeout=30)
    assert r.returncode == 1
    assert "already running" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert a.state() == "healthy"          # the first one keeps serving
