"""A new system plus two joined nodes, as real processes on loopback."""
import json
import time

import pytest

from cluster import Node, api, make_cluster, wait_for


def test_three_nodes_healthy_degraded_and_back(tmp_path, env):
    nodes, out = make_cluster(tmp_path, env)
    a, b, c = nodes
    try:
        for n in nodes:
            n.start()
        assert a.state() == "healthy"          # one-node system from init
        assert b.state() == "unconfigured"
        r = a.cli("snapshot", "publish", "--data-dir", str(a.dir), "--add", b.peer_id, "--add", c.peer_id)
        assert r.returncode == 0, r.stderr
        for n in nodes:
            wait_for(lambda: n.state() == "healthy", what=f"{n.name} healthy")
        # status --cluster on every node lists all three with fresh last_seen_at
        for n in nodes:
            def all_fresh():
                peers = {p["peer_id"]: p for p in n.status(cluster=True)["peers"]}
                if set(peers) != {a.peer_id, b.peer_id, c.peer_id}:
                    return False
                from datetime import datetime, timezone
                now = datetime.now(timezone.utc)
                for p in peers.values():
                    ts = p["last_seen_at"]
                    if not ts:
                        return False
                    t = datetime.fromisoformat(ts.replace("Z", "+00:00")[:26] + "+00:00" if "." in ts else ts.replace("Z", "+00:00"))
                    if (now - t).total_seconds() > 10:
                        return False
                return True
            wait_for(all_fresh, what=f"{n.name} cluster view fresh")
        r = b.cli("status", "--cluster", "--socket", b.sock)
        assert r.returncode == 0 and "healthy" in r.stdout and c.peer_id in r.stdout, r.stdout + r.stderr
        assert c.stop() == 0                   # SIGTERM drains and exits 0
        for n in (a, b):
            wait_for(lambda: n.state() == "healthy" and n.status()["node"]["members_online"] == 2, what="2 of 3 healthy")
        assert b.stop() == 0
        wait_for(lambda: a.state() == "degraded", what="a degraded")
        b.start()
        c.start()
        for n in nodes:
            wait_for(lambda: n.state() == "healthy" and n.status()["node"]["members_online"] == 3, timeout=40, what=f"{n.name} back")
        assert "state_change" in a.logtext()
    finally:
        for n in nodes:
            n.stop()
