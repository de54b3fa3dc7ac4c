"""The Python signing example (sign_tx.py) against the committed known-answer vectors.

The same vectors (tests/ledger/vectors.json) are verified and applied by the Swift ledger in
Tests/LedgerTests/VectorTests.swift, so a tx signed by this script is proven to be accepted by
p2pos's own validator. Regenerate with: python3 tests/ledger/test_python_signing.py --write
"""

import base64
import hashlib
import json
import os
import subprocess
import sys

import pytest
from nacl.signing import SigningKey, VerifyKey

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import sign_tx  # noqa: E402

VECTORS = os.path.join(HERE, "vectors.json")
CLUSTER = "vector-cluster"
TS = "2026-02-21T11:11:01.508Z"

ALICE = SigningKey(bytes(range(32)))
BOB = SigningKey(bytes(range(32, 64)))

FLOW = [
    (ALICE, "SESSION_CREATE", {"session_id": "sess-1", "title": "Caf\u00e9 \U0001F600 \"quoted\" \\ back\nslash\u0001",
                               "steps": [{"step_id": "step-a", "title": "Draft"}, {"step_id": "step-b", "title": "\u20ac review"}]}),
    (BOB, "PARTICIPANT_JOIN", {"session_id": "sess-1"}),
    (BOB, "STEP_CLAIM", {"step_id": "step-a"}),
    (BOB, "ARTIFACT_ADD", {"step_id": "step-a", "artifact_id": "art-1", "kind": "doc", "uri": "https://example.org/a",
                           "sha256": hashlib.sha256(b"a").hexdigest()}),
    (ALICE, "DECISION_OPEN", {"step_id": "step-a", "decision_id": "dec-1", "question": "Ship it?",
                              "options": ["yes", "no"], "quorum": 2}),
    (ALICE, "VOTE_CAST", {"decision_id": "dec-1", "option": "yes"}),
    (BOB, "VOTE_CAST", {"decision_id": "dec-1", "option": "yes"}),
    (BOB, "STEP_RESOLVE", {"step_id": "step-a", "outcome": "yes"}),
    (ALICE, "STEP_CLAIM", {"step_id": "step-b"}),
    (ALICE, "STEP_HANDOFF", {"step_id": "step-b", "to": sign_tx.public_key_b64(BOB)}),
    (BOB, "STEP_RESOLVE", {"step_id": "step-b", "outcome": "done"}),
]


def build_vectors():
    txs = []
    for i, (key, op, payload) in enumerate(FLOW):
        tx, tx_id = sign_tx.sign_tx(key, op, payload, CLUSTER, "n-%d" % i, TS)
        txs.append({"tx": sign_tx.canonical_json(tx), "tx_id": tx_id})
    return {
        "cluster_id": CLUSTER,
        "keys": {"alice": sign_tx.private_key_b64(ALICE), "bob": sign_tx.private_key_b64(BOB)},
        "public_keys": {"alice": sign_tx.public_key_b64(ALICE), "bob": sign_tx.public_key_b64(BOB)},
        "txs": txs,
    }


def test_vectors_are_reproduced_by_the_python_example():
    with open(VECTORS, encoding="utf-8") as f:
        committed = json.load(f)
    assert committed == build_vectors()


def test_each_vector_verifies_and_hashes_to_its_tx_id():
    with open(VECTORS, encoding="utf-8") as f:
        vectors = json.load(f)
    for v in vectors["txs"]:
        tx = json.loads(v["tx"])
        sig = base64.b64decode(tx.pop("signature"))
        signed = sign_tx.SIGNING_PREFIX + sign_tx.canonical_json(tx).encode()
        assert hashlib.sha256(signed).hexdigest() == v["tx_id"]
        pub = sign_tx.decode_key_message(base64.b64decode(tx["public_key"]))
        VerifyKey(bytes(pub)).verify(signed, sig)  # raises on a bad signature


def test_canonical_json_rules():
    c = sign_tx.canonical_json
    # RFC 8785 sorts keys by UTF-16 code units: U+1F600 (D83D DE00) sorts before U+FB33.
    assert c({"\ufb33": 1, "\U0001F600": 2, "a": 3}) == '{"a":3,"\U0001F600":2,"\ufb33":1}'
    assert c("\u0001\b\t\n\u000b\f\r\"\\/\u007f") == '"\\u0001\\b\\t\\n\\u000b\\f\\r\\"\\\\/\u007f"'
    assert c({"b": [1, True, None], "a": -5}) == '{"a":-5,"b":[1,true,null]}'
    with pytest.raises(ValueError):
        c(1.5)
    with pytest.raises(ValueError):
        sign_tx.parse_payload('{"a":1,"a":2}')
    with pytest.raises(ValueError):
        sign_tx.parse_payload('{"a":1.0}')


def test_key_file_round_trip():
    text = sign_tx.private_key_b64(ALICE)
    assert bytes(sign_tx.load_private_key(text)) == bytes(ALICE)


def test_cli_runs(tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text(sign_tx.private_key_b64(BOB))
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "sign_tx.py"), "--key", str(keyfile), "--cluster-id", CLUSTER,
         "--op", "PARTICIPANT_JOIN", "--payload", '{"session_id":"sess-1"}', "--nonce", "n-1", "--ts", TS],
        check=True, capture_output=True, text=True)
    vectors = build_vectors()
    assert out.stdout == vectors["txs"][1]["tx"] + "\n"
    assert out.stderr.strip() == "tx_id=" + vectors["txs"][1]["tx_id"]


if __name__ == "__main__":
    if "--write" in sys.argv:
        with open(VECTORS, "w", encoding="utf-8") as f:
            json.dump(build_vectors(), f, indent=2, ensure_ascii=False)
            f.write("\n")
        print("wrote", VECTORS)


def test_docs_print_the_complete_example():
    """docs/transactions.md ends with the whole script, byte for byte (the example the issue asks for)."""
    doc = open(os.path.join(HERE, "..", "..", "docs", "transactions.md"), encoding="utf-8").read()
    head = "## Appendix: the complete Python example"
    assert head in doc
    listing = doc.split(head, 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert listing == open(os.path.join(HERE, "sign_tx.py"), encoding="utf-8").read()
