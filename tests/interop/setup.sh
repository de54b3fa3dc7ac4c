#!/usr/bin/env bash
# Create .venv at the repository root with py-libp2p 0.8.1 and pytest (tests/requirements.txt).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
.venv/bin/python -c "import libp2p, importlib.metadata as m; print('py-libp2p', m.version('libp2p'))"
