"""Build and sign membership snapshots and admin proofs in Python (PyNaCl), independent of p2pos."""
import base64
from datetime import datetime, timedelta, timezone

import base58
import nacl.signing


def go_time(dt):
    dt = dt.astimezone(timezone.utc)
    s = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        s += ("." + f"{dt.microsecond:06d}").rstrip("0")
    return s + "Z"


def now(offset=0):
    return datetime.now(timezone.utc) + timedelta(seconds=offset)


def load_key(path):
    raw = base64.b64decode(open(path).read().strip())
    return nacl.signing.SigningKey(raw[4:36])


def peer_id(sk):
    pub = sk.verify_key.encode()
    pb = b"\x08\x01\x12\x20" + pub
    return base58.b58encode(b"\x00" + bytes([len(pb)]) + pb).decode()


def proof(system_sk, cluster, peer, valid_from, valid_to, role="admin"):
    p = {"cluster_id": cluster, "peer_id": peer, "role": role, "valid_from": go_time(valid_from), "valid_to": go_time(valid_to)}
    msg = "|".join([p["cluster_id"], p["peer_id"], p["role"], p["valid_from"], p["valid_to"]]).encode()
    p["sig"] = base64.b64encode(system_sk.sign(msg).signature).decode()
    return p


def snapshot(admin_sk, cluster, members, admin_proof, issued_at=None, issuer=None):
    issued = go_time(issued_at or now())
    issuer = issuer or peer_id(admin_sk)
    msg = "|".join([cluster, issued, issuer, ",".join(sorted(set(members)))]).encode()
    return {"cluster_id": cluster, "issued_at": issued, "issuer_peer_id": issuer, "members": members,
            "admin_proof": admin_proof, "sig": base64.b64encode(admin_sk.sign(msg).signature).decode()}
