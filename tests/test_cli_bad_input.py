"""Bad input gives one clear line on stderr, a non-zero exit, and writes nothing."""
import base64
import json
import os


def one_line(err):
    lines = [l for l in err.strip().splitlines() if l]
    assert len(lines) == 1, err
    return lines[0]


def test_truncated_and_garbled_keys(p2pos, tmp_path):
    good = p2pos("keygen").kv()["NODE_PRIV_B64"]
    for bad, why in [(good[:20], "protobuf"), (good[:-3], "base64"), ("!!!notbase64!!!", "base64"), ("", "base64")]:
        out = tmp_path / "k.env"
        r = p2pos("keygen", "--node-priv", bad, "--out", str(out))
        assert r.code == 2, (bad, r.err)
        assert why in one_line(r.err)
        assert not out.exists()


def test_wrong_protobuf_key_type(p2pos):
    raw = base64.b64decode(p2pos("keygen").kv()["NODE_PRIV_B64"])
    rsa = base64.b64encode(b"\x08\x00" + raw[2:]).decode()
    r = p2pos("keygen", "--node-priv", rsa)
    assert r.code == 2
    assert "unsupported key type 0" in one_line(r.err)


def test_world_readable_key_file_refused(p2pos, tmp_path):
    d = tmp_path / "n"
    assert p2pos("init", "--new-system", "--data-dir", str(d)).code == 0
    os.chmod(d / "config.json", 0o644)
    r = p2pos("id", "--data-dir", str(d))
    assert r.code == 1
    line = one_line(r.err)
    assert "accessible by group or others" in line and "chmod 600" in line


def test_unknown_flags_and_commands(p2pos):
    for args in (["keygen", "--bogus"], ["init", "--new-system", "--nope"], ["frobnicate"], ["node", "walk"], ["ping"]):
        r = p2pos(*args)
        assert r.code == 2, args
        line = one_line(r.err)
        assert "help" in line


def test_config_wrong_type_names_file_and_field(p2pos, tmp_path):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"cluster_id": "c", "listen": 4100}))
    os.chmod(cfg, 0o600)
    before = sorted(os.listdir(tmp_path))
    r = p2pos("id", "--config", str(cfg))
    assert r.code == 1
    line = one_line(r.err)
    assert str(cfg) in line and "field listen" in line and "must be an array" in line
    assert sorted(os.listdir(tmp_path)) == before


def test_init_refuses_to_overwrite_and_bad_flags_write_nothing(p2pos, tmp_path):
    d = tmp_path / "n"
    r = p2pos("init", "--new-system", "--data-dir", str(d), "--listen", "nonsense")
    assert r.code == 2 and not d.exists()
    r = p2pos("init", "--join", "--data-dir", str(d), "--system-pubkey", "AAAA", "--bootstrap", "dns:example.org")
    assert r.code == 2 and not d.exists()
    assert p2pos("init", "--new-system", "--data-dir", str(d)).code == 0
    cfg = (d / "config.json").read_text()
    r = p2pos("init", "--new-system", "--data-dir", str(d))
    assert r.code == 1 and "--force" in one_line(r.err)
    assert (d / "config.json").read_text() == cfg
    r = p2pos("init", "--new-system", "--data-dir", str(d), "--force")
    assert r.code == 0 and (d / "config.json").read_text() != cfg


def test_init_join_prints_admin_command(p2pos, tmp_path):
    sys_pub = p2pos("keygen", "--new-system").kv()["SYSTEM_PUB_B64"]
    d = tmp_path / "j"
    r = p2pos("init", "--join", "--system-pubkey", sys_pub, "--bootstrap", "dns:example.org",
              "--bootstrap", "/ip4/127.0.0.1/tcp/4100", "--data-dir", str(d), "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["admin_command"] == f"p2pos snapshot publish --add {out['peer_id']}"
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["init_connections"] == [{"type": "dns", "address": "example.org"},
                                       {"type": "multiaddr", "address": "/ip4/127.0.0.1/tcp/4100"}]
    assert not (d / "keys").exists()


def test_not_built_commands_say_so(p2pos):
    r = p2pos("status")
    assert r.code in (1, 3)
    assert "not implemented" in r.err or "daemon" in r.err


def test_help_version_completions(p2pos):
    assert p2pos("version").out.strip().startswith("p2pos ")
    assert p2pos("help").code == 0
    h = p2pos("init", "--help")
    assert h.code == 0 and h.out.startswith("Usage: p2pos init")
    assert "complete -F _p2pos p2pos" in p2pos("completions", "bash").out


def test_tx_sign_takes_keygen_output_or_a_bare_key(p2pos, tmp_path):
    """`p2pos keygen --out F` then `tx sign --key F` works; several keys without the node key, or
    none, is one clear line and no output."""
    env_file = tmp_path / "me.env"
    assert p2pos("keygen", "--out", str(env_file)).code == 0
    bare = tmp_path / "me.key"
    kv = dict(l.split("=", 1) for l in env_file.read_text().split())
    bare.write_text(kv["NODE_PRIV_B64"] + "\n")
    os.chmod(bare, 0o600)
    args = ["tx", "sign", "--cluster-id", "c1", "--op", "PARTICIPANT_JOIN", "--payload", '{"session_id":"s"}']
    from_env = p2pos(*args, "--key", str(env_file))
    from_bare = p2pos(*args, "--key", str(bare))
    assert from_env.code == 0 and from_bare.code == 0, (from_env.err, from_bare.err)
    assert json.loads(from_env.out)["public_key"] == json.loads(from_bare.out)["public_key"]

    # --new-system output: the node key is the one taken.
    full = tmp_path / "full.env"
    assert p2pos("keygen", "--new-system", "--cluster-id", "c1", "--out", str(full)).code == 0
    fkv = dict(l.split("=", 1) for l in full.read_text().split())
    r = p2pos(*args, "--key", str(full))
    assert r.code == 0, r.err
    only_node = tmp_path / "node.key"
    only_node.write_text(fkv["NODE_PRIV_B64"])
    os.chmod(only_node, 0o600)
    assert json.loads(r.out)["public_key"] == json.loads(p2pos(*args, "--key", str(only_node)).out)["public_key"]

    # Without the node key the choice is ambiguous; without any key there is nothing to take.
    amb = tmp_path / "amb.env"
    amb.write_text("".join(f"{k}={v}\n" for k, v in fkv.items() if k != "NODE_PRIV_B64"))
    os.chmod(amb, 0o600)
    r = p2pos(*args, "--key", str(amb))
    assert r.code == 1 and r.out == ""
    line = one_line(r.err)
    assert "several keys" in line and "SYSTEM_PRIV_B64" in line and "ADMIN_PRIV_B64" in line
    none = tmp_path / "none.env"
    none.write_text("FOO=bar\n")
    os.chmod(none, 0o600)
    r = p2pos(*args, "--key", str(none))
    assert r.code == 1 and r.out == ""
    assert "no *_PRIV_B64 key" in one_line(r.err)
