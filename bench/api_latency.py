"""Control API latency: sequential keep-alive requests (p50/p99, req/s) and how fast a wake
shows up on the live event stream.

Usage (a running `warden run` with an [api] section and a managed server `survival`):
    .venv/bin/python bench/api_latency.py 127.0.0.1 9941 "$(warden token create --role admin --config F)"
"""
import http.client, json, sys, time, threading, statistics
host, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def run(path, n, auth=True):
    c = http.client.HTTPConnection(host, port)
    h = {"Authorization": f"Bearer {token}"} if auth else {}
    lat = []
    t0 = time.perf_counter()
    for _ in range(n):
        s = time.perf_counter()
        c.request("GET", path, headers=h)
        r = c.getresponse(); r.read()
        assert r.status == 200, (path, r.status)
        lat.append(time.perf_counter() - s)
    total = time.perf_counter() - t0
    lat.sort()
    print(f"{path:28s} n={n} p50={lat[n//2]*1e3:.3f} ms p99={lat[int(n*0.99)]*1e3:.3f} ms {n/total:.0f} req/s")
run("/health/live", 2000, auth=False)
run("/v1/servers", 2000)
run("/v1/routes/resolve?host=survival.test", 2000)
run("/v1/events?limit=100", 1000)
# SSE: time from the wake request to the stream's server_started event.
got = {}
def listen():
    c = http.client.HTTPConnection(host, port)
    c.request("GET", "/v1/events/stream", headers={"Authorization": f"Bearer {token}"})
    r = c.getresponse()
    while True:
        line = r.fp.readline().decode()
        if line.startswith("event: "):
            name = line[7:].strip()
            got.setdefault(name, time.perf_counter())
            if name == "server_started": return
t = threading.Thread(target=listen, daemon=True); t.start(); time.sleep(0.5)
c = http.client.HTTPConnection(host, port)
t0 = time.perf_counter()
c.request("POST", "/v1/servers/survival/actions/wake", body="{}", headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
r = c.getresponse(); act = json.loads(r.read()); t_accept = time.perf_counter() - t0
while True:
    c.request("GET", f"/v1/actions/{act['id']}", headers={"Authorization": f"Bearer {token}"})
    a = json.loads(c.getresponse().read())
    if a["progress"] != "running": break
    time.sleep(0.01)
t_done = time.perf_counter() - t0
t.join(10)
print(f"wake action: 202 after {t_accept*1e3:.1f} ms; server_starting on the stream after {(got.get('server_starting',0)-t0)*1e3:.1f} ms; "
      f"server_started after {(got.get('server_started',0)-t0)*1e3:.1f} ms; action succeeded (seen by polling) after {t_done*1e3:.1f} ms")
