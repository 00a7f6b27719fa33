"""Join latency under a flood of bad handshakes (issue 12, "Also": legit join p99 under
2,000 bad handshakes/s should stay within 1.2x of idle).

Starts backend.js (1.21.4) and `warden run`, measures JOINS sequential joins (handshake +
Login Start until the backend's first login reply, through Warden) idle, then while RATE
connections per second from 30 /24s send a malformed frame (a length prefix that never
ends) and close. Prints p50/p99 for both phases and their ratio.

Usage (from the repo root; needs node and the npm peers in tests/peers):
    python3 bench/flood_join.py --warden target/release/warden [--rate 2000] [--joins 400]
"""
import argparse, resource, socket, threading, time

from joinkit import Setup

ap = argparse.ArgumentParser()
ap.add_argument("--warden", required=True)
ap.add_argument("--rate", type=int, default=2000)
ap.add_argument("--joins", type=int, default=400)
ap.add_argument("--nofile", type=int, default=8192)
args = ap.parse_args()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

bench = Setup("flood", args.warden, args.nofile, args.joins)
port, warden, backend = bench.port, bench.warden, bench.backend

bench.measure("warm-up (backend compiles; not used)")
idle = bench.measure("idle", (0.5, 0.99))
stop = False
sent = [0]
def flood(offset):
    # Paced: RATE/2 connections per second from each of two threads.
    per = 2.0 / args.rate
    n = offset
    next_t = time.perf_counter()
    while not stop:
        src = f"127.0.{10 + n % 30}.{1 + (n // 30) % 250}"
        try:
            s = socket.socket(); s.bind((src, 0)); s.settimeout(1)
            s.connect(("127.0.0.1", port)); s.sendall(b"\xff\xff\xff\xff"); s.close()
            sent[0] += 1
        except OSError:
            pass
        n += 2
        next_t += per
        delay = next_t - time.perf_counter()
        if delay > 0: time.sleep(delay)
threads = [threading.Thread(target=flood, args=(i,), daemon=True) for i in (0, 1)]
t0 = time.perf_counter()
for t in threads: t.start()
time.sleep(2)
under = bench.measure(f"under {args.rate} bad handshakes/s", (0.5, 0.99))
stop = True
for t in threads: t.join()
print(f"  flood sent {sent[0] / (time.perf_counter() - t0):.0f} bad handshakes/s")
print(f"  ratio under flood / idle: p50 {under[0] / idle[0]:.2f}x  p99 {under[1] / idle[1]:.2f}x")
warden.kill(); backend.kill()
