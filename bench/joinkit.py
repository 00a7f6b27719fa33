"""Shared by the join benches (slowloris_join.py, flood_join.py): starts backend.js (1.21.4)
and `warden run` under `prlimit --nofile=N:N` in front of it, and times joins through it
(handshake + Login Start until the backend's first login reply).
"""
import json, os, socket, struct, subprocess, tempfile, threading, time


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


class Setup:
    """backend.js and Warden, started; `measure`, `rss`, `kill`."""

    def __init__(self, name, warden_bin, nofile, joins):
        peers = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "peers")
        backend = subprocess.Popen(["node", "backend.js", "--versions", "1.21.4", "--base-port", "0"],
                                   cwd=peers, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        bport = None
        for line in backend.stdout:
            ev = json.loads(line)
            if ev.get("event") == "ready": bport = ev["servers"][0]["port"]; break
        threading.Thread(target=lambda: [None for _ in backend.stdout], daemon=True).start()

        d = tempfile.mkdtemp(prefix=f"warden-{name}-")
        port, metrics = free_port(), free_port()
        with open(f"{d}/warden.toml", "w") as f:
            f.write("\n".join([
                "[edge]", f'listen = "127.0.0.1:{port}"', f'upgrade_sock = "{d}/up.sock"',
                "[edge.limits]", "login_per_second = 100000", "status_per_second = 100000",
                "[metrics]", f'listen = "127.0.0.1:{metrics}"',
                "[[servers]]", 'id = "s"', 'hosts = ["s.test"]', f'backend = "127.0.0.1:{bport}"', "",
            ]))

        log = open(f"{d}/warden.log", "w")
        warden = subprocess.Popen(["prlimit", f"--nofile={nofile}:{nofile}", warden_bin, "run",
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

        def measure(label, quantiles=(0.5, 0.9)):
            """Runs JOINS sequential joins; prints and returns the quantiles (ms) of those that succeeded."""
            lat = [join(i) for i in range(joins)]
            done = sorted(x for x in lat if x is not None)
            q = lambda f: done[min(len(done) - 1, int(len(done) * f))] * 1e3 if done else float("nan")
            figures = [q(f) for f in quantiles]
            shown = "  ".join(f"p{round(f * 100)} {v:.2f} ms" for f, v in zip(quantiles, figures))
            print(f"{label:34s} joins ok {len(done)}/{len(lat)}  {shown}", flush=True)
            return figures

        def rss():
            try:
                for l in open(f"/proc/{warden.pid}/status"):
                    if l.startswith("VmRSS"): return l.split(":")[1].strip()
            except OSError:
                return "n/a"

        self.port, self.metrics, self.dir = port, metrics, d
        self.warden, self.backend = warden, backend
        self.measure, self.rss = measure, rss

    def kill(self):
        self.warden.kill(); self.backend.kill()
