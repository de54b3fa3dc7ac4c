"""Helpers to run real p2pos node processes on loopback for multi-node tests."""
import json
import os
import socket
import subprocess
import time
import http.client

from binpath import binary


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=10):
        super().__init__("p2pos", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def api(sock, method, path, body=None, timeout=10):
    c = UnixHTTP(sock, timeout=timeout)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    r = c.getresponse()
    raw = r.read()
    c.close()
    try:
        return r.status, json.loads(raw)
    except Exception:
        return r.status, raw.decode(errors="replace")


class Node:
    def __init__(self, root, name, env):
        self.dir = root / name
        self.name = name
        self.env = env
        self.port = free_port()
        self.proc = None
        self.log = None
        self.peer_id = None

    @property
    def sock(self):
        return str(self.dir / "p2pos.sock")

    @property
    def addr(self):
        return f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{self.peer_id}"

    def cli(self, *args, timeout=60, input=None):
        return subprocess.run([binary(), *args], capture_output=True, text=True, env=self.env, timeout=timeout, input=input)

    def tune(self, **raft):
        """Fast heartbeats for tests (config stays 0600)."""
        cfg_path = self.dir / "config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["heartbeat"] = {"interval": "1s", "window": "5m"}
        cfg["log"] = {"level": "debug", "format": "kv"}
        if raft:
            cfg.setdefault("raft", {}).update(raft)
        cfg_path.write_text(json.dumps(cfg, indent=2))
        os.chmod(cfg_path, 0o600)

    def init_new(self, cluster="test-cluster"):
        r = self.cli("init", "--new-system", "--cluster-id", cluster, "--data-dir", str(self.dir),
                     "--listen", f"127.0.0.1:{self.port}", "--json")
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        self.peer_id = out["peer_id"]
        self.tune()
        return out

    def init_join(self, system_pubkey, bootstrap, cluster="test-cluster"):
        args = ["init", "--join", "--system-pubkey", system_pubkey, "--data-dir", str(self.dir),
                "--listen", f"127.0.0.1:{self.port}", "--json"]
        if cluster:
            args += ["--cluster-id", cluster]
        for b in bootstrap:
            args += ["--bootstrap", b]
        r = self.cli(*args)
        assert r.returncode == 0, r.stderr
        self.peer_id = json.loads(r.stdout)["peer_id"]
        self.tune()

    def start(self):
        self.log = open(self.dir / "node.log", "ab")
        self.proc = subprocess.Popen([binary(), "node", "run", "--data-dir", str(self.dir)],
                                     stdout=self.log, stderr=self.log, env=self.env)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.logtext()[-3000:]}")
            if os.path.exists(self.sock):
                try:
                    if api(self.sock, "GET", "/healthz", timeout=2)[0] == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not start: {self.logtext()[-3000:]}")

    def stop(self, sig="TERM"):
        if self.proc and self.proc.poll() is None:
            if sig == "KILL":
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log:
            self.log.close()
            self.log = None
        return self.proc.returncode if self.proc else None

    def logtext(self):
        try:
            return (self.dir / "node.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def status(self, cluster=False):
        code, body = api(self.sock, "GET", "/v1/status" + ("?scope=cluster" if cluster else ""))
        assert code == 200, body
        return body

    def state(self):
        return self.status()["node"]["state"]


def wait_for(cond, timeout=30, interval=0.2, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = cond()
            if last:
                return last
        except (OSError, AssertionError, KeyError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last={last!r}")


def make_cluster(tmp_path, env, n=3):
    a = Node(tmp_path, "a", env)
    out = a.init_new()
    nodes = [a]
    for i in range(1, n):
        x = Node(tmp_path, chr(ord("a") + i), env)
        x.init_join(out["system_pubkey"], [f"/ip4/127.0.0.1/tcp/{a.port}/p2p/{a.peer_id}"])
        nodes.append(x)
    return nodes, out
