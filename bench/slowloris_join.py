"""Join latency under a slowloris flood at a low file-descriptor limit (issue 12, finding 3).

Starts backend.js (1.21.4) and `warden run` under `prlimit --nofile=N:N`, measures joins
(handshake + Login Start until the backend's first login reply, through Warden) idle, then
while FLOOD connections from 30 /24s (each under the per-/24 cap) hold a partial handshake
and are reopened as soon as Warden closes them. Prints p50/p90 for both phases.

Usage (from the repo root; needs node and the npm peers in tests/peers):
    python3 bench/slowloris_join.py --warden target/debug/warden [--flood 3000] [--nofile 1024]
"""
import argparse, resource, selectors, socket, threading, time

from joinkit import Setup

ap = argparse.ArgumentParser()
ap.add_argument("--warden", required=True)
ap.add_argument("--flood", type=int, default=3000)
ap.add_argument("--nofile", type=int, default=1024)
ap.add_argument("--joins", type=int, default=20)
args = ap.parse_args()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.flood + 1000), hard))

bench = Setup("slowloris", args.warden, args.nofile, args.joins)
port, metrics, d, warden, backend = bench.port, bench.metrics, bench.dir, bench.warden, bench.backend
measure, rss = bench.measure, bench.rss

measure("idle")
print("  RSS idle:", rss(), flush=True)
stop = False
opened = [0]
def flood():
    sel = selectors.DefaultSelector()
    def open_one(n):
        src = f"127.0.{10 + n % 30}.{1 + (n // 30) % 250}"
        s = socket.socket(); s.setblocking(False); s.bind((src, 0))
        try: s.connect(("127.0.0.1", port))
        except BlockingIOError: pass
        sel.register(s, selectors.EVENT_WRITE, n)
    for n in range(args.flood): open_one(n)
    while not stop:
        for key, ev in sel.select(0.2):
            s, n = key.fileobj, key.data
            if ev & selectors.EVENT_WRITE:
                try: s.send(b"\x10"); opened[0] += 1
                except OSError: pass
                sel.modify(s, selectors.EVENT_READ, n)
            else:
                try: data = s.recv(1)
                except OSError: data = b""
                if not data:  # closed by Warden (deadline or shed): come back at once
                    sel.unregister(s); s.close(); open_one(n)
threading.Thread(target=flood, daemon=True).start()
time.sleep(5)
measure(f"under {args.flood} slowloris")
stop = True
print("  RSS under the flood:", rss())
try:
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
    for l in text.splitlines():
        if l.startswith(("warden_connections_shed_total", "warden_connections_fd_capacity", "warden_connections_open")):
            print(" ", l)
except OSError as e:
    print("  metrics unavailable:", e)
time.sleep(10)
print("  RSS 10 s after the flood:", rss())
print("  'Too many open files' in the log:", open(f"{d}/warden.log").read().count("Too many open files"))
warden.kill(); backend.kill()
