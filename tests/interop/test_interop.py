"""Interop between p2pos and py-libp2p 0.8.1, real processes on loopback.

Run: tests/interop/setup.sh && P2POS_BIN=.build/debug/p2pos .venv/bin/python -m pytest tests/interop -v
"""
import json
import re
import subprocess
import sys

from conftest import PY_PEER

FOUR_MIB = 4 * 1024 * 1024
PERF_BYTES = 16 * 1024 * 1024


def run_json(argv, timeout=120):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    assert lines, f"no JSON result (rc={r.returncode}): {r.stdout}\n{r.stderr}"
    return r.returncode, json.loads(lines[-1]), r.stderr


def test_p2pos_pings_py(p2pos, py_listener):
    r = subprocess.run([p2pos, "ping", py_listener.addr, "-n", "3"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(f"bytes from {py_listener.peer_id}") == 3
    assert "3 pings transmitted, 3 received, 0% packet loss" in r.stdout
    assert re.search(r"rtt min/avg/max = [\d.]+/[\d.]+/[\d.]+ ms", r.stdout)


def test_p2pos_dials_py_identify_echo_perf(p2pos, py_listener):
    rc, res, err = run_json([p2pos, "debug", "dial", py_listener.addr, "--ping", "3",
                             "--echo-bytes", str(FOUR_MIB),
                             "--perf-upload", str(PERF_BYTES), "--perf-download", str(PERF_BYTES)])
    assert rc == 0 and res["ok"], (res, err)
    assert res["peer"] == py_listener.peer_id
    ident = res["identify"]
    assert ident["peer_matches"] is True
    assert ident["agent_version"].startswith("py-libp2p")
    assert ident["protocol_version"] == "ipfs/0.1.0"
    assert "/ipfs/ping/1.0.0" in ident["protocols"]
    assert any(a.startswith("/ip4/127.0.0.1/tcp/") for a in ident["listen_addrs"])
    assert ident["observed_addr"].startswith("/ip4/127.0.0.1/tcp/")
    assert len(res["ping_ms"]) == 3
    assert res["echo_bytes"] == FOUR_MIB and res["echo_ok"] is True
    assert res["perf_upload_seconds"] > 0 and res["perf_download_seconds"] > 0


def test_py_dials_p2pos_identify_ping_echo_perf(p2pos_listener):
    rc, res, err = run_json([sys.executable, str(PY_PEER), "dial", p2pos_listener.addr, "--identify", "--pings", "3",
                             "--echo-bytes", str(FOUR_MIB), "--perf-up", str(PERF_BYTES), "--perf-down", str(PERF_BYTES)])
    assert rc == 0 and res["ok"], (res, err)
    assert res["peer"] == p2pos_listener.peer_id
    ident = res["identify"]
    assert ident["peer_matches"] is True
    assert ident["agent_version"].startswith("p2pos/")
    assert ident["protocol_version"] == "ipfs/0.1.0"
    for p in ("/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/perf/1.0.0", "/p2pos/echo/1.0.0"):
        assert p in ident["protocols"]
    assert p2pos_listener.addr.split("/p2p/")[0] in ident["listen_addrs"]
    assert ident["observed_addr"].startswith("/ip4/127.0.0.1/tcp/")
    assert len(res["ping_us"]) == 3
    assert res["echo_bytes"] == FOUR_MIB and res["echo_ok"] is True
    assert res["perf_ok"] is True


def test_py_sees_p2pos_identity_from_its_key(p2pos):
    """A fixed key gives the same peer ID that py-libp2p authenticates through Noise."""
    key = "CAESIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"
    from conftest import Proc
    proc = Proc([p2pos, "debug", "listen", "--listen", "/ip4/127.0.0.1/tcp/0", "--key-b64", key])
    try:
        rc, res, err = run_json([sys.executable, str(PY_PEER), "dial", proc.addr, "--pings", "1"])
        assert rc == 0 and res["ok"], (res, err)
        # Peer ID computed independently by py-libp2p from the same private key.
        from libp2p.crypto.serialization import deserialize_private_key
        from libp2p.peer.id import ID
        import base64
        sk = deserialize_private_key(base64.b64decode(key))
        assert res["peer"] == ID.from_pubkey(sk.get_public_key()).to_base58() == proc.peer_id
    finally:
        assert proc.stop() == 0


def test_p2pos_rejects_wrong_peer_id(p2pos, py_listener):
    other = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
    addr = py_listener.addr.split("/p2p/")[0] + "/p2p/" + other
    r = subprocess.run([p2pos, "ping", addr, "-n", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "dialed" in r.stderr and py_listener.peer_id in r.stderr


def test_py_dials_p2pos_over_ipv6(p2pos):
    from conftest import Proc
    proc = Proc([p2pos, "debug", "listen", "--listen", "/ip6/::1/tcp/0", "--echo"])
    try:
        assert proc.addr.startswith("/ip6/::1/tcp/")
        rc, res, err = run_json([sys.executable, str(PY_PEER), "dial", proc.addr, "--pings", "2", "--echo-bytes", "65536"])
        assert rc == 0 and res["ok"], (res, err)
        assert res["peer"] == proc.peer_id and res["echo_ok"] is True
    finally:
        assert proc.stop() == 0
