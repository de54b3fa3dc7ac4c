"""Raft with real processes: leader kill -9, catch-up through a snapshot, a minority that never commits."""
import json
import os
import sys
import threading
import time
import pathlib

import nacl.signing
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "ledger"))
import sign_tx  # noqa: E402  (the documented Python signer)

from cluster import Node, api, make_cluster, wait_for


def new_tx(sk, cluster, i, prefix="s"):
    payload = {"session_id": f"{prefix}{i}", "title": f"session {i}", "steps": [{"step_id": f"{prefix}{i}-a", "title": "a"}]}
    return sign_tx.sign_tx(sk, "SESSION_CREATE", payload, cluster, nonce=f"{prefix}-{i}", ts=sign_tx.utc_now_rfc3339())[0]


def raft(n):
    return api(n.sock, "GET", "/v1/p2p/raft", timeout=3)[1]


def start_cluster(tmp_path, env, n, **raft_config):
    nodes, out = make_cluster(tmp_path, env, n)
    for x in nodes:
        if raft_config:
            x.tune(**raft_config)
        x.start()
    a = nodes[0]
    args = ["snapshot", "publish", "--data-dir", str(a.dir)]
    if n == 1:
        args += ["--members", a.peer_id]
    for x in nodes[1:]:
        args += ["--add", x.peer_id]
    r = a.cli(*args)
    assert r.returncode == 0, r.stderr
    wait_for(lambda: len(raft(a)["voters"]) == n and all(raft(x)["leader"] for x in nodes), timeout=60, what="all voters")
    return nodes


def submit(nodes, tx, deadline=20):
    """Submit to any live node until it is applied; returns the result."""
    end = time.time() + deadline
    while time.time() < end:
        for n in nodes:
            if n.proc is None or n.proc.poll() is not None:
                continue
            try:
                code, body = api(n.sock, "POST", "/v1/p2p/tx", tx, timeout=10)
            except OSError:
                continue
            if code == 200 and body.get("status") == "applied":
                return body
            if code == 422:
                return body
        time.sleep(0.05)
    raise AssertionError("tx never applied")


def wait_converged(nodes, timeout):
    """Wait until every node applied the same index, and everything it knows committed."""
    def converged():
        rs = [raft(n) for n in nodes]
        return len({r["applied_index"] for r in rs}) == 1 and rs[0]["applied_index"] >= rs[0]["commit_index"]
    wait_for(converged, timeout=timeout, what="every node applied the same index")


def leader_of(nodes):
    for n in nodes:
        if n.proc and n.proc.poll() is None:
            try:
                r = raft(n)
            except OSError:
                continue
            if r["role"] == "leader":
                return n
    return None


def test_leader_kill9_keeps_committing(tmp_path, env):
    nodes = start_cluster(tmp_path, env, 3)
    try:
        sk = nacl.signing.SigningKey.generate()
        acked = []
        stop = threading.Event()
        errors = []

        def writer():
            i = 0
            while not stop.is_set():
                try:
                    r = submit(nodes, new_tx(sk, "test-cluster", i))
                    if r.get("status") == "applied":
                        acked.append(f"s{i}")
                except AssertionError as e:
                    errors.append(str(e))
                i += 1

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        wait_for(lambda: len(acked) >= 20, what="writes before the kill")
        old = leader_of(nodes)
        assert old is not None
        killed_at = time.time()
        old.stop(sig="KILL")
        survivors = [n for n in nodes if n is not old]
        new = wait_for(lambda: (l := leader_of(survivors)) and l, timeout=10, interval=0.05, what="new leader")
        elapsed = time.time() - killed_at
        assert elapsed < 3.0, f"new leader after {elapsed:.2f}s"
        count = len(acked)
        wait_for(lambda: len(acked) >= count + 20, what="writes after the kill")
        old.start()
        stop.set()
        t.join(timeout=30)
        assert not errors, errors[:3]
        # Converge: same applied index and identical ledger stats everywhere; every acked session everywhere.
        wait_converged(nodes, timeout=30)
        stats = [api(n.sock, "GET", "/v1/p2p/stats")[1] for n in nodes]
        assert stats[0] == stats[1] == stats[2], stats
        for sid in acked:
            for n in nodes:
                code, _ = api(n.sock, "GET", f"/v1/p2p/sessions/{sid}")
                assert code == 200, (sid, n.name)
        print(f"new leader elected {elapsed:.2f}s after kill -9; {len(acked)} acknowledged writes, none lost")
    finally:
        for n in nodes:
            n.stop()


def test_lagging_node_catches_up_through_snapshot(tmp_path, env):
    nodes = start_cluster(tmp_path, env, 3)
    a, b, c = nodes
    try:
        c.stop()
        sk = nacl.signing.SigningKey.generate()
        leader = leader_of([a, b])
        total = 10_000
        batch = 500
        for start in range(0, total, batch):
            txs = [new_tx(sk, "test-cluster", i, prefix="cu") for i in range(start, start + batch)]
            code, body = api(leader.sock, "POST", "/v1/p2p/tx", {"txs": txs}, timeout=120)
            assert code == 200, body
            assert all(r["status"] == "applied" for r in body["results"]), body["results"][:2]
        c.start()
        target = raft(leader)["applied_index"]
        wait_for(lambda: raft(c)["applied_index"] >= target, timeout=120, what="c caught up")
        assert "snapshot_installed" in c.logtext()
        sa = api(a.sock, "GET", "/v1/p2p/stats")[1]
        sc = api(c.sock, "GET", "/v1/p2p/stats")[1]
        assert sa["sessions"] == sc["sessions"] >= total
        assert api(c.sock, "GET", f"/v1/p2p/sessions/cu{total - 1}")[0] == 200
        # The installed snapshot is one file next to raft.db, and a restart loads it from there.
        # (A compaction of its own deletes the older file just after it, off the Raft thread.)
        wait_for(lambda: len(list(pathlib.Path(c.dir).glob("raft-snapshot-*.bin"))) == 1, timeout=10,
                 what="one snapshot file")
        # It was written there chunk by chunk as it arrived; no staging file is left behind.
        assert not list(pathlib.Path(c.dir).glob("raft-snapshot-*.tmp"))
        c.stop()
        c.start()
        wait_for(lambda: raft(c)["applied_index"] >= target, timeout=60, what="c after restart")
        assert api(c.sock, "GET", f"/v1/p2p/sessions/cu{total - 1}")[0] == 200
        # The ledger is derived state: without ledger.db, a restart rebuilds it from the
        # snapshot file (read in place, a row at a time) and the log after it.
        c.stop()
        for p in pathlib.Path(c.dir).glob("ledger.db*"):
            p.unlink()
        c.start()
        wait_for(lambda: raft(c)["applied_index"] >= target, timeout=60, what="c with a rebuilt ledger")
        assert api(c.sock, "GET", f"/v1/p2p/sessions/cu{total - 1}")[0] == 200
        assert api(c.sock, "GET", "/v1/p2p/stats")[1]["sessions"] == sa["sessions"]
    finally:
        for n in nodes:
            n.stop()


def big_tx(sk, cluster, i):
    """A session of ~53 KB (50 steps with 1,000-byte titles): a few hundred make a snapshot that
    takes long enough to send for a test to kill the receiver in the middle of it."""
    steps = [{"step_id": f"big{i}-{j}", "title": f"{j:04d}" + "x" * 996} for j in range(50)]
    payload = {"session_id": f"big{i}", "title": "big", "steps": steps}
    return sign_tx.sign_tx(sk, "SESSION_CREATE", payload, cluster, nonce=f"big-{i}", ts=sign_tx.utc_now_rfc3339())[0]


def test_kill9_while_receiving_a_snapshot(tmp_path, env):
    """kill -9 a follower while a snapshot streams into its staging file: the restart drops the
    partial file, takes the snapshot again, and ends with the same state as the leader."""
    # Compact every 256 entries, so the leader keeps no log for c to catch up from.
    nodes = start_cluster(tmp_path, env, 3, snapshot_entries=256)
    a, b, c = nodes
    try:
        c.stop()
        sk = nacl.signing.SigningKey.generate()
        leader = leader_of([a, b])
        total, batch = 1200, 60
        for start in range(0, total, batch):
            txs = [big_tx(sk, "test-cluster", i) for i in range(start, start + batch)]
            code, body = api(leader.sock, "POST", "/v1/p2p/tx", {"txs": txs}, timeout=120)
            assert code == 200, body
            assert all(r["status"] == "applied" for r in body["results"]), body["results"][:2]
        # The leader compacts its log behind a snapshot, so c can only catch up through one.
        wait_for(lambda: raft(leader).get("snapshot_index", 0) > 0, timeout=60, what="a compaction snapshot on the leader")
        target = raft(leader)["applied_index"]
        cdir = pathlib.Path(c.dir)
        seen = {}
        stop = threading.Event()

        def killer():
            # Kill c as soon as its staging file holds more than 1 MiB (the snapshot is far bigger).
            while not stop.is_set():
                for p in cdir.glob("raft-snapshot-*.tmp"):
                    try:
                        size = p.stat().st_size
                    except FileNotFoundError:
                        continue
                    if size > (1 << 20) and c.proc is not None:
                        c.proc.kill()
                        seen["tmp"] = (p.name, size)
                        return
                time.sleep(0.005)

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        c.start()
        t.join(timeout=60)
        stop.set()
        assert "tmp" in seen, "c's staging file never passed 1 MiB"
        c.proc.wait(timeout=10)
        c.stop()
        assert c.proc.returncode == -9
        # Killed in the middle: nothing was installed and the partial file is still there.
        assert "snapshot_installed" not in c.logtext()
        assert list(cdir.glob("raft-snapshot-*.tmp")), "the partial staging file should survive the kill"
        c.start()
        # The restart removes the partial file when it opens its Raft storage (the control socket,
        # which start() waits for, may answer a moment before that).
        wait_for(lambda: not (cdir / seen["tmp"][0]).exists(), timeout=10, what="the partial staging file removed at restart")
        wait_for(lambda: raft(c)["applied_index"] >= target, timeout=120, what="c caught up after the kill")
        assert "snapshot_installed" in c.logtext()
        # Once caught up, c compacts on its own (every 256 entries here), and a compaction
        # writes its snapshot through a .tmp file too: so the check is that the files settle to
        # one snapshot and no partial file, not that none exists at this instant.
        wait_for(lambda: len(list(cdir.glob("raft-snapshot-*.bin"))) == 1 and not list(cdir.glob("raft-snapshot-*.tmp")),
                 timeout=30, what="one snapshot file and no partial one in c's data dir")
        sa = api(a.sock, "GET", "/v1/p2p/stats")[1]
        wait_for(lambda: api(c.sock, "GET", "/v1/p2p/stats")[1] == api(a.sock, "GET", "/v1/p2p/stats")[1],
                 timeout=30, what="identical stats on a and c")
        assert sa["sessions"] >= total
        code, body = api(c.sock, "GET", f"/v1/p2p/sessions/big{total - 1}")
        assert code == 200 and len(body["steps"]) == 50, (code, str(body)[:300])
        print(f"killed c with {seen['tmp'][1]} bytes staged; it caught up to {target} after the restart")
    finally:
        for n in nodes:
            n.stop()


def test_two_node_minority_never_commits(tmp_path, env):
    nodes = start_cluster(tmp_path, env, 5)
    try:
        sk = nacl.signing.SigningKey.generate()
        submit(nodes, new_tx(sk, "test-cluster", 0, prefix="m"))
        for n in nodes[2:]:
            n.stop()
        minority = nodes[:2]
        before = [raft(n)["commit_index"] for n in minority]
        for i in range(1, 6):
            for n in minority:
                code, body = api(n.sock, "POST", "/v1/p2p/tx", new_tx(sk, "test-cluster", i, prefix="m"), timeout=15)
                assert code != 200, body
        time.sleep(3)
        after = [raft(n)["commit_index"] for n in minority]
        assert after == before, (before, after)
        for n in minority:
            assert api(n.sock, "GET", "/v1/p2p/sessions/m1")[0] == 404
    finally:
        for n in nodes:
            n.stop()


def test_ledger_survives_kill9_and_is_rebuilt_after_a_machine_crash(tmp_path, env):
    """The ledger is written without fsync (it is derived from the fsynced Raft log). A killed
    process keeps it as is (same boot id); a crash of the machine — simulated here by another boot
    id in ledger.state and a torn ledger.db — makes the node discard it and rebuild the same state
    from the Raft snapshot and log. A clean stop records `clean`."""
    nodes = start_cluster(tmp_path, env, 1, snapshot_entries=64)
    (a,) = nodes
    try:
        sk = nacl.signing.SigningKey.generate()
        for i in range(120):
            assert submit(nodes, new_tx(sk, "test-cluster", i))["status"] == "applied"

        def view():
            stats = api(a.sock, "GET", "/v1/p2p/stats")[1]
            stats.pop("last_applied_index")   # each restart's leader adds an empty entry
            sessions = [api(a.sock, "GET", f"/v1/p2p/sessions/s{i}")[1] for i in range(0, 120, 7)]
            events = [api(a.sock, "GET", f"/v1/p2p/sessions/s{i}/events")[1] for i in range(0, 120, 7)]
            return stats, sessions, events

        def restart():
            a.start()
            wait_for(lambda: raft(a)["role"] == "leader" and raft(a)["applied_index"] >= raft(a)["commit_index"], timeout=60, what="leader applied")

        before = view()
        assert before[0]["sessions"] == 120, before[0]
        state = a.dir / "ledger.state"
        assert state.read_text().startswith("open "), state.read_text()
        assert list(a.dir.glob("raft-snapshot-*.bin")), "a compaction snapshot should exist"
        # Snapshots are built on a thread of their own at nice 19; the process itself keeps its
        # priority (field 19 of /proc/PID/task/TID/stat is the thread's nice value).
        def nice(task):
            return int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
        tasks = list(pathlib.Path(f"/proc/{a.proc.pid}/task").iterdir())
        builders = [t for t in tasks if (t / "comm").read_text().strip() == "p2pos-snapshot"]
        base = os.getpriority(os.PRIO_PROCESS, 0)
        assert len(builders) == 1, [(t / "comm").read_text() for t in tasks]
        assert nice(builders[0]) == min(19, base + 19)
        assert nice(pathlib.Path(f"/proc/{a.proc.pid}/task/{a.proc.pid}")) == base

        a.stop(sig="KILL")
        restart()
        assert view() == before
        assert "ledger_rebuild" not in a.logtext()

        a.stop(sig="KILL")
        state.write_text("open 00000000-0000-0000-0000-000000000000\n")
        with open(a.dir / "ledger.db", "r+b") as f:
            f.write(b"\0" * 4096)   # a torn first page: not even a database any more
        restart()
        assert "ledger_rebuild" in a.logtext()
        assert view() == before

        # Still writable after the rebuild.
        assert submit(nodes, new_tx(sk, "test-cluster", 500))["status"] == "applied"
        a.stop()
        assert state.read_text().strip() == "clean"
        restart()
        after = view()
        assert after[0]["sessions"] == 121
        assert after[1:] == before[1:]
    finally:
        a.stop()


def test_follower_forwards_a_burst_of_writes(tmp_path, env):
    """Writes sent to a follower reach the leader even when they come faster than the per-peer
    stream rate limit that protects a node from strangers (100 new streams a second): a member's
    forwarded writes are never refused for their rate."""
    nodes = start_cluster(tmp_path, env, 3)
    try:
        leader = wait_for(lambda: leader_of(nodes), what="a leader")
        follower = next(n for n in nodes if n is not leader)
        keys = [nacl.signing.SigningKey.generate() for _ in range(8)]
        results, lock = [], threading.Lock()

        def client(k):
            for i in range(60):
                code, body = api(follower.sock, "POST", "/v1/p2p/tx", new_tx(keys[k], "test-cluster", i, prefix=f"f{k}-"), timeout=30)
                with lock:
                    results.append((code, body))

        started = time.time()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(len(keys))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        elapsed = time.time() - started
        bad = [(c, b) for c, b in results if c != 200 or b.get("status") != "applied"]
        assert len(results) == 480 and not bad, (len(bad), bad[:3])
        print(f"480 writes through a follower in {elapsed:.2f}s ({480 / elapsed:.0f}/s), all applied")
    finally:
        for n in nodes:
            n.stop()


def test_retry_after_the_ts_window_answers_the_original_result(tmp_path, env):
    """A tx is admitted only within ±5 min of its ts, but a retry of one already applied — say
    after a long outage — answers its original result from any node, not EXPIRED (a client that
    re-signed on EXPIRED would apply its operation twice). An old tx never applied stays
    EXPIRED and changes nothing."""
    import datetime

    def ts(offset):
        t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset)
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    nodes = start_cluster(tmp_path, env, 3)
    try:
        leader = wait_for(lambda: leader_of(nodes), what="a leader")
        follower = next(n for n in nodes if n is not leader)
        sk = nacl.signing.SigningKey.generate()

        def tx(i, offset):
            payload = {"session_id": f"old{i}", "title": "t", "steps": [{"step_id": f"old{i}-a", "title": "a"}]}
            return sign_tx.sign_tx(sk, "SESSION_CREATE", payload, "test-cluster", nonce=f"old-{i}", ts=ts(offset))[0]

        signed_at = time.time()
        first_tx = tx(1, -296)
        code, first = api(follower.sock, "POST", "/v1/p2p/tx", first_tx)
        assert code == 200 and first["status"] == "applied", first
        stats = api(leader.sock, "GET", "/v1/p2p/stats?consistency=strong")[1]

        for i, offset in [(2, -600), (3, 600)]:
            for n in (leader, follower):
                code, body = api(n.sock, "POST", "/v1/p2p/tx", tx(i, offset))
                assert code == 422 and body["code"] == "EXPIRED" and body["error"]["code"] == "EXPIRED", body

        time.sleep(max(0, signed_at + 6 - time.time()))   # the first tx's ts is now > 300 s old
        for n in nodes:
            code, again = api(n.sock, "POST", "/v1/p2p/tx", first_tx)
            assert code == 200 and again.get("duplicate") is True, (n.name, again)
            assert {k: again[k] for k in ("tx_id", "status", "raft_index", "event_seq")} == \
                   {k: first[k] for k in ("tx_id", "status", "raft_index", "event_seq")}, (n.name, again, first)
        # Nothing was proposed for the expired txs or the retries.
        for n in nodes:
            assert api(n.sock, "GET", "/v1/p2p/stats?consistency=strong")[1] == stats
            assert api(n.sock, "GET", "/v1/p2p/sessions/old2")[0] == 404
    finally:
        for n in nodes:
            n.stop()


@pytest.mark.parametrize("victim", ["follower", "leader"])
def test_replace_a_member_under_writes(tmp_path, env, victim):
    """The operator's way to replace a machine, while clients keep writing: a new node joins
    (as a learner first: `raft.max_voters` is 3), catches up through a snapshot, and becomes a
    voter when an old member — a follower, or the leader itself — is removed from the membership
    snapshot. No acknowledged write is lost; the remaining members converge; the removed node
    stops taking writes."""
    nodes = start_cluster(tmp_path, env, 3, snapshot_entries=100, max_voters=3)
    a, b, c = nodes
    system_pubkey = json.loads((a.dir / "config.json").read_text())["system_pubkey"]
    d = Node(tmp_path, "d", env)
    try:
        sk = nacl.signing.SigningKey.generate()
        acked, errors = [], []
        stop = threading.Event()
        live = list(nodes)

        def writer():
            i = 0
            while not stop.is_set():
                try:
                    r = submit(list(live), new_tx(sk, "test-cluster", i))
                    if r.get("status") == "applied":
                        acked.append(f"s{i}")
                    else:
                        errors.append(r)
                except AssertionError as e:
                    errors.append(str(e))
                i += 1

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        wait_for(lambda: len(acked) >= 300, timeout=60, what="writes before the join")

        d.init_join(system_pubkey, [f"/ip4/127.0.0.1/tcp/{a.port}/p2p/{a.peer_id}"])
        d.tune(snapshot_entries=100, max_voters=3)
        d.start()
        r = a.cli("snapshot", "publish", "--data-dir", str(a.dir), "--add", d.peer_id)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: d.peer_id in raft(leader_of(live))["learners"], timeout=60, what="d as a learner")
        wait_for(lambda: raft(d)["applied_index"] >= raft(leader_of(live))["commit_index"] - 50, timeout=60, what="d caught up")
        assert raft(d)["snapshot_index"] > 0, "d should have caught up through a snapshot"
        live.append(d)

        leader = leader_of(live)
        gone = leader if victim == "leader" else next(n for n in (a, b, c) if n is not leader)
        members = [n for n in (a, b, c, d) if n is not gone]
        r = a.cli("snapshot", "publish", "--data-dir", str(a.dir), "--remove", gone.peer_id)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: (l := leader_of(members)) is not None and sorted(raft(l)["voters"]) == sorted(n.peer_id for n in members),
                 timeout=60, what=f"d promoted, {gone.name} removed")
        live.remove(gone)
        count = len(acked)
        wait_for(lambda: len(acked) >= count + 200, timeout=60, what="writes after the change")
        # The removed node no longer takes writes.
        code, body = api(gone.sock, "POST", "/v1/p2p/tx", new_tx(sk, "test-cluster", 10**6))
        assert code != 200, body
        stop.set()
        t.join(timeout=60)
        assert not errors, errors[:3]
        wait_converged(members, timeout=60)
        stats = [api(n.sock, "GET", "/v1/p2p/stats")[1] for n in members]
        assert stats[0] == stats[1] == stats[2], stats
        for sid in acked[::7] + acked[-5:]:
            for n in members:
                assert api(n.sock, "GET", f"/v1/p2p/sessions/{sid}")[0] == 200, (sid, n.name)
        print(f"{len(acked)} acknowledged writes across a join and the removal of the {victim}, none lost")
    finally:
        stop.set()
        for n in nodes + [d]:
            n.stop()
