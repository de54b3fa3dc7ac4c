"""A short run of scripts/soak (the chaos soak): three real nodes under steady writes while
nodes are killed and restarted at random; it checks convergence, no lost acknowledged write,
and idempotent replay of every acknowledged tx. Longer runs: see README (Tests)."""
import os
import subprocess
import sys
import pathlib

from binpath import binary

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_short_chaos_soak(env):
    e = dict(env)
    e["P2POS_BIN"] = binary()
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak"), "--minutes", "0.5", "--writers", "2", "--seed", "7"],
                       capture_output=True, text=True, env=e, timeout=600)
    print(r.stdout[-3000:])
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-3000:]
    assert "soak passed" in r.stdout
