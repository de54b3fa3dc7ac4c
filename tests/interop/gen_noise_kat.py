"""Regenerate the Noise known-answer vectors in Tests/Libp2pTests/CodecTests.swift (NoiseKnownAnswerTests).

Run: .venv/bin/python tests/interop/gen_noise_kat.py
"""
from noise.connection import NoiseConnection, Keypair
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.security.noise.messages import NoiseHandshakePayload, make_handshake_payload_sig
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives import serialization


def pub(priv):
    return X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

idA = create_new_key_pair(bytes([1]*32)); idB = create_new_key_pair(bytes([2]*32))
sA = bytes([3]*32); sB = bytes([4]*32); eA = bytes([5]*32); eB = bytes([6]*32)
def payload(idk, spriv):
    class P:
        def to_bytes(self): return pub(spriv)
    sig = make_handshake_payload_sig(idk.private_key, P())
    return NoiseHandshakePayload(idk.public_key, sig).serialize()
pA = payload(idA, sA); pB = payload(idB, sB)
i = NoiseConnection.from_name(b'Noise_XX_25519_ChaChaPoly_SHA256')
r = NoiseConnection.from_name(b'Noise_XX_25519_ChaChaPoly_SHA256')
i.set_as_initiator(); r.set_as_responder()
i.set_keypair_from_private_bytes(Keypair.STATIC, sA); r.set_keypair_from_private_bytes(Keypair.STATIC, sB)
i.set_keypair_from_private_bytes(Keypair.EPHEMERAL, eA); r.set_keypair_from_private_bytes(Keypair.EPHEMERAL, eB)
i.start_handshake(); r.start_handshake()
m1 = i.write_message(b''); r.read_message(m1)
m2 = r.write_message(pB); i.read_message(m2)
m3 = i.write_message(pA); r.read_message(m3)
t1 = i.encrypt(b'hello from initiator'); t2 = r.encrypt(b'hello from responder')
for k, v in [('m1', m1), ('m2', m2), ('m3', m3), ('t1', t1), ('t2', t2), ('pA', pA)]:
    print(k, v.hex())
