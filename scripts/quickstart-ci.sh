#!/usr/bin/env bash
# Proves the README's "Try it" on a fresh machine, step by step as the README says it:
#   1. a fresh `git clone` of this repository (committed HEAD) and the README's one command,
#      `scripts/run.sh`, in a clean environment (`env -i`: HOME, PATH, LANG and the Rust
#      toolchain's variables only). With CI=true (or WARDEN_QUICKSTART_REMOVE_CMAKE=1, as
#      root) cmake is first removed from the machine, so run.sh must install it itself;
#   2. the server list shows the demo server asleep (mcstatus);
#   3. a 1.21.4 player (npm minecraft-protocol) joins: waits in the anteroom, is transferred
#      to the woken demo server, which ends the visit saying it just woke; a 1.20.4 player
#      (no Transfer) and a 1.8.8 player then reach it directly;
#   4. `warden status` (with a viewer token made as the README says) shows it active, and a
#      minute after the last visit, asleep; `warden events` lists the wake.
# Everything it starts ends with it (the run's process group and the demo server).
#
# Usage: scripts/quickstart-ci.sh     (needs tests/peers/node_modules and .venv:
#                                      scripts/install-test-deps.sh)
# Env:   WARDEN_QUICKSTART_TARGET=DIR  keep the release build in DIR between local runs
#                                      (CI leaves it unset: the clone builds from nothing)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/tests/peers"
PY="${WARDEN_TEST_PYTHON:-$ROOT/.venv/bin/python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/warden-quickstart.XXXXXX")"
CLONE="$WORK/warden"
RUN_PID=""

say() { printf 'quickstart: %s\n' "$*" >&2; }
# has TEXT PART: TEXT contains PART (no pipes into grep -q: with pipefail, an early exit of
# grep breaks the pipe of the command feeding it).
has() { case "$1" in *"$2"*) return 0 ;; *) return 1 ;; esac; }
fail() {
  say "FAILED: $*"
  [ -f "$WORK/run.log" ] && { say "last lines of the run:"; tail -n 40 "$WORK/run.log" >&2; }
  exit 1
}
cleanup() {
  if [ -n "$RUN_PID" ]; then
    kill -TERM -- "-$RUN_PID" 2>/dev/null || true
    sleep 1
    kill -KILL -- "-$RUN_PID" 2>/dev/null || true
  fi
  local pidfile="$CLONE/target/quickstart/demo/.warden-server.pid"
  if [ -f "$pidfile" ]; then kill -KILL -- "-$(cat "$pidfile")" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- 1. a fresh machine: no cmake, a fresh clone, a clean environment
if [ "${CI:-}" = true ] || [ "${WARDEN_QUICKSTART_REMOVE_CMAKE:-0}" = 1 ]; then
  if command -v cmake >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    say "removing cmake so that run.sh has to install it, as on a fresh machine"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 remove -y -qq cmake >&2
  fi
fi
if command -v cmake >/dev/null 2>&1; then
  say "note: cmake is installed here; run.sh's install path is not exercised"
fi
git clone -q "$ROOT" "$CLONE"
say "README command in a fresh clone: scripts/run.sh"
keep_env=(HOME="$HOME" PATH="$PATH" LANG=C.UTF-8 USER="${USER:-root}")
[ -n "${CARGO_HOME:-}" ] && keep_env+=(CARGO_HOME="$CARGO_HOME")
[ -n "${RUSTUP_HOME:-}" ] && keep_env+=(RUSTUP_HOME="$RUSTUP_HOME")
TARGET="$CLONE/target"
if [ -n "${WARDEN_QUICKSTART_TARGET:-}" ]; then
  TARGET="$WARDEN_QUICKSTART_TARGET"
  keep_env+=(CARGO_TARGET_DIR="$TARGET")
fi
(cd "$CLONE" && exec setsid env -i "${keep_env[@]}" scripts/run.sh >"$WORK/run.log" 2>&1 </dev/null) &
RUN_PID=$!
WARDEN="$TARGET/release/warden"

ping() { "$PY" "$PEERS/status.py" --addr 127.0.0.1:25565 --host localhost --timeout 3 2>/dev/null; }
json_field() { "$PY" -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d.get('$1'))"; }

# ---- 2. the server list: asleep, answered by Warden
deadline=$((SECONDS + 2400))
until out="$(ping)" && [ "$(printf '%s' "$out" | json_field ok)" = True ]; do
  kill -0 "$RUN_PID" 2>/dev/null || fail "scripts/run.sh exited before Warden answered"
  [ "$SECONDS" -lt "$deadline" ] || fail "Warden did not answer a status ping within 40 min"
  sleep 3
done
say "build and start took ${SECONDS} s; the ping says: $(printf '%s' "$out" | json_field motd)"
has "$(printf '%s' "$out" | json_field motd)" "asleep" || fail "the demo server is not shown asleep: $out"
if grep -q "cmake" "$WORK/run.log"; then say "$(grep -m1 'cmake' "$WORK/run.log")"; fi

# ---- 3. players join: the first one wakes it through the anteroom
player() {
  (cd "$PEERS" && node player.js --port 25565 --server-host localhost --timeout-ms 60000 "$@") || true
}
first="$(player --version 1.21.4 --username Newcomer)"
say "1.21.4: $first"
[ "$(printf '%s' "$first" | json_field transfers)" -ge 1 ] 2>/dev/null \
  || fail "the 1.21.4 player was not transferred from the anteroom: $first"
has "$(printf '%s' "$first" | json_field kick)" "Warden woke me" \
  || fail "the 1.21.4 player did not reach the woken demo server: $first"
for v in 1.20.4 1.8.8; do
  out="$(player --version "$v" --username "Old${v//./}")"
  say "$v: $out"
  has "$(printf '%s' "$out" | json_field kick)" "demo server behind Warden" \
    || fail "the $v player did not reach the demo server: $out"
done

# ---- 4. warden status and events, as the README shows them
cd "$CLONE"
WARDEN_TOKEN="$("$WARDEN" token create --role viewer --config examples/quickstart.toml)"
export WARDEN_TOKEN
status="$("$WARDEN" status)"
say "warden status:"$'\n'"$status"
has "$status" $'\ndemo    active' || fail "warden status does not show demo active"
events="$("$WARDEN" events --server demo)"
say "warden events --server demo:"$'\n'"$events"
has "$events" "starting → active" || fail "warden events does not show the wake"
say "waiting for the demo server to fall asleep (sleep_after = 1m)"
deadline=$((SECONDS + 150))
until has "$("$WARDEN" status)" $'\ndemo    sleeping'; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the demo server did not fall asleep within 150 s"
  sleep 5
done
"$WARDEN" status >&2
has "$(ping | json_field motd)" "asleep" || fail "asleep again, but the ping does not say so"
say "ok: fresh clone → scripts/run.sh → asleep → wake through the anteroom → asleep again"
