#!/usr/bin/env bash
# The node image, booted: builds node-image/ (cached), boots it with qemu + KVM and a NoCloud
# seed inside a network namespace this script creates, and asserts within bounded times:
#   1. good user data (BIOS boot): warden-firstboot checks the config and starts warden;
#      warden.service is active (Type=notify: after warden's READY=1), /health/ready answers
#      200, /metrics answers, and a real player (npm minecraft-protocol) joins through the
#      VM's game port, waking the demo server (process runtime) that the VM runs;
#   2. reboot (ACPI power-off, power-on, same disk): warden comes back with its state (the
#      embedded store on the disk: the API token and the wake before the reboot are still
#      there) and the server wakes again for a player;
#   3. bad user data (UEFI boot, OVMF): warden is not started and the reason is on the serial
#      console.
# The host reaches the guest only through loopback ports forwarded into the namespace
# (socat on the host -> `ip netns exec` -> qemu's user-mode hostfwd on the namespace's
# loopback). Everything it starts ends with it (process groups, the namespace).
#
# Usage: scripts/image-test.sh         (root; /dev/kvm; tests/peers/node_modules from
#                                       scripts/install-test-deps.sh)
# Env:   WARDEN_BIN=PATH     the release binary to put in the image (e.g. the quickstart's);
#                            default: node-image/build.sh builds one
#        WARDEN_IMAGE_OUT    where the image is built (default target/node-image)
#        WARDEN_IMAGE_CACHE  the rootfs cache (node-image/build.sh)
#        WARDEN_IMAGE_TEST_PORT  first of the host loopback ports used (default 47560)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/tests/peers"
OUT="${WARDEN_IMAGE_OUT:-$ROOT/target/node-image}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/warden-image-test.XXXXXX")"
NS="warden-img-$$"
BASEPORT="${WARDEN_IMAGE_TEST_PORT:-47560}"
HGAME=$((BASEPORT + 5)) HMET=$((BASEPORT + 0)) HAPI=$((BASEPORT + 1))
PGIDS=()
QEMU=""
T0=$SECONDS

say() { printf '[image-test %(%H:%M:%S)T +%ss] %s\n' -1 $((SECONDS - T0)) "$*" >&2; }
has() { case "$1" in *"$2"*) return 0 ;; *) return 1 ;; esac; }
fail() {
  say "FAILED: $*"
  for f in "$WORK"/*.serial; do
    [ -f "$f" ] || continue
    say "last lines of $(basename "$f"):"
    tail -n 40 "$f" | tr -d '\r' >&2
  done
  exit 1
}
cleanup() {
  local g
  for g in "${PGIDS[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
  sleep 0.5
  for g in "${PGIDS[@]}"; do kill -KILL -- "-$g" 2>/dev/null || true; done
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || fail "run as root (network namespace, debootstrap)"
[ -e /dev/kvm ] || fail "no /dev/kvm"

# ---- dependencies: qemu and qemu-img (qemu-utils; the same version as qemu-system-x86:
# from backports when that is), socat, genisoimage for the seed, OVMF for the UEFI boot
need=()
for p in qemu-system-x86 qemu-utils socat genisoimage ovmf curl; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
# qemu-system-x86 and qemu-utils go in together: installing the first alone from the main
# suite removes a qemu-utils from backports (as these machines have), and with it qemu-img.
if [[ " ${need[*]} " == *" qemu-system-x86 "* && " ${need[*]} " != *" qemu-utils "* ]]; then
  need+=(qemu-utils)
fi
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>"$WORK/apt.err"; then
    # qemu-utils from bookworm-backports (as on these machines) needs qemu-system-x86 from there.
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$uri" ] || uri=http://deb.debian.org/debian
    say "plain install failed ($(tail -1 "$WORK/apt.err")); trying $codename-backports"
    printf 'Types: deb\nURIs: %s\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$uri" "$codename" >/etc/apt/sources.list.d/warden-image-backports.sources
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t "$codename-backports" "${need[@]}" >/dev/null
  fi
fi
command -v qemu-img >/dev/null && command -v qemu-system-x86_64 >/dev/null ||
  fail "qemu-img or qemu-system-x86_64 missing after installing ${need[*]:-nothing}"
[ -d "$PEERS/node_modules/minecraft-protocol" ] || fail "tests/peers/node_modules missing: run scripts/install-test-deps.sh"

# ---- the image (cached rootfs; WARDEN_BIN reuses a release build)
b0=$SECONDS
"$ROOT/node-image/build.sh" "$OUT" >&2
say "image built in $((SECONDS - b0)) s: $(grep -E '^image-bytes' "$OUT/warden-node.manifest")"
RAW="$OUT/warden-node.raw"
WARDEN_HOST="${WARDEN_BIN:-}"
[ -n "$WARDEN_HOST" ] || WARDEN_HOST="${CARGO_TARGET_DIR:-$ROOT/target}/release/warden"

# ---- the network namespace and the host's forwarded loopback ports
ip netns add "$NS"
ip -n "$NS" link set lo up
cat >"$WORK/into-ns" <<EOF
#!/bin/sh
exec ip netns exec $NS socat STDIO TCP:127.0.0.1:\$1
EOF
chmod 755 "$WORK/into-ns"
forward() { # forward HOST_PORT NS_PORT
  # (stderr: every poll before the guest listens is a refused connection)
  setsid socat "TCP-LISTEN:$1,bind=127.0.0.1,fork,reuseaddr" "EXEC:$WORK/into-ns $2" 2>/dev/null &
  PGIDS+=($!)
}
forward "$HGAME" 25565
forward "$HMET" 9940
forward "$HAPI" 9941

# ---- NoCloud seeds
seed() { # seed NAME WARDEN_TOML_FILE
  local d="$WORK/seed-$1"
  mkdir -p "$d"
  printf 'instance-id: iid-warden-test-%s\nlocal-hostname: warden-test\n' "$1" >"$d/meta-data"
  {
    echo "#cloud-config"
    echo "write_files:"
    echo "  - path: /etc/warden/warden.toml"
    echo "    permissions: \"0640\""
    echo "    content: |"
    sed 's/^/      /' "$2"
    echo "  - path: /etc/warden/node.toml"
    echo "    content: |"
    echo "      [firewall]"
    echo "      api_sources = [\"10.0.2.0/24\"]   # qemu's user-mode network: the host is 10.0.2.2"
    # A test-only probe (not part of the image): on every boot it waits for warden.service to
    # be active and prints its state, its RSS and a viewer token (made once, kept on the disk)
    # to the serial console, which is all the test reads from inside the VM.
    echo "  - path: /etc/systemd/system/warden-test-probe.service"
    echo "    content: |"
    echo "      [Unit]"
    echo "      After=warden-firstboot.service"
    echo "      [Service]"
    echo "      Type=oneshot"
    echo "      ExecStart=/usr/local/sbin/warden-test-probe"
    echo "      [Install]"
    echo "      WantedBy=multi-user.target"
    echo "  - path: /usr/local/sbin/warden-test-probe"
    echo "    permissions: \"0755\""
    echo "    content: |"
    echo "      #!/bin/sh"
    echo "      for i in \$(seq 180); do s=\$(systemctl is-active warden.service); [ \"\$s\" = active ] && break; systemctl is-failed -q warden-firstboot.service && break; sleep 1; done"
    echo "      pid=\$(systemctl show -p MainPID --value warden.service)"
    echo "      echo \"WARDEN-TEST: warden.service \$s pid \$pid\" >/dev/ttyS0"
    echo "      [ \"\$s\" = active ] || exit 0"
    echo "      t=/var/lib/warden-test/token"
    echo "      mkdir -p /var/lib/warden-test"
    echo "      [ -s \$t ] || for i in \$(seq 30); do warden token create --role viewer --config /etc/warden/warden.toml >\$t 2>/dev/null && break; sleep 1; done"
    echo "      echo \"WARDEN-TEST-TOKEN=\$(cat \$t)\" >/dev/ttyS0"
    echo "      sleep 20; echo \"WARDEN-TEST-RSS-KB=\$(ps -o rss= -p \$pid)\" >/dev/ttyS0"
    # The graceful upgrade as systemd runs it (ExecReload): a new main process, still active.
    echo "      [ -e /var/lib/warden-test/reloaded ] && exit 0"
    echo "      touch /var/lib/warden-test/reloaded"
    echo "      systemctl reload warden.service; r=\$?; sleep 10"
    echo "      echo \"WARDEN-TEST-RELOAD: rc \$r pid \$pid -> \$(systemctl show -p MainPID --value warden.service) \$(systemctl is-active warden.service)\" >/dev/ttyS0"
    echo "      [ \$r = 0 ] || journalctl -u warden.service -n 40 --no-pager -o cat | grep -i -e error -e upgrade -e exited | tail -4 | sed 's/^/WARDEN-TEST-JOURNAL: /' >/dev/ttyS0"
    echo "runcmd:"
    echo "  - [systemctl, enable, --now, --no-block, warden-test-probe.service]"
  } >"$d/user-data"
  genisoimage -quiet -output "$WORK/seed-$1.iso" -volid cidata -joliet -rock "$d/user-data" "$d/meta-data"
}

cat >"$WORK/good.toml" <<'EOF'
[edge]
listen = "0.0.0.0:25565"
unknown_host = "demo"

[store]
kind = "embedded"
path = "/var/lib/warden"

[archive]
kind = "local"
path = "/var/lib/warden/archive"

[api]
listen = "0.0.0.0:9941"
insecure_remote = true          # test only: plain HTTP off loopback, firewall-limited to the host

[metrics]
listen = "0.0.0.0:9940"

[[servers]]
id = "demo"
hosts = ["localhost"]
backend = "127.0.0.1:25570"
sleep_after = "1m"
memory_gb = 0.1
runtime = { kind = "process", command = ["warden", "demo-server", "--listen", "127.0.0.1:25570", "--name", "Warden demo"], dir = "/var/lib/warden/demo" }
EOF
cat >"$WORK/bad.toml" <<'EOF'
[edge]
listen = "0.0.0.0:25565"
no_such_key = true

[[servers]]
id = "demo"
hosts = ["localhost"]
EOF
seed good "$WORK/good.toml"
seed bad "$WORK/bad.toml"

# ---- the VM
boot() { # boot NAME DISK SEED [uefi|bios] [nofwd]
  local fw=() net="user,id=n0,hostfwd=tcp:127.0.0.1:25565-:25565,hostfwd=tcp:127.0.0.1:9940-:9940,hostfwd=tcp:127.0.0.1:9941-:9941"
  [ "${4:-}" = uefi ] && fw=(-bios /usr/share/ovmf/OVMF.fd)
  [ "${5:-}" = nofwd ] && net="user,id=n0,restrict=on"
  rm -f "$WORK/mon-$1.sock"
  MON="$WORK/mon-$1.sock"
  setsid ip netns exec "$NS" qemu-system-x86_64 "${ACCEL[@]}" -smp 2 -m 1536 \
    -nodefaults -display none -no-user-config "${fw[@]}" \
    -drive "file=$2,if=virtio,format=qcow2,discard=unmap" \
    -drive "file=$3,if=virtio,format=raw,readonly=on" \
    -netdev "$net" \
    -device virtio-net-pci,netdev=n0 \
    -serial "file:$WORK/$1.serial" -monitor "unix:$MON,server,nowait" &
  QEMU=$!
  PGIDS+=("$QEMU")
  BOOTED=$SECONDS
}
power_off() {
  printf 'system_powerdown\n' | socat - "UNIX-CONNECT:$MON" >/dev/null 2>&1 || true
  local deadline=$((SECONDS + 90 * SLOW))
  while kill -0 "$QEMU" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || { say "no power-off within 90 s: killing qemu"; kill -KILL -- "-$QEMU"; break; }
    sleep 1
  done
  wait "$QEMU" 2>/dev/null || true
}
serial_has() { [ -f "$WORK/$1.serial" ] && has "$(tr -d '\r' <"$WORK/$1.serial")" "$2"; }
serial_value() { tr -d '\r' <"$WORK/$1.serial" | sed -n "s/^.*$2=\([^ ]*\).*$/\1/p" | tail -1; }
http_code() { curl -s -o /dev/null -m 3 -w '%{http_code}' "$1" 2>/dev/null || true; }
wait_ready() { # wait_ready NAME LIMIT_S
  local deadline=$((SECONDS + $2 * SLOW))
  until [ "$(http_code "http://127.0.0.1:$HAPI/health/ready")" = 200 ]; do
    kill -0 "$QEMU" 2>/dev/null || fail "qemu exited"
    [ $SECONDS -lt $deadline ] || fail "/health/ready did not answer 200 within $(($2 * SLOW)) s of power-on ($1)"
    sleep 1
  done
  READY_S=$((SECONDS - BOOTED))
  say "$1: /health/ready 200 after ${READY_S} s from power-on"
}
wait_serial() { # wait_serial NAME TEXT LIMIT_S
  local deadline=$((SECONDS + $3 * SLOW))
  until serial_has "$1" "$2"; do
    kill -0 "$QEMU" 2>/dev/null || fail "qemu exited waiting for '$2' on the serial console ($1)"
    [ $SECONDS -lt $deadline ] || fail "'$2' not on the serial console within $(($3 * SLOW)) s ($1)"
    sleep 1
  done
}
player() { # player USERNAME -> JSON line
  (cd "$PEERS" && timeout $((150 * SLOW)) node player.js --port "$HGAME" --server-host localhost --version 1.20.4 \
    --username "$1" --timeout-ms $((120000 * SLOW)) 2>/dev/null) | tail -1 || true
}
json_field() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d.get('$1'))" 2>/dev/null || true; }

# ---- accelerator: KVM when it boots this image; else TCG (software), with longer waits.
# Some /dev/kvm are not full KVM: on machines whose kernel runs nested PVM (dmesg: kvm-pvm),
# only PVM-aware guest kernels run and a BIOS or UEFI boot never gets past the firmware.
ACCEL=(-enable-kvm -cpu kvm64)
SLOW=1
rm -f "$WORK/probe.serial"
setsid qemu-system-x86_64 "${ACCEL[@]}" -m 512 -nodefaults -display none -no-user-config \
  -drive "file=$RAW,if=virtio,format=raw,snapshot=on" -serial "file:$WORK/probe.serial" >/dev/null 2>&1 &
probe=$!
PGIDS+=("$probe")
for _ in $(seq 30); do
  grep -aq "Warden node" "$WORK/probe.serial" 2>/dev/null && break
  kill -0 "$probe" 2>/dev/null || break
  sleep 0.5
done
kill -KILL -- "-$probe" 2>/dev/null || true
wait "$probe" 2>/dev/null || true
if ! grep -aq "Warden node" "$WORK/probe.serial" 2>/dev/null; then
  say "KVM does not boot the image here ($(dmesg 2>/dev/null | grep -m1 -o 'kvm-pvm' || echo 'no GRUB on the serial console in 15 s')): using TCG"
  # shellcheck disable=SC2054 # tcg,thread=multi is one qemu argument
  ACCEL=(-accel tcg,thread=multi -cpu max)
  SLOW=4
fi
rm -f "$WORK/probe.serial"

qemu-img create -q -f qcow2 -F raw -b "$RAW" "$WORK/node.qcow2" 4G
qemu-img create -q -f qcow2 -F raw -b "$RAW" "$WORK/bad.qcow2" 4G

# The bad-user-data boot (3) runs beside boots 1 and 2 (no forwarded ports: it is read from
# its serial console only), unless WARDEN_IMAGE_TEST_SERIAL=1 (for clean boot timings).
PARALLEL=1
[ "${WARDEN_IMAGE_TEST_SERIAL:-0}" = 1 ] && PARALLEL=0
if [ $PARALLEL = 1 ]; then
  say "boot 3 (UEFI, bad user data), beside the others"
  boot boot3 "$WORK/bad.qcow2" "$WORK/seed-bad.iso" uefi nofwd
  BAD=$QEMU
fi

# ---- 1. good user data, BIOS
say "boot 1 (BIOS, good user data)"
boot boot1 "$WORK/node.qcow2" "$WORK/seed-good.iso"
wait_ready boot1 240
READY1=$READY_S
wait_serial boot1 "WARDEN-TEST: warden.service" 120
serial_has boot1 "WARDEN-TEST: warden.service active" || fail "warden.service not active: $(grep -a 'WARDEN-TEST:' "$WORK/boot1.serial")"
serial_has boot1 "warden-firstboot: config valid" || fail "warden-firstboot did not report a valid config"
say "warden.service active; firstboot: $(tr -d '\r' <"$WORK/boot1.serial" | grep -a -m1 'warden-firstboot:')"
metrics=$(curl -sf -m 5 "http://127.0.0.1:$HMET/metrics") || fail "/metrics did not answer"
has "$metrics" "warden_" || fail "/metrics has no warden_ series"
say "/metrics answers ($(printf '%s\n' "$metrics" | grep -vc '^#') samples)"
out=$(player Tester1)
PLAYER1=$((SECONDS - BOOTED))
say "player: $out"
has "$(printf '%s' "$out" | json_field kick)" "demo server behind Warden" || fail "the player did not reach the demo server in the VM: $out"
say "first player routed $PLAYER1 s after power-on"
wait_serial boot1 "WARDEN-TEST-TOKEN=" 60
TOKEN=$(serial_value boot1 WARDEN-TEST-TOKEN)
[ -n "$TOKEN" ] || fail "no token on the serial console"
events=$(WARDEN_TOKEN=$TOKEN "$WARDEN_HOST" --api "http://127.0.0.1:$HAPI" events --server demo 2>&1) || fail "warden events: $events"
has "$events" "starting → active" || fail "warden events does not show the wake: $events"
wait_serial boot1 "WARDEN-TEST-RSS-KB=" 60
RSS=$(serial_value boot1 WARDEN-TEST-RSS-KB)
say "idle RSS of warden in the VM: ${RSS} KiB"
wait_serial boot1 "WARDEN-TEST-RELOAD:" 90
reload=$(tr -d '\r' <"$WORK/boot1.serial" | grep -a -m1 -o 'WARDEN-TEST-RELOAD:.*')
say "systemctl reload (graceful upgrade): $reload"
# The upgrade either hands over to a new main process, or is refused and the old process
# keeps serving: never a node without warden. (With the embedded store the new process cannot
# open the store the old one holds: refused, see node-image/README.md.)
set -- $reload
case "$reload" in
*"rc 0 pid "*" active") [ "$5" != "$7" ] && [ "$7" != 0 ] || fail "the reload did not hand over to a new main process: $reload" ;;
*" active")
  [ "$5" = "$7" ] || fail "a refused reload changed the main process: $reload"
  say "the reload was refused; the old process serves on. Journal: $(tr -d '\r' <"$WORK/boot1.serial" | grep -a 'WARDEN-TEST-JOURNAL:' | cut -c1-300 | tr '\n' ' ')"
  ;;
*) fail "systemctl reload warden did not leave it active: $reload" ;;
esac
[ "$(http_code "http://127.0.0.1:$HAPI/health/ready")" = 200 ] || fail "/health/ready not 200 after the reload"

# ---- 2. reboot: the same disk, the state kept
say "power-off and boot 2 (same disk)"
power_off
boot boot2 "$WORK/node.qcow2" "$WORK/seed-good.iso"
wait_ready boot2 240
READY2=$READY_S
events2=$(WARDEN_TOKEN=$TOKEN "$WARDEN_HOST" --api "http://127.0.0.1:$HAPI" events --server demo 2>&1) ||
  fail "the token from before the reboot is not accepted (state lost?): $events2"
has "$events2" "starting → active" || fail "the wake before the reboot is gone from the events: $events2"
out=$(player Tester2)
say "player after reboot: $out"
has "$(printf '%s' "$out" | json_field kick)" "demo server behind Warden" || fail "the server did not wake after the reboot: $out"
wait_serial boot2 "WARDEN-TEST: warden.service" 60
serial_has boot2 "WARDEN-TEST: warden.service active" || fail "warden.service not active after the reboot"
power_off

# ---- 3. bad user data, UEFI: warden stays stopped, the reason on the serial console
if [ $PARALLEL = 1 ]; then
  QEMU=$BAD
else
  say "boot 3 (UEFI, bad user data)"
  boot boot3 "$WORK/bad.qcow2" "$WORK/seed-bad.iso" uefi nofwd
fi
wait_serial boot3 "warden-firstboot: NOT STARTING warden" 240
reason=$(tr -d '\r' <"$WORK/boot3.serial" | grep -a -m1 'NOT STARTING warden')
say "serial console: $reason"
has "$reason" "no_such_key" || has "$reason" "invalid" || fail "the reason does not name the problem: $reason"
wait_serial boot3 "WARDEN-TEST: warden.service" 240
serial_has boot3 "WARDEN-TEST: warden.service active" && fail "warden.service is active with bad user data"
say "bad user data: warden.service $(tr -d '\r' <"$WORK/boot3.serial" | sed -n 's/^.*WARDEN-TEST: warden.service \([a-z-]*\).*$/\1/p' | tail -1)"
kill -KILL -- "-$QEMU" 2>/dev/null || true
wait "$QEMU" 2>/dev/null || true

say "ok: image $(grep -E '^image-bytes' "$OUT/warden-node.manifest" | cut -d' ' -f2) bytes; power-on -> ready ${READY1} s (after reboot ${READY2} s); -> first player routed ${PLAYER1} s; idle RSS ${RSS} KiB; total $((SECONDS - T0)) s"
