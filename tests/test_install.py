"""install.sh, as the README uses it, into a DESTDIR: installs everything, and a second run changes nothing."""
import os
import subprocess
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_install(destdir, *args):
    env = dict(os.environ, DESTDIR=str(destdir))
    return subprocess.run([str(ROOT / "install.sh"), "--prefix", "/usr/local", "--data-dir", "/var/lib/p2pos", *args],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), stdin=subprocess.DEVNULL, timeout=1800)


def test_install_twice_is_safe(tmp_path):
    dest = tmp_path / "root"
    r = run_install(dest, "--new-system", "--cluster-id", "inst-test")
    assert r.returncode == 0, r.stdout + r.stderr
    binp = dest / "usr/local/bin/p2pos"
    assert os.access(binp, os.X_OK)
    for f in ("share/man/man1/p2pos.1", "share/bash-completion/completions/p2pos",
              "share/zsh/site-functions/_p2pos", "share/fish/vendor_completions.d/p2pos.fish"):
        assert (dest / "usr/local" / f).exists(), f
    data = dest / "var/lib/p2pos"
    cfg1 = (data / "config.json").read_text()
    peer = subprocess.run([str(binp), "id", "--data-dir", str(data)], capture_output=True, text=True).stdout.split()[0]
    assert peer.startswith("12D3KooW")
    r = run_install(dest, "--new-system", "--cluster-id", "inst-test", "--systemd")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "keeping the existing node" in r.stdout
    unit = (dest / "etc/systemd/system/p2pos.service").read_text()
    assert "ExecStart=/usr/local/bin/p2pos node run --data-dir /var/lib/p2pos" in unit and "Type=notify" in unit
    assert (data / "config.json").read_text() == cfg1
    assert run_install(dest, "--bogus").returncode == 2
