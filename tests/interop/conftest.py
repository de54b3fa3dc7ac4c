import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY_PEER = Path(__file__).resolve().parent / "py_peer.py"


def p2pos_bin() -> str:
    b = os.environ.get("P2POS_BIN")
    if b:
        return b
    for cand in (ROOT / ".build/release/p2pos", ROOT / ".build/debug/p2pos"):
        if cand.exists():
            return str(cand)
    found = shutil.which("p2pos")
    if not found:
        pytest.skip("set P2POS_BIN to the p2pos binary")
    return found


@pytest.fixture(scope="session")
def p2pos():
    b = p2pos_bin()
    # The interop commands must be wired in the CLI (see docs/libp2p.md).
    r = subprocess.run([b, "ping", "/ip4/127.0.0.1/tcp/1", "-n", "1"], capture_output=True, text=True, timeout=20)
    if "not implemented" in (r.stderr + r.stdout):
        pytest.skip("the p2pos CLI does not wire `ping` / `debug listen` / `debug dial` yet")
    return b


class Proc:
    """A background process whose first stdout line is a multiaddr."""

    def __init__(self, argv, timeout=20.0):
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + timeout
        line = ""
        while time.time() < deadline:
            line = self.p.stdout.readline()
            if line.strip() or self.p.poll() is not None:
                break
        if not line.strip():
            self.stop()
            raise RuntimeError(f"{argv[0]} printed no address: {self.p.stderr.read()}")
        self.addr = line.strip()
        self.peer_id = self.addr.split("/p2p/")[-1]

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


@pytest.fixture
def py_listener():
    proc = Proc([sys.executable, str(PY_PEER), "listen"])
    yield proc
    proc.stop()


@pytest.fixture
def p2pos_listener(p2pos):
    proc = Proc([p2pos, "debug", "listen", "--listen", "/ip4/127.0.0.1/tcp/0", "--echo", "--perf"])
    yield proc
    rc = proc.stop()
    assert rc == 0, "p2pos debug listen must exit 0 on SIGTERM"
