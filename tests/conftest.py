"""Shared fixtures: the built p2pos binary and a helper to run it."""
import os
import subprocess
import pathlib
import pytest

from binpath import binary  # noqa: F401  (re-exported for tests)

ROOT = pathlib.Path(__file__).resolve().parent.parent


class Result:
    def __init__(self, cp):
        self.code = cp.returncode
        self.out = cp.stdout
        self.err = cp.stderr

    def kv(self):
        return dict(line.split("=", 1) for line in self.out.strip().splitlines())


@pytest.fixture
def env(tmp_path):
    """A clean environment for the real binary: no P2POS_* leaking in, a private HOME."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("P2POS_")}
    e["HOME"] = str(tmp_path / "home")
    return e


@pytest.fixture
def p2pos(tmp_path, env):
    """Run the real binary with a clean environment (no P2POS_* leaking in)."""
    env = dict(env)
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")

    def run(*args, input=None, extra_env=None, timeout=60):
        e = dict(env)
        if extra_env:
            e.update(extra_env)
        cp = subprocess.run([binary(), *args], input=input, capture_output=True, text=True,
                            env=e, timeout=timeout, cwd=str(tmp_path))
        return Result(cp)

    return run
