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
        for i, (key, op, payload) in enumerate(steps):
            target = nodes[i % 3]          # followers forward to the leader
            cmd = (f"{B} tx sign --key {key} --cluster-id test-cluster --op {op} --payload '{json.dumps(payload)}'"
                   f" | {B} tx submit - --socket {target.sock} --json")
            r = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=env, timeout=60)
            assert r.returncode == 0, (op, r.stdout, r.stderr)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            assert res["status"] == "applied", (op, res)
        # Replaying the last tx answers its original result.
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
        # Open steps list is empty and a second signing of the same request gets its own nonce.
        code, open_steps = api(nodes[0].sock, "GET", "/v1/p2p/sessions/rel-1/steps/open")
        assert code == 200
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
