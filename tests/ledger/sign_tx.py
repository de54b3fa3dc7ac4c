#!/usr/bin/env python3
"""Sign a p2pos transaction without p2pos, using only PyNaCl and the standard library.

This follows docs/transactions.md ("Signing recipe") step by step:

    signed_bytes = b"p2pos/tx/v1\\n" + canonical_json(envelope_without_signature)
    signature    = Ed25519(signed_bytes)              # 64 bytes, standard base64 in the tx
    tx_id        = sha256(signed_bytes).hexdigest()   # lowercase hex

Usage:
    python3 sign_tx.py --key KEYFILE --cluster-id CLUSTER --op STEP_CLAIM \\
        --payload '{"step_id":"s1"}' [--nonce N] [--ts 2026-01-02T03:04:05Z]

KEYFILE holds the private key as p2pos and libp2p write it: standard base64 of the protobuf
PrivateKey message {1: Type = 1 (Ed25519), 2: Data = 32-byte seed || 32-byte public key}.
Prints the signed tx as one line of canonical JSON on stdout and its tx_id on stderr.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import sys

from nacl.signing import SigningKey

SIGNING_PREFIX = b"p2pos/tx/v1\n"
MAX_SAFE_INTEGER = 2**53


# --- libp2p protobuf key encodings -------------------------------------------------------

def _read_varint(buf, i):
    shift = value = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def decode_key_message(raw):
    """Decode a libp2p protobuf key message {1: type (varint), 2: data (bytes)}."""
    i, key_type, data = 0, None, None
    while i < len(raw):
        tag, i = _read_varint(raw, i)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _read_varint(raw, i)
            if field == 1:
                key_type = value
        elif wire == 2:
            length, i = _read_varint(raw, i)
            if i + length > len(raw):
                raise ValueError("truncated field")
            if field == 2:
                data = raw[i:i + length]
            i += length
        else:
            raise ValueError("unsupported protobuf wire type %d" % wire)
    if key_type != 1:
        raise ValueError("not an Ed25519 key (type %r)" % key_type)
    if data is None:
        raise ValueError("missing key data")
    return data


def load_private_key(text):
    """SigningKey from the base64 protobuf PrivateKey (64-byte seed||pub, or a legacy 32-byte seed)."""
    data = decode_key_message(base64.b64decode(text.strip(), validate=True))
    if len(data) not in (32, 64):
        raise ValueError("Ed25519 private key data must be 64 bytes, got %d" % len(data))
    key = SigningKey(bytes(data[:32]))
    if len(data) == 64 and bytes(key.verify_key) != bytes(data[32:]):
        raise ValueError("private key data does not match its embedded public key")
    return key


def public_key_b64(signing_key):
    """The tx `public_key`: base64 of protobuf PublicKey {1: 1, 2: 32 bytes}."""
    return base64.b64encode(b"\x08\x01\x12\x20" + bytes(signing_key.verify_key)).decode()


def private_key_b64(signing_key):
    """The libp2p / p2pos private key file form (for making test keys)."""
    data = bytes(signing_key) + bytes(signing_key.verify_key)
    return base64.b64encode(b"\x08\x01\x12\x40" + data).decode()


# --- RFC 8785 canonical JSON for p2pos values (no floats) --------------------------------

def _canonical_string(s):
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif c < 0x20:
            out.append("\\u%04x" % c)
        else:
            out.append(ch)  # everything else literally, as UTF-8
    out.append('"')
    return "".join(out)


def canonical_json(value):
    """RFC 8785: keys sorted by UTF-16 code units, no whitespace, minimal escaping."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError("integer beyond 2^53: %d" % value)
        return str(value)
    if isinstance(value, float):
        raise ValueError("floats are not allowed in p2pos transactions")
    if isinstance(value, str):
        return _canonical_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value.keys(), key=lambda k: k.encode("utf-16-be"))
        return "{" + ",".join(_canonical_string(k) + ":" + canonical_json(value[k]) for k in keys) + "}"
    raise TypeError("unsupported type %s" % type(value).__name__)


def _reject_duplicates(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError("duplicate JSON key %r" % k)
        obj[k] = v
    return obj


def parse_payload(text):
    def no_float(s):
        raise ValueError("floats are not allowed: %s" % s)
    return json.loads(text, object_pairs_hook=_reject_duplicates, parse_float=no_float,
                      parse_constant=no_float)


# --- signing --------------------------------------------------------------------------------

def utc_now_rfc3339():
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def sign_tx(signing_key, op, payload, cluster_id, nonce, ts):
    """Return (tx dict, tx_id)."""
    envelope = {
        "v": 1,
        "op": op,
        "cluster_id": cluster_id,
        "nonce": nonce,
        "ts": ts,
        "payload": payload,
        "public_key": public_key_b64(signing_key),
    }
    signed_bytes = SIGNING_PREFIX + canonical_json(envelope).encode("utf-8")
    signature = signing_key.sign(signed_bytes).signature  # detached 64 bytes
    tx = dict(envelope, signature=base64.b64encode(signature).decode())
    return tx, hashlib.sha256(signed_bytes).hexdigest()


def main(argv=None):
    p = argparse.ArgumentParser(description="Sign a p2pos transaction (see docs/transactions.md).")
    p.add_argument("--key", required=True, help="file with the base64 libp2p protobuf private key")
    p.add_argument("--cluster-id", required=True)
    p.add_argument("--op", required=True)
    p.add_argument("--payload", required=True, help="payload as a JSON object")
    p.add_argument("--nonce", default=None, help="unique per signer (default: 32 random hex digits)")
    p.add_argument("--ts", default=None, help="RFC 3339 UTC time (default: now)")
    args = p.parse_args(argv)

    with open(args.key, "r", encoding="ascii") as f:
        key = load_private_key(f.read())
    payload = parse_payload(args.payload)
    if not isinstance(payload, dict):
        p.error("--payload must be a JSON object")
    nonce = args.nonce or os.urandom(16).hex()
    ts = args.ts or utc_now_rfc3339()
    tx, tx_id = sign_tx(key, args.op, payload, args.cluster_id, nonce, ts)
    sys.stdout.write(canonical_json(tx) + "\n")
    sys.stderr.write("tx_id=%s\n" % tx_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
