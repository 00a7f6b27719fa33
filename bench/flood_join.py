"""Join latency under a flood of bad handshakes (issue 12, "Also": legit join p99 under
2,000 bad handshakes/s should stay within 1.2x of idle).

Starts backend.js (1.21.4) and `warden run`, measures JOINS sequential joins (handshake +
Login Start until the backend's first login reply, through Warden) idle, then while RATE
connections per second from 30 /24s send a malformed frame (a length prefix that never
ends) and close. Prints p50/p99 for both phases and their ratio.

Usage (from the repo root; needs node and the npm peers in tests/peers):
    python3 bench/flood_join.py --warden target/release/warden [--rate 2000] [--joins 400]
"""
import argparse, json, os, resource, selectors, socket, statistics, struct, subprocess
import sys, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--warden", required=True)
ap.add_argument("--rate", type=int, default=2000)
ap.add_argument("--joins", type=int, default=400)
ap.add_argument("--nofile", type=int, default=8192)
args = ap.parse_args()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

def varint(n):
    out = b""
    while True:
        b = n & 0x7F; n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n: return out
def string(s): b = s.encode(); return varint(len(b)) + b
def frame(body): return varint(len(body)) + body

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

peers = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "peers")
backend = subprocess.Popen(["node", "backend.js", "--versions", "1.21.4", "--base-port", "0"],
                           cwd=peers, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
bport = None
for line in backend.stdout:
    ev = json.loads(line)
    if ev.get("event") == "ready": bport = ev["servers"][0]["port"]; break
threading.Thread(target=lambda: [None for _ in backend.stdout], daemon=True).start()

d = tempfile.mkdtemp(prefix="warden-flood-")
port, metrics = free_port(), free_port()
with open(f"{d}/warden.toml", "w") as f:
    f.write(f"""[edge]
listen = "127.0.0.1:{port}"
upgrade_sock = "{d}/up.sock"
[edge.limits]
login_per_second = 100000
status_per_second = 100000
[metrics]
listen = "127.0.0.1:{metrics}"
[[servers]]
id = "s"
hosts = ["s.test"]
backend = "127.0.0.1:{bport}"
""")
log = open(f"{d}/warden.log", "w")
warden = subprocess.Popen(["prlimit", f"--nofile={args.nofile}:{args.nofile}", args.warden, "run",
                           "--config", f"{d}/warden.toml"], stdout=subprocess.DEVNULL, stderr=log)
for _ in range(100):
    try: socket.create_connection(("127.0.0.1", port), 0.2).close(); break
    except OSError: time.sleep(0.1)

HS = frame(b"\x00" + varint(769) + string("s.test") + struct.pack(">H", 25565) + varint(2))
def join(i):
    t0 = time.perf_counter()
    try:
        s = socket.create_connection(("127.0.0.1", port), 30)
        s.settimeout(30)
        s.sendall(HS + frame(b"\x00" + string(f"p{i}") + os.urandom(16)))
        ok = len(s.recv(64)) > 0
        s.close()
        return time.perf_counter() - t0 if ok else None
    except OSError:
        return None

def measure(label):
    lat = [join(i) for i in range(args.joins)]
    done = sorted(x for x in lat if x is not None)
    q = lambda f: done[min(len(done) - 1, int(len(done) * f))] * 1e3 if done else float("nan")
    print(f"{label:34s} joins ok {len(done)}/{len(lat)}  p50 {q(0.5):.2f} ms  p99 {q(0.99):.2f} ms", flush=True)
    return q(0.5), q(0.99)

def rss():
    try:
        for l in open(f"/proc/{warden.pid}/status"):
            if l.startswith("VmRSS"): return l.split(":")[1].strip()
    except OSError:
        return "n/a"

idle = measure("idle")
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
under = measure(f"under {args.rate} bad handshakes/s")
stop = True
for t in threads: t.join()
print(f"  flood sent {sent[0] / (time.perf_counter() - t0):.0f} bad handshakes/s")
print(f"  ratio under flood / idle: p50 {under[0] / idle[0]:.2f}x  p99 {under[1] / idle[1]:.2f}x")
warden.kill(); backend.kill()
