#!/usr/bin/env bash
# Makes sure a Docker daemon answers on this machine, for the Docker runtime's integration tests.
#
# Idempotent: if `docker info` already works, nothing is touched. Otherwise (as root) it installs
# Debian's docker.io when dockerd is missing and starts dockerd in the background WITHOUT a bridge
# network or iptables rules: Warden's containers use host networking only, and these machines
# forbid bridge networks. The storage driver is the default (overlay2) if that works here, else
# vfs (slow, but needs nothing from the kernel). The daemon logs to /tmp/warden-dockerd.log.
#
# A daemon this script starts is LEFT RUNNING (every Docker test calls this script, and they
# share one daemon); its pid is recorded in /tmp/warden-dockerd.pid. `scripts/dockerd.sh --stop`
# stops that daemon (and only one this script started: a daemon that was already running, e.g.
# the machine's own, is never touched). scripts/test.sh runs --stop when the suite ends.
#
# Last stdout line: WARDEN_DOCKER_SOCKET=unix:///var/run/docker.sock
# On failure: exit 1 and the reason on stderr, with the tail of the daemon log.
set -euo pipefail

LOG=/tmp/warden-dockerd.log
PID_FILE=/tmp/warden-dockerd.pid
SOCK=/var/run/docker.sock
WAIT_SECS=${WARDEN_DOCKERD_WAIT:-60}
# Storage drivers to try in order; "default" lets dockerd choose (overlay2 where it works).
read -r -a DRIVERS <<<"${WARDEN_DOCKERD_DRIVERS:-default vfs}"

say() { echo "dockerd.sh: $*" >&2; }
fail() {
  say "FAILED: $*"
  if [[ -f $LOG ]]; then
    # The daemon's own reason is an error/fatal line buried in gRPC chatter; show those first.
    say "errors in $LOG (last run):"
    awk '/^=== /{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$LOG" |
      grep -E 'level=(error|fatal)|failed to start daemon' | tail -n 10 >&2 || true
    say "last lines of $LOG:"
    tail -n 8 "$LOG" >&2 || true
  fi
  exit 1
}

done_ok() {
  echo "WARDEN_DOCKER_SOCKET=unix://$SOCK"
  exit 0
}

if [[ ${1:-} == --stop ]]; then
  pid=$(cat "$PID_FILE" 2>/dev/null || true)
  if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null || [[ $(ps -o comm= -p "$pid") != dockerd ]]; then
    say "no dockerd started by this script is running; nothing to stop"
    rm -f "$PID_FILE"
    exit 0
  fi
  say "stopping dockerd pid $pid (started by this script)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    say "dockerd did not stop in 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
  exit 0
fi

if docker info >/dev/null 2>&1; then
  done_ok
fi

[[ $(id -u) -eq 0 ]] || fail "docker is not answering and starting dockerd needs root"

if ! command -v dockerd >/dev/null 2>&1; then
  say "installing docker.io (dockerd, containerd, runc) with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || fail "apt-get update failed"
  # --no-install-recommends keeps out apparmor/cgroupfs-mount helpers that try to start services.
  apt-get install -y -qq --no-install-recommends docker.io >&2 || fail "apt-get install docker.io failed"
  command -v dockerd >/dev/null 2>&1 || fail "docker.io installed but dockerd is not on PATH"
fi

# A daemon we started earlier may still be coming up: give it the chance before starting another.
running_pid() { pgrep -x dockerd | head -n 1 || true; }

wait_for_docker() {
  local pid=$1 i
  for ((i = 0; i < WAIT_SECS * 2; i++)); do
    if docker info >/dev/null 2>&1; then
      return 0
    fi
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      return 1
    fi
    sleep 0.5
  done
  return 1
}

# --ip6tables only exists in newer daemons; passing an unknown flag would stop dockerd at once.
BASE_ARGS=(--bridge=none --iptables=false --ip-masq=false --host "unix://$SOCK")

start_dockerd() {
  local driver=$1
  local args=("${BASE_ARGS[@]}")
  [[ -n $driver ]] && args+=(--storage-driver="$driver")
  say "starting dockerd ${args[*]} (log: $LOG)"
  echo "=== $(date -Is) dockerd ${args[*]}" >>"$LOG"
  # setsid: the daemon must outlive this script and the test process that ran it.
  setsid dockerd "${args[@]}" >>"$LOG" 2>&1 </dev/null &
  DOCKERD_PID=$!
  echo "$DOCKERD_PID" >"$PID_FILE"
}

pid=$(running_pid)
if [[ -n $pid ]]; then
  say "dockerd (pid $pid) is already running; waiting for it"
  wait_for_docker "$pid" && done_ok
  fail "dockerd pid $pid is running but docker info still fails after ${WAIT_SECS}s"
fi

if dockerd --help 2>&1 | grep -q -- '--ip6tables'; then
  BASE_ARGS+=(--ip6tables=false)
fi

for driver in "${DRIVERS[@]}"; do
  [[ $driver == default ]] && driver=""
  start_dockerd "$driver"
  if wait_for_docker "$DOCKERD_PID"; then
    say "docker is up (storage driver: $(docker info --format '{{.Driver}}' 2>/dev/null || echo '?'))"
    done_ok
  fi
  say "dockerd with storage driver '${driver:-default}' did not come up"
  kill "$DOCKERD_PID" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
  rm -f /var/run/docker.pid
done

fail "dockerd did not start with any storage driver of: ${DRIVERS[*]}"
