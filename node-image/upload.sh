#!/usr/bin/env bash
# Turns the raw node image into a Hetzner Cloud snapshot by the documented rescue-system
# method: create a temporary server, enable the rescue system, boot it, write the image to
# the server's disk over SSH, shut down, create_image (type snapshot, labelled), delete the
# temporary server (also on failure). Prints the snapshot's id. The capacity controller's
# node template then finds the newest snapshot by label (forecast::hetzner::Client::
# newest_snapshot, e.g. label_selector "warden-node").
#
#   HCLOUD_TOKEN=... node-image/upload.sh target/node-image/warden-node.raw
#
# Env:  HCLOUD_TOKEN        API token (read/write), required
#       HCLOUD_ENDPOINT     default https://api.hetzner.cloud/v1 (tests: the local fake)
#       WARDEN_UPLOAD_LOCATION (fsn1), WARDEN_UPLOAD_SERVER_TYPE (cx22): the temporary server
#       WARDEN_UPLOAD_SSH_KEY  name or id of a project SSH key for the rescue system (else
#                           its root password, through sshpass)
#       WARDEN_UPLOAD_LABELS   extra labels, "k=v,k=v" (default warden-node=1)
#       WARDEN_UPLOAD_WRITE    command that writes the image instead of SSH, run with the
#                           env IMAGE, SERVER_IP, ROOT_PASSWORD (tests use it: the fake has
#                           no rescue system to SSH into)
# Labels always include warden-version=<the manifest's warden-version> and
# warden-image-sha256=<first 16 hex of the image's sha256>.
set -euo pipefail
IMAGE=${1:?usage: upload.sh IMAGE.raw}
[ -f "$IMAGE" ] || { echo "upload: no image $IMAGE" >&2; exit 1; }
MANIFEST=${IMAGE%.raw}.manifest
: "${HCLOUD_TOKEN:?HCLOUD_TOKEN is required}"
API=${HCLOUD_ENDPOINT:-https://api.hetzner.cloud/v1}
API=${API%/}
LOCATION=${WARDEN_UPLOAD_LOCATION:-fsn1}
TYPE=${WARDEN_UPLOAD_SERVER_TYPE:-cx22}
VERSION=$(awk '$1 == "warden-version" { print $2 }' "$MANIFEST" 2>/dev/null || true)
SHA=$(awk '$1 == "image-sha256" { print substr($2, 1, 16) }' "$MANIFEST" 2>/dev/null || true)
[ -n "$VERSION" ] || VERSION=unknown
[ -n "$SHA" ] || SHA=$(sha256sum <"$IMAGE" | cut -c1-16)
LABELS="warden-version=$VERSION,warden-image-sha256=$SHA,${WARDEN_UPLOAD_LABELS:-warden-node=1}"
ACTION_TIMEOUT=${WARDEN_UPLOAD_ACTION_TIMEOUT:-600}

log() { printf '[upload %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# call METHOD PATH [JSON]: the answer's body; fails on a status >= 400 with Hetzner's message.
call() {
    local out code
    out=$(curl -sS -m 60 -X "$1" -H "Authorization: Bearer $HCLOUD_TOKEN" -H 'Content-Type: application/json' \
        ${3:+--data "$3"} -w '\n%{http_code}' "$API$2") || die "$1 $2: curl failed"
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    if [ "$code" -ge 400 ]; then
        die "$1 $2: HTTP $code: $(printf '%s' "$out" | json 'd.get("error", {}).get("message", d)')"
    fi
    printf '%s' "$out"
}
# json EXPR: evaluates EXPR on the JSON document d read from stdin.
json() { python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"; }
wait_action() { # wait_action ID
    local deadline=$((SECONDS + ACTION_TIMEOUT)) status
    while :; do
        status=$(call GET "/actions/$1" | json 'd["action"]["status"]')
        case $status in
        success) return 0 ;;
        error) die "action $1 failed: $(call GET "/actions/$1" | json 'd["action"]["error"]')" ;;
        esac
        [ $SECONDS -lt $deadline ] || die "action $1 still $status after $ACTION_TIMEOUT s"
        sleep "${WARDEN_UPLOAD_POLL_S:-2}"
    done
}
labels_json() {
    python3 -c 'import json, sys; print(json.dumps(dict(kv.split("=", 1) for kv in sys.argv[1].split(",") if kv)))' "$1"
}

SERVER=""
cleanup() {
    if [ -n "$SERVER" ]; then
        log "deleting the temporary server $SERVER"
        curl -sS -m 60 -X DELETE -H "Authorization: Bearer $HCLOUD_TOKEN" "$API/servers/$SERVER" >/dev/null || true
    fi
}
trap cleanup EXIT

name="warden-image-upload-$(date +%s)"
log "creating the temporary server $name ($TYPE in $LOCATION)"
created=$(call POST /servers "$(python3 -c 'import json, sys; print(json.dumps({
    "name": sys.argv[1], "server_type": sys.argv[2], "location": sys.argv[3], "image": "debian-12",
    "start_after_create": False, "labels": {"warden-image-upload": "1"}}))' "$name" "$TYPE" "$LOCATION")")
SERVER=$(printf '%s' "$created" | json 'd["server"]["id"]')
IP=$(printf '%s' "$created" | json 'd["server"]["public_net"]["ipv4"]["ip"]')
wait_action "$(printf '%s' "$created" | json 'd["action"]["id"]')"

log "enabling the rescue system"
rescue_body='{"type":"linux64"}'
if [ -n "${WARDEN_UPLOAD_SSH_KEY:-}" ]; then
    rescue_body=$(python3 -c 'import json, sys; k = sys.argv[1]; print(json.dumps({"type": "linux64", "ssh_keys": [int(k) if k.isdigit() else k]}))' "$WARDEN_UPLOAD_SSH_KEY")
fi
rescue=$(call POST "/servers/$SERVER/actions/enable_rescue" "$rescue_body")
ROOT_PASSWORD=$(printf '%s' "$rescue" | json 'd.get("root_password") or ""')
wait_action "$(printf '%s' "$rescue" | json 'd["action"]["id"]')"
log "booting it into the rescue system"
wait_action "$(call POST "/servers/$SERVER/actions/poweron" | json 'd["action"]["id"]')"

log "writing $IMAGE ($(du -h --apparent-size "$IMAGE" | cut -f1)) to $IP"
if [ -n "${WARDEN_UPLOAD_WRITE:-}" ]; then
    IMAGE="$IMAGE" SERVER_IP="$IP" ROOT_PASSWORD="$ROOT_PASSWORD" bash -c "$WARDEN_UPLOAD_WRITE"
else
    ssh_opts=(-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10)
    ssh_cmd=(ssh "${ssh_opts[@]}" "root@$IP")
    [ -n "${WARDEN_UPLOAD_SSH_KEY:-}" ] || ssh_cmd=(sshpass -e ssh "${ssh_opts[@]}" "root@$IP")
    export SSHPASS=$ROOT_PASSWORD
    deadline=$((SECONDS + 300))
    until "${ssh_cmd[@]}" true 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || die "the rescue system does not answer SSH on $IP"
        sleep 5
    done
    # zstd on the wire (the rescue system has it); blkdiscard first keeps the snapshot small.
    zstd -q -c -T0 "$IMAGE" | "${ssh_cmd[@]}" \
        'blkdiscard /dev/sda 2>/dev/null || true; zstd -q -d -c | dd of=/dev/sda bs=4M conv=fsync status=none && sync'
fi

log "shutting down and taking the snapshot ($LABELS)"
wait_action "$(call POST "/servers/$SERVER/actions/poweroff" | json 'd["action"]["id"]')"
snap=$(call POST "/servers/$SERVER/actions/create_image" "$(python3 -c 'import json, sys; print(json.dumps({
    "type": "snapshot", "description": sys.argv[1], "labels": json.loads(sys.argv[2])}))' \
    "warden-node $VERSION ($SHA)" "$(labels_json "$LABELS")")")
IMAGE_ID=$(printf '%s' "$snap" | json 'd["image"]["id"]')
wait_action "$(printf '%s' "$snap" | json 'd["action"]["id"]')"
log "snapshot $IMAGE_ID ready"
echo "$IMAGE_ID"
