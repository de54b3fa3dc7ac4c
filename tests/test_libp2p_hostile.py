"""A live node's libp2p port against peers that misbehave in ways a real libp2p implementation
will not: sending without reading, answering identify with large address lists from many fresh
identities, opening members-only protocols."""
import sqlite3
import struct
import time

import rawp2p
from rawp2p import ACK, DATA, FIN, PING, SYN, WUP, ms_msg, pb_bytes, upgrade, uvarint, yhdr, yread
from test_raft_cluster import start_cluster


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


def test_a_peer_that_never_reads_cannot_grow_the_nodes_memory(tmp_path, env):
    (a,) = start_cluster(tmp_path, env, 1)
    try:
        rawp2p.TARGET = ("127.0.0.1", a.port)
        before = rss_kib(a.proc.pid)
        s, sec = upgrade()
        s.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
        s.settimeout(5)
        chunk = yhdr(PING, SYN, 0, 1) * 5000  # 60 KB of ping requests per Noise frame
        sent = 0
        end = time.time() + 20
        stalled = False
        try:
            while time.time() < end and sent < (300 << 20):
                sec.send(chunk)
                sent += len(chunk)
        except (TimeoutError, OSError):
            stalled = True  # the node stopped reading us: what it owes us stays bounded
        grown = (rss_kib(a.proc.pid) - before) // 1024
        print(f"sent {sent >> 20} MB of pings without reading; node RSS grew {grown} MB; stalled={stalled}")
        assert stalled, f"the node kept reading: {sent >> 20} MB sent"
        assert grown < 64, f"node RSS grew {grown} MB"
        s.close()
        # The node is fine afterwards.
        r = a.cli("ping", f"/ip4/127.0.0.1/tcp/{a.port}/p2p/{a.peer_id}", "-n", "1")
        assert r.returncode == 0, r.stderr
    finally:
        a.stop()


def identify_with_addrs(i, addr_len=900):
    """Connect with a fresh identity and answer the node's identify with 8 long addresses."""
    s, sec = upgrade(timeout=5)
    buf = {}
    end = time.time() + 5
    try:
        while time.time() < end:
            (_, typ, fl, sid, ln), body = yread(sec)
            if typ == PING and fl & SYN:
                sec.send(yhdr(PING, ACK, 0, ln))
                continue
            if typ != DATA or not body:
                continue
            buf[sid] = buf.get(sid, b"") + body
            if b"/ipfs/id/1.0.0\n" in buf[sid]:
                addrs = []
                for j in range(8):
                    name = (f"a{i}-{j}-" + "x" * addr_len)[:addr_len].encode()
                    addrs.append(uvarint(54) + uvarint(len(name)) + name + uvarint(6) + struct.pack(">H", 4100))
                msg = b"".join(pb_bytes(2, m) for m in addrs) + pb_bytes(5, b"ipfs/0.1.0") + pb_bytes(6, b"stranger/1")
                payload = ms_msg("/multistream/1.0.0") + ms_msg("/ipfs/id/1.0.0") + uvarint(len(msg)) + msg
                sec.send(yhdr(DATA, ACK, sid, len(payload)) + payload + yhdr(DATA, FIN, sid, 0))
                time.sleep(0.1)
                return True
        return False
    finally:
        s.close()


def test_strangers_leave_nothing_behind(tmp_path, env):
    (a,) = start_cluster(tmp_path, env, 1)
    try:
        rawp2p.TARGET = ("127.0.0.1", a.port)
        # Strangers answer identify with 8 addresses each: none of it is stored on disk.
        done = sum(identify_with_addrs(i) for i in range(20))
        assert done == 20
        time.sleep(1)
        db = sqlite3.connect(f"file:{a.dir / 'p2pos.db'}?mode=ro", uri=True)
        rows = db.execute("SELECT count(*) FROM meta WHERE key LIKE 'addrs:%'").fetchone()[0]
        db.close()
        assert rows == 0, f"{rows} stranger address rows stored"

        # Members-only protocols are refused during negotiation (na), before any handler runs.
        s, sec = upgrade()
        sid = 1
        for proto in ["/p2pos/raft/1.0.0", "/p2pos/tx/1.0.0"]:
            sec.send(yhdr(WUP, SYN, sid, 0) + yhdr(DATA, 0, sid, len(ms_msg("/multistream/1.0.0") + ms_msg(proto)))
                     + ms_msg("/multistream/1.0.0") + ms_msg(proto))
            got = b""
            end = time.time() + 5
            while time.time() < end and b"na\n" not in got and proto.encode() not in got:
                (_, typ, fl, rsid, ln), body = yread(sec)
                if typ == PING and fl & SYN:
                    sec.send(yhdr(PING, ACK, 0, ln))
                elif typ == DATA and rsid == sid:
                    got += body
            assert b"na\n" in got and proto.encode() not in got, (proto, got)
            sid += 2
        s.close()
        assert "action=refused" not in a.logtext()
    finally:
        a.stop()
