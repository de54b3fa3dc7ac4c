"""A full collaboration driven through `p2pos tx sign | p2pos tx submit` on a 3-node cluster of real
processes; every node then answers identical sessions and events. Also runs the documented Python
signing example against a live node."""
import json
import os
import subprocess
import sys
import pathlib

import pytest

from binpath import binary
from cluster import api, wait_for
from test_raft_cluster import start_cluster, raft

ROOT = pathlib.Path(__file__).resolve().parent.parent


def make_key(tmp_path, name, env):
    kv = dict(l.split("=", 1) for l in subprocess.run([binary(), "keygen"], capture_output=True, text=True, env=env).stdout.split())
    path = tmp_path / f"{name}.key"
    path.write_text(kv["NODE_PRIV_B64"] + "\n")
    os.chmod(path, 0o600)
    raw = __import__("base64").b64decode(kv["NODE_PRIV_B64"])
    pub = __import__("base64").b64encode(b"\x08\x01\x12\x20" + raw[36:68]).decode()
    return path, pub


def test_full_collaboration_via_sign_and_submit_pipeline(tmp_path, env):
    nodes = start_cluster(tmp_path, env, 3)
    try:
        alice, alice_pub = make_key(tmp_path, "alice", env)
        bob, bob_pub = make_key(tmp_path, "bob", env)
        carol, carol_pub = make_key(tmp_path, "carol", env)
        B = binary()
        steps = [
            (alice, "SESSION_CREATE", {"session_id": "rel-1", "title": "Release 1", "steps": [{"step_id": "build", "title": "Build"}, {"step_id": "ship", "title": "Ship"}]}),
            (bob, "PARTICIPANT_JOIN", {"session_id": "rel-1"}),
            (carol, "PARTICIPANT_JOIN", {"session_id": "rel-1"}),
            (bob, "STEP_CLAIM", {"step_id": "build"}),
            (bob, "STEP_HANDOFF", {"step_id": "build", "to": carol_pub}),
            (carol, "ARTIFACT_ADD", {"step_id": "build", "artifact_id": "bin-1", "kind": "binary", "uri": "file:///tmp/p2pos", "sha256": "ab" * 32}),
            (carol, "STEP_RESOLVE", {"step_id": "build", "outcome": "built"}),
            (alice, "STEP_CLAIM", {"step_id": "ship"}),
            (alice, "DECISION_OPEN", {"step_id": "ship", "decision_id": "go", "question": "Ship now?", "options": ["ship", "wait"], "quorum": 2}),
            (bob, "VOTE_CAST", {"decision_id": "go", "option": "ship"}),
            (carol, "VOTE_CAST", {"decision_id": "go", "option": "ship"}),
            (alice, "STEP_RESOLVE", {"step_id": "ship", "outcome": "ship"}),
        ]
        results = []
        for i, (key, op, payload) in enumerate(steps):
            target = nodes[i % 3]          # followers forward to the leader
            signed = tmp_path / f"tx-{i}.json"
            cmd = (f"{B} tx sign --key {key} --cluster-id test-cluster --op {op} --payload '{json.dumps(payload)}'"
                   f" | tee {signed} | {B} tx submit - --socket {target.sock} --json")
            r = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=env, timeout=60)
            assert r.returncode == 0, (op, r.stdout, r.stderr)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            assert res["status"] == "applied", (op, res)
            results.append(res)
        # Replaying a tx (here the last one, through another node) answers its original result.
        r = subprocess.run([B, "tx", "submit", str(tmp_path / f"tx-{len(steps) - 1}.json"), "--socket", str(nodes[1].sock), "--json"],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        again = json.loads(r.stdout)
        assert again["duplicate"] is True and again["tx_id"] == results[-1]["tx_id"], again
        assert again["raft_index"] == results[-1]["raft_index"] and again["event_seq"] == results[-1]["event_seq"], again
        views = []
        for n in nodes:
            q = lambda p: api(n.sock, "GET", p + ("&" if "?" in p else "?") + "consistency=strong")
            code, session = q("/v1/p2p/sessions/rel-1")
            assert code == 200, session
            views.append((session, q("/v1/p2p/sessions/rel-1/events")[1], q("/v1/p2p/sessions/rel-1/participants")[1],
                          q("/v1/p2p/steps/build/artifacts")[1], q("/v1/p2p/steps/ship")[1]))
        assert views[0] == views[1] == views[2]
        session = views[0][0]
        assert session["status"] == "completed"
        events = views[0][1]
        evs = events["events"] if isinstance(events, dict) else events
        assert len(evs) == len(steps)
        # Both steps are resolved: no open steps are left, on any node.
        for n in nodes:
            code, open_steps = api(n.sock, "GET", "/v1/p2p/sessions/rel-1/steps/open?consistency=strong")
            assert code == 200
            assert (open_steps["steps"] if isinstance(open_steps, dict) else open_steps) == [], open_steps
        # Every node checked every tx's signature itself (at admission, when the entry arrived,
        # or at apply): /metrics counts the checks, in batches and one at a time.
        for n in nodes:
            code, text = api(n.sock, "GET", "/metrics")
            assert code == 200
            checked = {line.split("{how=\"")[1].split("\"")[0]: int(line.split()[-1])
                       for line in text.splitlines() if line.startswith("p2pos_signatures_checked_total{")}
            assert set(checked) == {"batch", "single"}, text
            assert checked["batch"] + checked["single"] >= len(steps), (n.sock, checked)
            batches = [int(line.split()[-1]) for line in text.splitlines() if line.startswith("p2pos_signature_batches_total ")]
            assert len(batches) == 1 and batches[0] <= checked["batch"], text
    finally:
        for n in nodes:
            n.stop()


def test_python_signing_example_against_live_node(tmp_path, env):
    from cluster import Node
    a = Node(tmp_path, "a", env)
    a.init_new(cluster="py-cluster")
    a.start()
    try:
        key, _ = make_key(tmp_path, "py", env)
        wait_for(lambda: raft(a)["role"] == "leader", what="leader")
        r = subprocess.run([sys.executable, str(ROOT / "tests/ledger/sign_tx.py"), "--key", str(key), "--cluster-id", "py-cluster",
                            "--op", "SESSION_CREATE", "--payload",
                            '{"session_id":"py-1","title":"From Python","steps":[{"step_id":"py-s1","title":"one"}]}'],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        tx = r.stdout.strip()
        code, body = api(a.sock, "POST", "/v1/p2p/tx", tx.encode())
        assert code == 200 and body["status"] == "applied", body
        code, again = api(a.sock, "POST", "/v1/p2p/tx", tx.encode())
        assert code == 200 and again["tx_id"] == body["tx_id"] and again.get("duplicate") is True, again
        assert api(a.sock, "GET", "/v1/p2p/sessions/py-1")[1]["title"] == "From Python"
    finally:
        a.stop()


def test_submit_inputs_no_wait_api_and_refused_bodies(tmp_path, env):
    """`tx submit` with a file of pretty-printed and NDJSON txs and a bad one among them;
    `--no-wait` on the leader and through a follower, and a replay without waiting; `p2pos api`;
    and bodies the route refuses (a float, a duplicate key, an oversized tx, a bad consistency)
    change nothing."""
    nodes = start_cluster(tmp_path, env, 3)
    try:
        B = binary()
        key, pub = make_key(tmp_path, "dora", env)
        leader = next(n for n in nodes if raft(n)["role"] == "leader")
        follower = next(n for n in nodes if n is not leader)

        def sign(op, payload):
            r = subprocess.run([B, "tx", "sign", "--key", str(key), "--cluster-id", "test-cluster", "--op", op,
                                "--payload", json.dumps(payload)], capture_output=True, text=True, env=env, timeout=30)
            assert r.returncode == 0, r.stderr
            return r.stdout.strip()

        def submit(*args, sock):
            return subprocess.run([B, "tx", "submit", *args, "--socket", str(sock)], capture_output=True, text=True, env=env, timeout=60)

        # A file holding a pretty-printed tx, a tx with a float, and an NDJSON tx, in that order.
        t1 = sign("SESSION_CREATE", {"session_id": "in-1", "title": "pretty", "steps": [{"step_id": "in-1a", "title": "a"}]})
        t3 = sign("SESSION_CREATE", {"session_id": "in-3", "title": "ndjson", "steps": [{"step_id": "in-3a", "title": "a"}]})
        bad = json.loads(sign("SESSION_CREATE", {"session_id": "in-2", "title": "float", "steps": [{"step_id": "in-2a", "title": "a"}]}))
        bad_text = json.dumps(bad, separators=(",", ":")).replace('"v":1', '"v":1.0')
        f = tmp_path / "mixed.json"
        pretty = json.dumps(json.loads(t1), indent=2)
        f.write_text(pretty + "\n" + bad_text + "\n" + t3[:60] + "\n" + t3 + "\n")      # and a truncated copy of t3
        bad_line = len(pretty.splitlines()) + 1
        r = submit(str(f), "--json", sock=follower.sock)
        assert r.returncode == 1, (r.stdout, r.stderr)      # two of the four failed
        out = [json.loads(l) for l in r.stdout.splitlines()]
        assert [o["status"] for o in out] == ["applied", "rejected", "rejected", "applied"], out
        assert out[2]["code"] == "MALFORMED" and f"line {bad_line + 1}:" in out[2]["message"], out[2]
        assert out[1]["code"] == "MALFORMED" and f"line {bad_line}:" in out[1]["message"] and "not sent" in out[1]["message"], out[1]
        assert api(leader.sock, "GET", "/v1/p2p/sessions/in-2")[0] == 404
        for sid in ("in-1", "in-3"):
            assert api(leader.sock, "GET", f"/v1/p2p/sessions/{sid}?consistency=strong")[0] == 200

        # --no-wait: accepted once proposed, on the leader and through a follower; then applied.
        for n, sid in ((leader, "nw-1"), (follower, "nw-2")):
            tx = sign("SESSION_CREATE", {"session_id": sid, "title": "no wait", "steps": [{"step_id": sid + "a", "title": "a"}]})
            (tmp_path / f"{sid}.json").write_text(tx + "\n")
            r = submit(str(tmp_path / f"{sid}.json"), "--no-wait", "--json", sock=n.sock)
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["status"] == "accepted", r.stdout
            wait_for(lambda: api(n.sock, "GET", f"/v1/p2p/sessions/{sid}?consistency=strong")[0] == 200, what=f"{sid} applied")
            # Submitted again without waiting: its original result, not a second "accepted".
            r = submit(str(tmp_path / f"{sid}.json"), "--no-wait", "--json", sock=n.sock)
            again = json.loads(r.stdout)
            assert r.returncode == 0 and again["status"] == "applied" and again["duplicate"] is True, r.stdout
        # Same nonce, different tx, without waiting: REPLAYED at once.
        first = json.loads((tmp_path / "nw-1.json").read_text())
        reuse = json.loads(subprocess.run(
            f"echo '{json.dumps({'op': 'PARTICIPANT_JOIN', 'payload': {'session_id': 'in-1'}, 'nonce': first['nonce']})}'"
            f" | {B} tx sign --key {key} --cluster-id test-cluster -", shell=True, capture_output=True, text=True, env=env).stdout)
        code, body = api(leader.sock, "POST", "/v1/p2p/tx?wait=false", json.dumps(reuse).encode())
        assert code == 422 and body["code"] == "REPLAYED", body

        # p2pos api: any route, pretty-printed; an unknown one fails.
        r = subprocess.run([B, "api", "GET", "/v1/p2p/stats", "--socket", str(leader.sock)], capture_output=True, text=True, env=env, timeout=30)
        assert r.returncode == 0, r.stderr
        stats = json.loads(r.stdout)
        assert stats["sessions"] >= 4 and "\n  " in r.stdout, r.stdout
        r = subprocess.run([B, "api", "GET", "/v1/p2p/nope", "--socket", str(leader.sock)], capture_output=True, text=True, env=env, timeout=30)
        assert r.returncode == 1 and "HTTP 404" in r.stderr, (r.stdout, r.stderr)

        # Refused bodies change nothing: a float, a duplicate key, an oversized tx, a bad read mode.
        # (The counters, not last_applied_index, which an election's no-op entry would move.)
        counters = lambda n: {k: v for k, v in api(n.sock, "GET", "/v1/p2p/stats?consistency=strong")[1].items() if k != "last_applied_index"}
        before = [counters(n) for n in nodes]
        code, body = api(follower.sock, "POST", "/v1/p2p/tx", bad_text.encode())
        assert code == 400 and body["error"]["code"] == "MALFORMED" and "integer" in body["error"]["message"], body
        good = json.loads(sign("SESSION_CREATE", {"session_id": "dup-1", "title": "dup", "steps": [{"step_id": "dup-1a", "title": "a"}]}))
        dup_text = json.dumps(good, separators=(",", ":"))[:-1] + ',"op":"SESSION_CREATE"}'
        code, body = api(leader.sock, "POST", "/v1/p2p/tx", dup_text.encode())
        assert code == 400 and body["error"]["code"] == "MALFORMED" and "duplicate" in body["error"]["message"], body
        huge = dict(good, payload=dict(good["payload"], title="x" * (70 * 1024)))
        code, body = api(leader.sock, "POST", "/v1/p2p/tx", json.dumps(huge).encode())
        assert code == 422 and body["status"] == "rejected" and body["code"] == "TOO_LARGE", body
        code, body = api(leader.sock, "GET", "/v1/p2p/stats?consistency=sometimes")
        assert code == 400 and body["error"]["code"] == "MALFORMED", body
        after = [counters(n) for n in nodes]
        assert after == before and before[0] == before[1] == before[2], (before, after)
        assert all(api(n.sock, "GET", "/v1/p2p/sessions/dup-1")[0] == 404 for n in nodes)
    finally:
        for n in nodes:
            n.stop()
