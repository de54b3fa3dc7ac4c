"""The README's "run it" command: `p2pos node run --dev` in a fresh directory, then the three
commands it prints, each of which must work."""
import os
import shlex
import subprocess
import time

from binpath import binary


def test_dev_node_and_the_commands_it_suggests(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2POS_")}
    env["HOME"] = str(tmp_path / "home")
    log = open(tmp_path / "dev.log", "w")
    p = subprocess.Popen([binary(), "node", "run", "--dev"], cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                         stderr=log, text=True)
    try:
        lines = []
        deadline = time.time() + 30
        while time.time() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.startswith("Stop with"):
                break
        text = "\n".join(lines)
        assert "is running" in text, text
        suggested = [l.strip() for l in lines if l.startswith("  ")]
        assert len(suggested) == 3, text
        for cmd in suggested:
            argv = shlex.split(cmd)
            if argv[0] == "p2pos":
                argv[0] = binary()
            r = subprocess.run(argv, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, (cmd, r.stdout, r.stderr)
            if "status" in cmd:
                assert "healthy" in r.stdout, r.stdout
        assert (tmp_path / "p2pos-dev" / "config.json").exists()
    finally:
        p.terminate()
        assert p.wait(timeout=15) == 0
        log.close()
