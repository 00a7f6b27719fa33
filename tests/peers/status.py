#!/usr/bin/env python3
"""Warden test peer: server-list status client built on PyPI ``mcstatus`` (pinned in requirements.txt).

Connects to ``--addr`` but writes ``--host`` into the handshake, so it can be pointed at Warden
and still exercise hostname routing (mcstatus' JavaServer(host, port) would use one value for both).

Usage:
  python status.py --addr 127.0.0.1:25565 [--host NAME] [--handshake-port N] [--protocol N]
                   [--legacy [--legacy-variant 1.6|fe01fa|fe01|fe]] [--count N] [--timeout S] [--no-ping]

  --addr HOST:PORT   where to connect (required; IPv6 as [::1]:25565)
  --host NAME        hostname written into the handshake / 1.6 MC|PingHost (default: host part of --addr)
  --handshake-port N port written into the handshake (default: port of --addr)
  --protocol N       protocol version in the handshake (default 47 like mcstatus; 74 for --legacy 1.6)
  --legacy           pre-1.7 "server list ping" (0xFE ...) instead of the modern status protocol
  --legacy-variant   1.6    (default) FE 01 FA "MC|PingHost" + protocol + host + port, what a 1.6 client sends
                     fe01fa exactly what mcstatus.LegacyServer sends (FE 01 FA, nothing else; no hostname)
                     fe01   1.4-1.5 client;   fe  beta1.8-1.3 client (both carry no hostname)
  --count N          N requests concurrently (one JSON line each; default 1)
  --timeout S        socket timeout in seconds (default 5)
  --no-ping          modern only: skip the ping/pong after the status (latency_ms is then the status RTT)

Stdout, one JSON line per request:
  {"ok":true,"mode":"modern","motd":"...","online":0,"max":20,"version_name":"1.20.4","protocol":765,
   "latency_ms":1.23,"favicon":false}
  {"ok":false,"mode":"modern","error":"..."}
Exit code 0 iff every request succeeded, 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from mcstatus._net.address import Address
from mcstatus._protocol.io.connection import TCPSocketConnection
from mcstatus._protocol.java_client import JavaClient
from mcstatus._protocol.legacy_client import LegacyClient


def parse_addr(s: str) -> tuple[str, int]:
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        port = rest.lstrip(":")
    else:
        host, sep, port = s.rpartition(":")
        if not sep:
            raise ValueError(f"--addr must be HOST:PORT, got {s!r}")
    return host, int(port)


def modern(args: argparse.Namespace) -> dict:
    host, port = parse_addr(args.addr)
    hs_host = args.host if args.host is not None else host
    hs_port = args.handshake_port if args.handshake_port is not None else port
    protocol = args.protocol if args.protocol is not None else 47
    with TCPSocketConnection((host, port), args.timeout) as conn:
        client = JavaClient(conn, address=Address(hs_host, hs_port), version=protocol)
        client.handshake()
        st = client.read_status()
        latency = st.latency
        if not args.no_ping:
            latency = client.test_ping()
    return {
        "ok": True,
        "mode": "modern",
        "motd": st.motd.to_plain(),
        "online": st.players.online,
        "max": st.players.max,
        "version_name": st.version.name,
        "protocol": st.version.protocol,
        "latency_ms": round(latency, 3),
        "favicon": bool(st.icon),
        "sample": [p.name for p in (st.players.sample or [])],
        "enforces_secure_chat": st.enforces_secure_chat,
    }


def legacy_request(variant: str, hs_host: str, hs_port: int, protocol: int) -> bytes:
    if variant == "fe":
        return b"\xfe"
    if variant == "fe01":
        return b"\xfe\x01"
    if variant == "fe01fa":
        return LegacyClient.request_status_data  # b"\xfe\x01\xfa", what mcstatus.LegacyServer sends
    if variant == "1.6":
        # https://minecraft.wiki/w/Java_Edition_protocol/Server_List_Ping#1.6
        channel = "MC|PingHost".encode("utf-16-be")
        host_bytes = hs_host.encode("utf-16-be")
        rest = struct.pack(">BH", protocol, len(hs_host)) + host_bytes + struct.pack(">i", hs_port)
        return (
            b"\xfe\x01\xfa"
            + struct.pack(">H", len("MC|PingHost"))
            + channel
            + struct.pack(">H", len(rest))
            + rest
        )
    raise ValueError(f"unknown legacy variant {variant!r}")


def legacy(args: argparse.Namespace) -> dict:
    host, port = parse_addr(args.addr)
    hs_host = args.host if args.host is not None else host
    hs_port = args.handshake_port if args.handshake_port is not None else port
    protocol = args.protocol if args.protocol is not None else 74  # 1.6.4
    req = legacy_request(args.legacy_variant, hs_host, hs_port, protocol)
    with TCPSocketConnection((host, port), args.timeout) as conn:
        start = time.perf_counter()
        conn.write(req)
        packet_id = conn.read(1)
        if packet_id != b"\xff":
            raise OSError(f"expected kick packet 0xFF, got {packet_id.hex()}")
        (length,) = struct.unpack(">H", conn.read(2))
        data = conn.read(length * 2)
        latency = (time.perf_counter() - start) * 1000
    st = LegacyClient.parse_response(data, latency)
    return {
        "ok": True,
        "mode": "legacy-" + args.legacy_variant,
        "motd": st.motd.to_plain(),
        "online": st.players.online,
        "max": st.players.max,
        "version_name": st.version.name,
        "protocol": st.version.protocol,
        "latency_ms": round(latency, 3),
        "favicon": False,
    }


def one(args: argparse.Namespace) -> dict:
    mode = ("legacy-" + args.legacy_variant) if args.legacy else "modern"
    t0 = time.perf_counter()
    try:
        res = legacy(args) if args.legacy else modern(args)
    except Exception as e:  # noqa: BLE001 - any failure is a test result, not a crash
        msg = str(e) or type(e).__name__
        if isinstance(e, socket.timeout | TimeoutError):
            msg = f"timeout: {msg}"
        res = {"ok": False, "mode": mode, "error": f"{type(e).__name__}: {msg}"}
    res["ms"] = round((time.perf_counter() - t0) * 1000, 3)
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", required=True)
    p.add_argument("--host")
    p.add_argument("--handshake-port", type=int)
    p.add_argument("--protocol", type=int)
    p.add_argument("--legacy", action="store_true")
    p.add_argument("--legacy-variant", default="1.6", choices=["1.6", "fe01fa", "fe01", "fe"])
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--no-ping", action="store_true")
    try:
        args = p.parse_args()
        parse_addr(args.addr)
    except SystemExit as e:
        if e.code not in (0, None):
            print(json.dumps({"ok": False, "error": "usage error (see stderr)"}), flush=True)
            return 2
        return 0
    except ValueError as e:
        print(json.dumps({"ok": False, "error": f"usage: {e}"}), flush=True)
        return 2
    if args.count < 1:
        print(json.dumps({"ok": False, "error": "usage: --count must be >= 1"}), flush=True)
        return 2

    all_ok = True
    if args.count == 1:
        results = [one(args)]
    else:
        with ThreadPoolExecutor(max_workers=min(args.count, 64)) as ex:
            results = list(ex.map(lambda _: one(args), range(args.count)))
    for r in results:
        all_ok &= r["ok"]
        print(json.dumps(r), flush=True)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
