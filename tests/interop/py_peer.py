#!/usr/bin/env python3
"""A py-libp2p peer for interop tests with p2pos (loopback only).

  py_peer.py listen              print our multiaddr (with /p2p/) and serve echo/perf/ping/identify
  py_peer.py dial ADDR [...]     connect to ADDR, run identify/ping/echo/perf, print one JSON line
"""
import argparse
import hashlib
import json
import signal
import struct
import sys
import time

import multiaddr
import trio

from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.ping import PingService
from libp2p.identity.identify.identify import parse_identify_response
from libp2p.peer.id import ID
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.perf.perf_service import PerfService

ECHO = TProtocol("/p2pos/echo/1.0.0")
IDENTIFY = TProtocol("/ipfs/id/1.0.0")
PERF = TProtocol("/perf/1.0.0")


def pattern(n: int) -> bytes:
    return bytes(((i * 2654435761) >> 13) & 0xFF for i in range(n))


async def read_chunk(stream, n: int) -> bytes:
    """One read; b"" at end of stream (py-libp2p raises StreamEOF there)."""
    try:
        return await stream.read(n)
    except StreamEOF:
        return b""


async def echo_handler(stream) -> None:
    try:
        while True:
            data = await read_chunk(stream, 65536)
            if not data:
                break
            await stream.write(data)
        await stream.close()
    except Exception as e:
        print(f"py_peer: echo handler failed: {e!r}", file=sys.stderr, flush=True)
        await stream.reset()


async def read_all(stream, limit: int) -> bytes:
    out = bytearray()
    while True:
        chunk = await read_chunk(stream, 65536)
        if not chunk:
            break
        out += chunk
        if len(out) > limit:
            raise RuntimeError("stream too long")
    return bytes(out)


async def listen() -> None:
    host = new_host(key_pair=create_new_key_pair(), muxer_preference="YAMUX")
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        host.set_stream_handler(ECHO, echo_handler)
        perf = PerfService(host)
        await perf.start()
        addrs = [a for a in host.get_addrs() if "/ip4/127.0.0.1/" in str(a)]
        a = str(addrs[0])
        if "/p2p/" not in a:
            a += "/p2p/" + host.get_id().to_base58()
        print(a, flush=True)
        await trio.sleep_forever()


async def dial(args) -> int:
    host = new_host(key_pair=create_new_key_pair(), muxer_preference="YAMUX")
    result = {"local_peer": host.get_id().to_base58(), "ok": False}
    try:
        async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            info = info_from_p2p_addr(multiaddr.Multiaddr(args.addr))
            with trio.fail_after(20):
                await host.connect(info)
            conns = host.get_network().get_connections(info.peer_id) if hasattr(host.get_network(), "get_connections") else None
            result["peer"] = info.peer_id.to_base58()
            if args.identify:
                with trio.fail_after(20):
                    s = await host.new_stream(info.peer_id, [IDENTIFY])
                    body = await read_all(s, 1 << 16)
                    await s.close()
                idm = parse_identify_response(body)
                result["identify"] = {
                    "protocol_version": idm.protocol_version,
                    "agent_version": idm.agent_version,
                    "protocols": list(idm.protocols),
                    "listen_addrs": [str(multiaddr.Multiaddr(b)) for b in idm.listen_addrs],
                    "observed_addr": str(multiaddr.Multiaddr(idm.observed_addr)) if idm.observed_addr else "",
                    "peer_matches": ID.from_pubkey(
                        __import__("libp2p.crypto.serialization", fromlist=["deserialize_public_key"]).deserialize_public_key(idm.public_key)
                    ) == info.peer_id,
                }
            if args.pings:
                with trio.fail_after(20):
                    rtts = await PingService(host).ping(info.peer_id, ping_amt=args.pings)
                result["ping_us"] = list(rtts)
            if args.echo_bytes:
                data = pattern(args.echo_bytes)
                with trio.fail_after(60):
                    s = await host.new_stream(info.peer_id, [ECHO])
                    back = bytearray()
                    t0 = time.time()

                    async def writer():
                        for i in range(0, len(data), 65536):
                            await s.write(data[i : i + 65536])
                        await s.close_write() if hasattr(s, "close_write") else None

                    async with trio.open_nursery() as n:
                        n.start_soon(writer)
                        back = await read_all(s, len(data) + 1)
                result["echo_bytes"] = len(back)
                result["echo_ok"] = back == data
                result["echo_sha256"] = hashlib.sha256(back).hexdigest()
                result["echo_seconds"] = time.time() - t0
            if args.perf_up or args.perf_down:
                with trio.fail_after(120):
                    s = await host.new_stream(info.peer_id, [PERF])
                    t0 = time.time()
                    await s.write(struct.pack(">Q", args.perf_down))
                    buf = bytes(65536)
                    left = args.perf_up
                    while left > 0:
                        k = min(left, len(buf))
                        await s.write(buf[:k])
                        left -= k
                    await s.close_write()
                    t1 = time.time()
                    got = 0
                    while True:
                        chunk = await read_chunk(s, 65536)
                        if not chunk:
                            break
                        got += len(chunk)
                    t2 = time.time()
                result["perf_download_bytes"] = got
                result["perf_ok"] = got == args.perf_down
                result["perf_upload_seconds"] = t1 - t0
                result["perf_download_seconds"] = t2 - t1
            result["ok"] = True
    except BaseException as e:  # report, do not hide
        result["error"] = repr(e)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


def main() -> int:
    # A parent that ignores SIGTERM (a test process that also serves as a daemon) passes the
    # ignored disposition on through exec; restore the default so terminate() works.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("listen")
    d = sub.add_parser("dial")
    d.add_argument("addr")
    d.add_argument("--identify", action="store_true")
    d.add_argument("--pings", type=int, default=0)
    d.add_argument("--echo-bytes", type=int, default=0)
    d.add_argument("--perf-up", type=int, default=0)
    d.add_argument("--perf-down", type=int, default=0)
    args = p.parse_args()
    if args.cmd == "listen":
        trio.run(listen)
        return 0
    return trio.run(dial, args)


if __name__ == "__main__":
    sys.exit(main())
