#!/usr/bin/env bash
# node-image/upload.sh against the local fake of the Hetzner Cloud API (warden-hcloud-fake):
#   1. an upload creates a temporary server, enables the rescue system, powers it on, writes
#      the image (WARDEN_UPLOAD_WRITE: the fake has no rescue system to SSH into, so the
#      "write" is a copy that the test compares), powers it off, creates a snapshot labelled
#      warden-version=<the manifest's>, and deletes the server; the snapshot is the newest
#      one the capacity controller's label selector finds;
#   2. a failure half-way (a scripted 500 on the rescue action) still deletes the server.
# Everything it starts ends with it.
#
# Usage: scripts/image-upload-test.sh [IMAGE.raw]   (default: a small stand-in image)
# Env:   CARGO_TARGET_DIR   where the fake is built (cargo build -p warden-hcloud-fake)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/warden-upload-test.XXXXXX")"
FAKE_PID=""
say() { printf 'upload-test: %s\n' "$*" >&2; }
fail() {
  say "FAILED: $*"
  exit 1
}
cleanup() {
  [ -z "$FAKE_PID" ] || kill -TERM "$FAKE_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

(cd "$ROOT" && cargo build -q -p warden-hcloud-fake)
FAKE="${CARGO_TARGET_DIR:-$ROOT/target}/debug/warden-hcloud-fake"

IMAGE=${1:-}
if [ -z "$IMAGE" ]; then
  IMAGE="$WORK/warden-node.raw"
  head -c 3145728 /dev/urandom >"$IMAGE"
  printf 'warden-version 0.1.0-test\nimage-sha256 %s\n' "$(sha256sum <"$IMAGE" | cut -d' ' -f1)" >"$WORK/warden-node.manifest"
fi
VERSION=$(awk '$1 == "warden-version" { print $2 }' "${IMAGE%.raw}.manifest")

"$FAKE" --token test-token --listen 127.0.0.1:0 --boot-delay-ms 200 >"$WORK/fake.out" 2>"$WORK/fake.err" &
FAKE_PID=$!
for _ in $(seq 100); do
  grep -q '^listening ' "$WORK/fake.out" && break
  sleep 0.1
done
API=$(sed -n 's/^listening //p' "$WORK/fake.out")
[ -n "$API" ] || fail "the fake did not start: $(cat "$WORK/fake.err")"
BASE=${API%/v1}
get() { curl -sS -m 10 -H 'Authorization: Bearer test-token' "$API$1"; }
py() { python3 -c "import json, sys; d = json.load(sys.stdin); $1"; }
upload() {
  HCLOUD_TOKEN=test-token HCLOUD_ENDPOINT=$API WARDEN_UPLOAD_POLL_S=0.1 WARDEN_UPLOAD_ACTION_TIMEOUT=30 \
    WARDEN_UPLOAD_WRITE="cp \"\$IMAGE\" '$WORK/written.raw'; echo \"\$SERVER_IP \$ROOT_PASSWORD\" >'$WORK/written.to'" \
    timeout 120 "$ROOT/node-image/upload.sh" "$IMAGE"
}

# ---- 1. a whole upload
id=$(upload 2>"$WORK/upload.log") || fail "upload failed: $(cat "$WORK/upload.log")"
say "snapshot $id"
cmp -s "$IMAGE" "$WORK/written.raw" || fail "the image written is not the image given"
newest=$(get "/images?type=snapshot&label_selector=warden-version%3D%3D$VERSION&sort=created:desc" | py 'print(d["images"][0]["id"])')
[ "$newest" = "$id" ] || fail "the newest snapshot labelled warden-version=$VERSION is $newest, not $id"
get "/images/$id" | py '
i = d["image"]; l = i["labels"]
assert i["type"] == "snapshot", i
assert l["warden-version"] and l["warden-node"] == "1" and len(l["warden-image-sha256"]) == 16, l
print("labels:", l)' >&2 || fail "the snapshot's labels are wrong"
curl -sS -m 10 "$BASE/_fake/state" | py '
servers = [s for s in d["servers"] if s["name"].startswith("warden-image-upload-")]
assert len(servers) == 1 and servers[0]["status"] == "deleted", servers
r = d["requests"]; sid = servers[0]["id"]
for a in ("enable_rescue", "poweron", "poweroff", "create_image"):
    assert r.get(f"POST /v1/servers/{sid}/actions/{a}") == 1, (a, r)
print("temporary server", sid, "deleted; actions:", [k for k in r if "/actions/" in k and k.startswith("POST")])' >&2 ||
  fail "the temporary server or the actions are wrong"

# ---- 2. a failure half-way still deletes the temporary server
curl -sS -m 10 -X POST -H 'Content-Type: application/json' \
  --data '{"script": [["POST", "/v1/servers/", 500, "server_error"]]}' "$BASE/_fake/faults" >/dev/null
if upload 2>"$WORK/upload2.log" >/dev/null; then fail "the upload succeeded through a scripted 500"; fi
grep -q 'HTTP 500' "$WORK/upload2.log" || fail "the failure does not say why: $(cat "$WORK/upload2.log")"
curl -sS -m 10 "$BASE/_fake/state" | py '
live = [s for s in d["servers"] if s["name"].startswith("warden-image-upload-") and s["status"] != "deleted"]
assert not live, live' || fail "a failed upload left its temporary server"
say "ok: upload -> snapshot $id labelled warden-version=$VERSION, newest by label; temporary servers deleted, also after a failure"
