"""Identity encodings checked both ways against PyNaCl + base58 (implementations not written here)."""
import base64
import json
import os

import base58
import nacl.signing
import nacl.exceptions

B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def pb_field(tag, payload):
    return bytes([tag, len(payload)]) + payload


def peer_id_of(pub: bytes) -> str:
    pub_pb = b"\x08\x01" + pb_field(0x12, pub)
    return base58.b58encode(b"\x00" + bytes([len(pub_pb)]) + pub_pb).decode()


def cid36_of(pub: bytes) -> str:
    pub_pb = b"\x08\x01" + pb_field(0x12, pub)
    data = b"\x01\x72\x00" + bytes([len(pub_pb)]) + pub_pb
    n = int.from_bytes(data, "big")
    s = ""
    while n:
        n, r = divmod(n, 36)
        s = B36[r] + s
    return "k" + s


def decode_priv(b64: str) -> nacl.signing.SigningKey:
    raw = base64.b64decode(b64, validate=True)
    assert raw[:4] == b"\x08\x01\x12\x40", "libp2p PrivateKey{Type=Ed25519, Data=64 bytes}"
    seed, pub = raw[4:36], raw[36:68]
    sk = nacl.signing.SigningKey(seed)
    assert sk.verify_key.encode() == pub, "embedded public key matches the seed"
    return sk


def decode_pub(b64: str) -> nacl.signing.VerifyKey:
    raw = base64.b64decode(b64, validate=True)
    assert raw[:4] == b"\x08\x01\x12\x20"
    return nacl.signing.VerifyKey(raw[4:])


def test_p2pos_keys_check_out_in_pynacl(p2pos):
    r = p2pos("keygen", "--new-system", "--cluster-id", "interop-1")
    assert r.code == 0, r.err
    kv = r.kv()
    node = decode_priv(kv["NODE_PRIV_B64"])
    assert peer_id_of(node.verify_key.encode()) == kv["NODE_PEER_ID"]
    assert kv["NODE_PEER_ID"].startswith("12D3KooW")
    assert cid36_of(node.verify_key.encode()) == kv["NODE_PEER_CID36"]
    admin = decode_priv(kv["ADMIN_PRIV_B64"])
    assert peer_id_of(admin.verify_key.encode()) == kv["ADMIN_PEER_ID"] == kv["ADMIN_PROOF_PEER_ID"]
    system_priv = decode_priv(kv["SYSTEM_PRIV_B64"])
    system_pub = decode_pub(kv["SYSTEM_PUB_B64"])
    assert system_priv.verify_key.encode() == system_pub.encode()
    signed = "|".join([kv["ADMIN_PROOF_CLUSTER_ID"], kv["ADMIN_PROOF_PEER_ID"], kv["ADMIN_PROOF_ROLE"],
                       kv["ADMIN_PROOF_VALID_FROM"], kv["ADMIN_PROOF_VALID_TO"]]).encode()
    system_pub.verify(signed, base64.b64decode(kv["ADMIN_PROOF_SIG"]))
    # A tampered statement must not verify (the check above can fail).
    try:
        system_pub.verify(signed + b"x", base64.b64decode(kv["ADMIN_PROOF_SIG"]))
        raise AssertionError("tampered proof verified")
    except nacl.exceptions.BadSignatureError:
        pass
    assert kv["ADMIN_PROOF_CLUSTER_ID"] == "interop-1" and kv["ADMIN_PROOF_ROLE"] == "admin"


def test_pynacl_keys_accepted_by_p2pos(p2pos, tmp_path):
    for _ in range(5):
        sk = nacl.signing.SigningKey.generate()
        pub = sk.verify_key.encode()
        priv_b64 = base64.b64encode(b"\x08\x01" + pb_field(0x12, sk.encode() + pub)).decode()
        r = p2pos("keygen", "--node-priv", priv_b64)
        assert r.code == 0, r.err
        kv = r.kv()
        assert kv["NODE_PRIV_B64"] == priv_b64
        assert kv["NODE_PEER_ID"] == peer_id_of(pub)
        assert kv["NODE_PEER_CID36"] == cid36_of(pub)
    # A config written by another tool with a PyNaCl key: `p2pos id` derives the same peer ID.
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"node_private_key": priv_b64, "cluster_id": "c", "auto_tls": False}))
    os.chmod(cfg, 0o600)
    r = p2pos("id", "--config", str(cfg), "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["peer_id"] == peer_id_of(pub) and out["peer_cid"] == cid36_of(pub)


def test_init_new_system_material_verifies(p2pos, tmp_path):
    d = tmp_path / "node"
    r = p2pos("init", "--new-system", "--cluster-id", "c9", "--data-dir", str(d), "--listen", "127.0.0.1:4100", "--json")
    assert r.code == 0, r.err
    out = json.loads(r.out)
    cfg = json.loads((d / "config.json").read_text())
    assert oct(os.stat(d / "config.json").st_mode & 0o777) == "0o600"
    for k in ("system.key", "admin.key"):
        assert oct(os.stat(d / "keys" / k).st_mode & 0o777) == "0o600"
    system_pub = decode_pub(cfg["system_pubkey"])
    proof = cfg["admin_proof"]
    system_pub.verify("|".join([proof[k] for k in ("cluster_id", "peer_id", "role", "valid_from", "valid_to")]).encode(),
                      base64.b64decode(proof["sig"]))
    admin = decode_priv((d / "keys" / "admin.key").read_text().strip())
    assert peer_id_of(admin.verify_key.encode()) == proof["peer_id"]
    snap = json.loads((d / "membership.json").read_text())
    assert snap["members"] == [out["peer_id"]]
    signed = "|".join([snap["cluster_id"], snap["issued_at"], snap["issuer_peer_id"], ",".join(sorted(snap["members"]))]).encode()
    admin.verify_key.verify(signed, base64.b64decode(snap["sig"]))
    assert out["dnsaddr_txt"] == [f"dnsaddr=/ip4/127.0.0.1/tcp/4100/p2p/{out['peer_id']}"]
    bundle = json.loads(base64.b64decode(out["admin_bundle"].removeprefix("p2pos-admin://")))
    assert bundle["v"] == 1 and bundle["cluster_id"] == "c9" and bundle["admin_priv"]
