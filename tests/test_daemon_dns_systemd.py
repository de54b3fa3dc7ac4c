"""DNS-only bootstrap against a real dnsmasq on loopback, `p2pos dns resolve`, and systemd integration."""
import json
import os
import shutil
import socket
import subprocess
import time
import pathlib

import pytest

from binpath import binary
from cluster import Node, api, free_port, wait_for

ROOT = pathlib.Path(__file__).resolve().parent.parent


def udp_free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def dns_ready(port, proc, timeout=10.0):
    """True once dnsmasq answers a TXT query (any answer, NXDOMAIN included) on 127.0.0.1:port."""
    query = (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
             b"\x0bready-probe\x04test\x00\x00\x10\x00\x01")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.2)
        try:
            s.sendto(query, ("127.0.0.1", port))
            reply, _ = s.recvfrom(512)
            if reply[:2] == b"\x12\x34":
                return True
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    return False


@pytest.fixture
def dnsmasq(tmp_path):
    if not (shutil.which("dnsmasq") or os.path.exists("/usr/sbin/dnsmasq")):
        pytest.skip("dnsmasq is not installed (apt-get install dnsmasq-base)")
    procs = []

    def start(records):
        zone = tmp_path / "zone.txt"
        zone.write_text("\n".join(f"{n} {t}" for n, t in records) + "\n")
        # A free port can be taken between the check and dnsmasq's bind: try a few.
        for _ in range(5):
            port = udp_free_port()
            p = subprocess.Popen(["sh", str(ROOT / "tests/dns/dnsmasq-zone.sh"), str(port), str(zone)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            if dns_ready(port, p):
                return f"127.0.0.1:{port}"
        pytest.fail("dnsmasq did not start answering queries")

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=5)


def test_dns_resolve_command(dnsmasq, env):
    a, b = "12D3KooWJ1TsijH7H5F74hfAD5XishQz3sxrmAtVY37GtNd9CqYf", "12D3KooWDv2KKrGbDKEFSjfYXWkfidfu9j8DtdvwJJ6L8PrYmYab"
    server = dnsmasq([
        ("_dnsaddr.c.test", f"dnsaddr=/ip4/127.0.0.1/tcp/4100/p2p/{a}"),
        ("_dnsaddr.c.test", f"dnsaddr=/ip6/::1/tcp/4100/p2p/{a}"),
        ("_dnsaddr.c.test", f"dnsaddr=/ip4/127.0.0.2/tcp/4100/p2p/{b}"),
        ("_dnsaddr.c.test", "v=spf1 -all"),
        ("bare.test", f"/ip4/127.0.0.3/tcp/4100/p2p/{b}"),
    ])
    r = subprocess.run([binary(), "dns", "resolve", "c.test", "--server", server, "--json"], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    peers = {p["peer_id"]: p["addrs"] for p in out["peers"]}
    assert len(peers[a]) == 2 and len(peers[b]) == 1
    r = subprocess.run([binary(), "dns", "resolve", "bare.test", "--server", server], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 0 and b in r.stdout, r.stdout + r.stderr
    r = subprocess.run([binary(), "dns", "resolve", "nothing-here.test", "--server", server], capture_output=True, text=True, env=env, timeout=30)
    assert r.returncode == 1 and "nothing-here.test" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_node_bootstraps_from_dns_name_alone(tmp_path, env, dnsmasq):
    a = Node(tmp_path, "a", env)
    out = a.init_new(cluster="dns-cluster")
    server = dnsmasq([("_dnsaddr.boot.test", f"dnsaddr=/ip4/127.0.0.1/tcp/{a.port}/p2p/{a.peer_id}")])
    env_b = dict(env, P2POS_DNS_SERVER=server)
    b = Node(tmp_path, "b", env_b)
    b.init_join(out["system_pubkey"], ["dns:boot.test"], cluster=None)   # cluster id learned from the snapshot
    a.start()
    b.start()
    try:
        try:
            wait_for(lambda: b.peer_id in {p["peer_id"] for p in api(a.sock, "GET", "/v1/peers")[1]["peers"]}, what="b dialed a via DNS")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- b's log ---\n{b.logtext()[-4000:]}\n--- a's log ---\n{a.logtext()[-2000:]}") from None
        r = a.cli("snapshot", "publish", "--data-dir", str(a.dir), "--add", b.peer_id)
        assert r.returncode == 0, r.stderr
        wait_for(lambda: b.state() == "healthy" and a.state() == "healthy", what="both healthy")
        assert b.status()["node"]["cluster_id"] == "dns-cluster"
        assert "dns_resolved" in b.logtext()
    finally:
        a.stop()
        b.stop()


def test_unit_file_verifies():
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze not installed")
    unit = (ROOT / "packaging/p2pos.service").read_text().replace("@BIN@", "/bin/true").replace("@DATA_DIR@", "/var/lib/p2pos")
    d = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"unit-{os.getpid()}"
    d.mkdir(exist_ok=True)
    f = d / "p2pos.service"
    f.write_text(unit)
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(f)], capture_output=True, text=True, timeout=60)
    problems = [l for l in (r.stdout + r.stderr).splitlines() if "Unknown" in l or "Invalid" in l]
    assert r.returncode == 0, r.stdout + r.stderr
    assert not [l for l in problems if "Unknown" in l], problems


def test_sigterm_right_after_ready_stops_cleanly(tmp_path, env):
    """A service manager may stop the node the moment it reports READY=1, which the daemon
    sends from inside its start-up: the signal must neither kill it with the default action nor
    be lost (it used to be ignored until the handlers were installed after start-up)."""
    for i in range(3):
        sock_path = str(tmp_path / f"notify{i}.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(sock_path)
        s.settimeout(20)
        a = Node(tmp_path / f"r{i}", "a", dict(env, NOTIFY_SOCKET=sock_path))
        a.init_new(cluster="sd")
        a.start()
        try:
            while "READY=1" not in s.recv(4096).decode():
                pass
            a.proc.send_signal(15)
            assert a.proc.wait(timeout=15) == 0, a.logtext()[-2000:]
            assert "action=signal signal=SIGTERM" in a.logtext()
        finally:
            a.stop()
            s.close()


def test_sd_notify_ready_and_stopping(tmp_path, env):
    sock_path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(20)
    a = Node(tmp_path, "a", dict(env, NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="2000000"))
    a.init_new(cluster="sd")
    a.start()
    got = []
    try:
        deadline = time.time() + 10
        while time.time() < deadline and not any("WATCHDOG=1" in m for m in got):
            got.append(s.recv(4096).decode())
        assert any("READY=1" in m for m in got), got
        assert any("WATCHDOG=1" in m for m in got), got
    finally:
        assert a.stop() == 0
    s.settimeout(5)
    rest = []
    try:
        while True:
            rest.append(s.recv(4096).decode())
    except socket.timeout:
        pass
    assert any("STOPPING=1" in m for m in rest), rest
