"""Where the p2pos binary under test is."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def binary() -> str:
    b = os.environ.get("P2POS_BIN") or str(ROOT / ".build" / "debug" / "p2pos")
    if not os.path.exists(b):
        pytest.exit(f"p2pos binary not found at {b}; run 'swift build' first", returncode=2)
    return b
