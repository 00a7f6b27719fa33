"""Join latency under a slowloris flood at a low file-descriptor limit (issue 12, finding 3).

Starts backend.js (1.21.4) and `warden run` under `prlimit --nofile=N:N`, measures joins
(handshake + Login Start until the backend's first login reply, through Warden) idle, then
while FLOOD connections from 30 /24s (each under the per-/24 cap) hold a partial handshake
and are reopened as soon as Warden closes them. Prints p50/p90 for both phases.

Usage (from the repo root; needs node and the npm peers in tests/peers):
    python3 bench/slowloris_join.py --warden target/debug/warden [--flood 3000] [--nofile 1024]
"""
import argparse, json, os, resource, selectors, socket, statistics, struct, subprocess
import sys, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("--warden", required=True)
ap.add_argument("--flood", type=int, default=3000)
ap.add_argument("--nofile", type=int, default=1024)
ap.add_argument("--joins", type=int, default=20)
args = ap.parse_args()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.flood + 1000), hard))

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

d = tempfile.mkdtemp(prefix="warden-slowloris-")
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
    p = lambda q: f"{done[min(len(done) - 1, int(len(done) * q))] * 1e3:.1f} ms" if done else "n/a"
    print(f"{label:34s} joins ok {len(done)}/{len(lat)}  p50 {p(0.5)}  p90 {p(0.9)}", flush=True)

def rss():
    try:
        for l in open(f"/proc/{warden.pid}/status"):
            if l.startswith("VmRSS"): return l.split(":")[1].strip()
    except OSError:
        return "n/a"

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
