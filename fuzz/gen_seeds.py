#!/usr/bin/env python3
"""Writes the small, committed seed inputs in fuzz/seeds/<target>/.

Run from anywhere: python3 fuzz/gen_seeds.py. The output is deterministic; re-run it after
changing a target's input layout and commit the result.
"""
import hashlib
import pathlib
import shutil
import struct

ROOT = pathlib.Path(__file__).resolve().parent / "seeds"


def varint(v):
    v &= 0xFFFFFFFF
    out = bytearray()
    while True:
        if v & ~0x7F == 0:
            out.append(v)
            return bytes(out)
        out.append((v & 0x7F) | 0x80)
        v >>= 7


def string(s):
    b = s.encode()
    return varint(len(b)) + b


def frame(body):
    return varint(len(body)) + body


def handshake(protocol, address, port, intent):
    return varint(0) + varint(protocol) + string(address) + struct.pack(">H", port) + varint(intent)


def utf16(s):
    return s.encode("utf-16-be")


def ping_1_6(host, port, protocol=74):
    host16 = utf16(host)
    data = bytes([protocol]) + struct.pack(">H", len(host16) // 2) + host16 + struct.pack(">I", port)
    chan = "MC|PingHost"
    return (
        b"\xfe\x01\xfa"
        + struct.pack(">H", len(chan))
        + utf16(chan)
        + struct.pack(">H", len(data))
        + data
    )


def login_start(name, tail=b""):
    return varint(0) + string(name) + tail


UUID = bytes(range(16))

seeds = {
    "varint": [
        b"\x00",
        b"\x7f",
        b"\x80\x01",
        b"\xdd\xc7\x01",  # 25565
        b"\xff\xff\xff\xff\x07",  # i32::MAX
        b"\xff\xff\xff\xff\x0f",  # -1
        b"\x80\x80\x80\x80\x08",  # i32::MIN
        b"\x80\x00",  # overlong 0
        b"\xff" * 9 + b"\x01",  # VarLong -1
        b"\x80" * 11,  # too long for both
    ],
    "handshake_host": [
        handshake(47, "mc.example.com", 25565, 1),
        handshake(767, "Survival.Play.Example.COM.", 25565, 2),
        handshake(767, "mc.example.org\0FML2\0", 25565, 2),
        handshake(766, "mc.example.org///203.0.113.9:51234///1700000000///sig", 25565, 3),
        handshake(773, "\u0130" * 200, 25565, 1),  # lowercases to 400 chars
        handshake(5, "", 0, 1),
    ],
    "legacy_detect": [
        b"\xfe",
        b"\xfe\x01",
        ping_1_6("mc.example.com", 25565),
        ping_1_6("a" * 255, 25565),
        b"\xfe\x01\x00" + bytes(253),  # modern frame of length 254
        frame(handshake(767, "mc.example.com", 25565, 1)) + frame(b"\x00"),
    ],
}

# frames_split: one byte k, k % 16 u16 split points, then the stream.
status_stream = (
    frame(handshake(767, "mc.example.com", 25565, 1))
    + frame(b"\x00")
    + frame(b"\x01" + struct.pack(">q", 1234567))
)
login_stream = frame(handshake(767, "mc.example.com", 25565, 2)) + frame(login_start("Steve", UUID))
seeds["frames_split"] = [
    b"\x00" + status_stream,
    b"\x03" + struct.pack("<HHH", 1, 17, 22) + status_stream,
    b"\x02" + struct.pack("<HH", 2, 30) + login_stream,
    b"\x01" + struct.pack("<H", 2) + b"\xfe\x01\x00" + bytes(253) + b"\x81\x00\x00",
    b"\x01" + struct.pack("<H", 1) + b"\x80" * 6,
    b"\x00" + frame(bytes(1024)) + b"\x81\x08",  # a frame at the limit, then 1025
]

# login_start: selector byte (index into the target's PROTOCOLS table), i32 LE, body.
def sel(index, body, raw=0):
    return bytes([index]) + struct.pack("<i", raw) + body


seeds["login_start"] = [
    sel(4, login_start("Steve")),  # 47
    sel(7, login_start("Alex", b"\x01" + struct.pack(">q", 1) + varint(2) + b"k!" + varint(1) + b"s")),  # 759
    sel(8, login_start("Alex", b"\x00\x01" + UUID)),  # 760
    sel(11, login_start("Alex", b"\x01" + UUID)),  # 763
    sel(18, login_start("Alex", UUID)),  # 775
    sel(255, login_start("Notch", UUID), raw=772),  # raw protocol number
]

# status_response: u16 LE (limit - 1), i32 LE (protocol to serve), then what the backend sends.
def status_seed(json, limit=65536, protocol=767, raw=None):
    body = raw if raw is not None else varint(0) + string(json)
    return struct.pack("<Hi", limit - 1, protocol) + frame(body)


VANILLA = '{"version":{"name":"1.21","protocol":767},"players":{"max":20,"online":3,"sample":[]},"description":{"text":"A Minecraft Server"},"enforcesSecureChat":false}'
seeds["status_response"] = [
    status_seed(VANILLA),
    status_seed(VANILLA, protocol=47),
    status_seed(VANILLA + "\x00\x00junk", protocol=-1),  # bytes after the document (Gate #297)
    status_seed('{"description":"old style","version":{"name":"Paper 1.8.8","protocol":47},"favicon":"data:image/png;base64,' + "A" * 3000 + '"}'),
    status_seed('{"description":{"text":"A","extra":[{"text":"B","bold":true},"C"]},"forgeData":{"d":"' + "\\u0000" * 200 + '"}}'),
    status_seed('{"version":{"protocol":2147483647},"n":[1e15,1e15,1e15,-0.0,1.5e300]}', limit=80),
    status_seed('{"players":{"online":-5}}', limit=20),
    status_seed(VANILLA, limit=100),  # over the limit: refused from the prefix alone
    status_seed("", raw=varint(1) + string("{}")),  # wrong packet id
    status_seed("{broken"),
]

# proxy_header: what a load balancer sends first (the first 37 bytes also drive the encoder).
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command, family, addresses, tlvs=b""):
    body = addresses + tlvs
    return V2_SIG + bytes([0x20 | command, family]) + struct.pack(">H", len(body)) + body


HS_FRAME = frame(handshake(767, "mc.example.com", 25565, 2))
V4_ADDRS = bytes([203, 0, 113, 9, 10, 0, 0, 1]) + struct.pack(">HH", 51234, 25565)
V6_ADDRS = bytes(15) + b"\x01" + bytes(15) + b"\x02" + struct.pack(">HH", 51234, 25565)
seeds["proxy_header"] = [
    b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 25565\r\n" + HS_FRAME,
    b"PROXY TCP6 2001:db8::1 2001:db8::2 51234 25565\r\n",
    b"PROXY UNKNOWN\r\n" + HS_FRAME,
    b"PROXY TCP4 " + b"9" * 120,  # a v1 line that never ends
    v2(1, 0x11, V4_ADDRS) + HS_FRAME,
    v2(1, 0x21, V6_ADDRS),
    v2(0, 0x00, b""),  # LOCAL: a health check
    v2(1, 0x11, V4_ADDRS, b"\x04\x00\x04noop"),  # a NOOP TLV
    v2(1, 0x11, V4_ADDRS)[:20],  # cut short
    V2_SIG + b"\x21\x11\xff\xff" + bytes(40),  # claims 64 KiB
    HS_FRAME,  # no header at all
    b"\x0d\x00\xfd\x05",  # a 13-byte frame starts with '\r' like the v2 signature
]


# ticket_verify: mode byte, then either presented bytes (even) or signing fields (odd).
def ticket_like(family=4, server=b"survival"):
    ip = bytes([203, 0, 113, 7]) if family == 4 else bytes(15) + b"\x01"
    return (
        bytes([1, family]) + ip + struct.pack(">Q", 1_800_000_060) + bytes(8)
        + struct.pack(">H", len(server)) + server + bytes(32)
    )


def signing(flags, expires, now, server=b"survival", flip_at=0, flip=0, cut=0, v6=False):
    addr = (bytes(15) + b"\x01") if v6 else (bytes([203, 0, 113, 7]) + bytes(12))
    fields = (
        bytes([flags | (1 if v6 else 0)]) + addr + struct.pack(">II", expires, now)
        + struct.pack(">H", flip_at) + bytes([flip, cut]) + bytes([203, 0, 113, 8]) + bytes(5)
    )
    assert len(fields) == 38
    return b"\x01" + fields + server


seeds["ticket_verify"] = [
    b"\x00" + ticket_like(),
    b"\x00" + ticket_like(6),
    b"\x00" + ticket_like(server=b"x" * 300),
    b"\x00" + bytes(10),
    signing(0b000_00_0, 1_800_000_060, 1_800_000_000),  # valid and undamaged
    signing(0b000_00_0, 1_800_000_060, 1_800_000_000, flip_at=5, flip=0x40),
    signing(0b001_00_0, 1_800_000_060, 1_800_000_000, cut=3),  # cut short
    signing(0b010_00_0, 1_800_000_060, 1_800_000_000, flip=7),  # one byte longer
    signing(0b000_10_0, 1_800_000_060, 1_800_000_000),  # checked from the v4-mapped v6 form
    signing(0b000_11_0, 1_800_000_060, 1_800_000_000),  # checked from another address
    signing(0b000_00_0, 1_800_000_060, 1_800_000_060),  # expired on the second
    signing(0b000_00_0, 1_800_000_060, 1_800_000_000, v6=True),
    signing(0b000_00_0, 1_800_000_060, 1_800_000_000, server=b"\xe2\x82" * 1700),  # lossy: too long
]

if ROOT.exists():
    shutil.rmtree(ROOT)
for target, inputs in seeds.items():
    d = ROOT / target
    d.mkdir(parents=True)
    for data in inputs:
        (d / hashlib.sha1(data).hexdigest()).write_bytes(data)
    print(f"{target}: {len(inputs)} seeds")
