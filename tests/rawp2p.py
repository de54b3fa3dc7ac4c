"""Minimal raw libp2p client (multistream, Noise XX, Yamux) for tests that must misbehave in ways a
real libp2p implementation will not (never reading, odd frames). Loopback only: set TARGET to
(host, port) first."""
import os, socket, struct, time, hmac, hashlib
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

TARGET = None  # (host, port), set by the test


def target():
    host, port = TARGET
    assert host in ('127.0.0.1', '::1'), 'loopback only'
    return host, port, None


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def read_uvarint(buf, i=0):
    shift = 0; n = 0
    while True:
        b = buf[i]; i += 1
        n |= (b & 0x7f) << shift
        if not b & 0x80:
            return n, i
        shift += 7


def ms_msg(s):
    if isinstance(s, str):
        s = s.encode()
    return uvarint(len(s) + 1) + s + b'\n'


def connect(timeout=5):
    host, port, _ = target()
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError('closed after %d/%d bytes' % (len(b), n))
        b += c
    return b


def ms_read(s):
    # read one multistream message from socket
    buf = b''
    while True:
        c = s.recv(1)
        if not c:
            raise EOFError('closed')
        buf += c
        if not c[0] & 0x80:
            break
    n, _ = read_uvarint(buf)
    return recv_exact(s, n)


def ms_negotiate(s, proto):
    s.sendall(ms_msg('/multistream/1.0.0') + ms_msg(proto))
    a = ms_read(s); b = ms_read(s)
    return a, b


def pb_bytes(field, data):
    return uvarint((field << 3) | 2) + uvarint(len(data)) + data


def pubkey_pb(raw32):
    return b'\x08\x01' + pb_bytes(2, raw32)


def hkdf(ck, ikm, n=2):
    temp = hmac.new(ck, ikm, hashlib.sha256).digest()
    o1 = hmac.new(temp, b'\x01', hashlib.sha256).digest()
    o2 = hmac.new(temp, o1 + b'\x02', hashlib.sha256).digest()
    if n == 2:
        return o1, o2
    o3 = hmac.new(temp, o2 + b'\x03', hashlib.sha256).digest()
    return o1, o2, o3


def nonce(n):
    return b'\x00' * 4 + struct.pack('<Q', n)


class SymState:
    def __init__(self):
        name = b'Noise_XX_25519_ChaChaPoly_SHA256'
        self.h = name if len(name) == 32 else hashlib.sha256(name).digest()
        self.ck = self.h
        self.k = None; self.n = 0
        self.mix_hash(b'')

    def mix_hash(self, d):
        self.h = hashlib.sha256(self.h + d).digest()

    def mix_key(self, ikm):
        self.ck, tk = hkdf(self.ck, ikm)
        self.k = tk; self.n = 0

    def enc_hash(self, pt):
        if self.k is None:
            ct = pt
        else:
            ct = ChaCha20Poly1305(self.k).encrypt(nonce(self.n), pt, self.h); self.n += 1
        self.mix_hash(ct)
        return ct

    def dec_hash(self, ct):
        if self.k is None:
            pt = ct
        else:
            pt = ChaCha20Poly1305(self.k).decrypt(nonce(self.n), ct, self.h); self.n += 1
        self.mix_hash(ct)
        return pt


def raw_x(priv):
    return priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def raw_ed(priv):
    return priv.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def dh(priv, pubraw):
    return priv.exchange(X25519PublicKey.from_public_bytes(pubraw))


def noise_frame(b):
    return struct.pack('>H', len(b)) + b


def read_noise_frame(s):
    n = struct.unpack('>H', recv_exact(s, 2))[0]
    return recv_exact(s, n)


class Secure:
    def __init__(self, s, k_send, k_recv):
        self.s = s; self.ks = ChaCha20Poly1305(k_send); self.kr = ChaCha20Poly1305(k_recv)
        self.ns = 0; self.nr = 0; self.rbuf = b''

    def send(self, data):
        out = b''
        while data:
            chunk = data[:65519]; data = data[65519:]
            ct = self.ks.encrypt(nonce(self.ns), chunk, b''); self.ns += 1
            out += noise_frame(ct)
        self.s.sendall(out)

    def send_raw_frame(self, ct_len_override=None, pt=b''):
        ct = self.ks.encrypt(nonce(self.ns), pt, b''); self.ns += 1
        self.s.sendall(noise_frame(ct))

    def recv_frame(self):
        f = read_noise_frame(self.s)
        pt = self.kr.decrypt(nonce(self.nr), f, b''); self.nr += 1
        return pt

    def recv_exact(self, n):
        while len(self.rbuf) < n:
            self.rbuf += self.recv_frame()
        r = self.rbuf[:n]; self.rbuf = self.rbuf[n:]
        return r


def handshake(s, ed=None, static=None, bad_sig=False, other_identity=False, skip_ms=False, payload_override=None):
    """Do ms + noise XX as initiator. Returns (Secure, remote_payload)."""
    if not skip_ms:
        a, b = ms_negotiate(s, '/noise')
        assert b == b'/noise\n', b
    ed = ed or Ed25519PrivateKey.generate()
    static = static or X25519PrivateKey.generate()
    e = X25519PrivateKey.generate()
    ss = SymState()
    epub = raw_x(e)
    ss.mix_hash(epub)
    p1 = ss.enc_hash(b'')
    s.sendall(noise_frame(epub + p1))
    m2 = read_noise_frame(s)
    re = m2[:32]; ss.mix_hash(re)
    ss.mix_key(dh(e, re))
    rs = ss.dec_hash(m2[32:80])
    ss.mix_key(dh(e, rs))
    rpayload = ss.dec_hash(m2[80:])
    spub = raw_x(static)
    c = ss.enc_hash(spub)
    ss.mix_key(dh(static, re))
    if payload_override is not None:
        payload = payload_override
    else:
        sig = ed.sign(b'noise-libp2p-static-key:' + spub)
        if bad_sig:
            sig = bytes([sig[0] ^ 1]) + sig[1:]
        idkey = raw_ed(ed)
        if other_identity:
            idkey = raw_ed(Ed25519PrivateKey.generate())
        payload = pb_bytes(1, pubkey_pb(idkey)) + pb_bytes(2, sig)
    c2 = ss.enc_hash(payload)
    s.sendall(noise_frame(c + c2))
    k1, k2 = hkdf(ss.ck, b'')
    return Secure(s, k1, k2), rpayload


# ---- yamux
DATA, WUP, PING, GOAWAY = 0, 1, 2, 3
SYN, ACK, FIN, RST = 1, 2, 4, 8


def yhdr(typ, flags, sid, length, ver=0):
    return struct.pack('>BBHII', ver, typ, flags, sid, length)


def yparse(h):
    return struct.unpack('>BBHII', h)


def sec_ms_msgs(msgs):
    return b''.join(ms_msg(m) for m in msgs)


def upgrade(ed=None, timeout=5):
    """TCP connect + ms /noise + noise + ms /yamux over secure channel. Returns (sock, Secure)."""
    s = connect(timeout)
    sec, _ = handshake(s, ed=ed)
    sec.send(ms_msg('/multistream/1.0.0') + ms_msg('/yamux/1.0.0'))
    # read 2 ms messages
    def read_ms_sec():
        b = sec.recv_exact(1)
        while b[-1] & 0x80:
            b += sec.recv_exact(1)
        n, _ = read_uvarint(b)
        return sec.recv_exact(n)
    a = read_ms_sec(); b = read_ms_sec()
    assert b == b'/yamux/1.0.0\n', (a, b)
    return s, sec


def yread(sec):
    h = yparse(sec.recv_exact(12))
    ver, typ, flags, sid, length = h
    body = b''
    if typ == DATA and length:
        body = sec.recv_exact(length)
    return h, body


def open_stream(sec, sid, proto, extra=b''):
    sec.send(yhdr(WUP, SYN, sid, 0) + yhdr(DATA, 0, sid, len(ms_msg('/multistream/1.0.0') + ms_msg(proto) + extra)) + ms_msg('/multistream/1.0.0') + ms_msg(proto) + extra)
