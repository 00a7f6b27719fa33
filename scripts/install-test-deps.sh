#!/usr/bin/env bash
# Install everything Warden's integration tests need besides Rust itself:
#   * npm packages of the real-peer test clients/servers (tests/peers, pinned by package-lock.json)
#   * a Python venv at <repo>/.venv with tests/peers/requirements.txt (mcstatus), moto and
#     schemathesis (control/archive/test-requirements.txt, control/api-test-requirements.txt; pinned)
#   * Debian packages redis-server, docker.io, iproute2 -- only if their commands are missing
#
# Idempotent and fast when everything is already in place (each step is skipped when its
# inputs have not changed). Intended for a fresh Debian bookworm-like machine with Node >= 20,
# npm, Python >= 3.10 and Rust; runs as root (uses sudo for apt when not root).
#
# Usage: scripts/install-test-deps.sh [--no-apt] [--force]
#   --no-apt   never touch apt (also: WARDEN_SKIP_APT=1)
#   --force    redo npm ci and pip install even if the stamps say they are current
# Env: PYTHON=python3.x  interpreter used to create the venv (default: python3)
#
# Last line of output: WARDEN_TEST_PYTHON=<abs path of the venv python> (what tests should run status.py with)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$REPO_ROOT/tests/peers"
VENV="$REPO_ROOT/.venv"
PYTHON="${PYTHON:-python3}"
SKIP_APT="${WARDEN_SKIP_APT:-0}"
FORCE=0

for arg in "$@"; do
  case "$arg" in
    --no-apt) SKIP_APT=1 ;;
    --force) FORCE=1 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

log() { printf '[install-test-deps] %s\n' "$*" >&2; }

sha() { sha256sum "$1" | cut -d' ' -f1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else log "need root for: $*"; return 1
  fi
}

# ---------------------------------------------------------------- apt packages
APT_UPDATED=0
apt_install() {
  [ "$#" -gt 0 ] || return 0
  if [ "$SKIP_APT" = 1 ]; then
    log "apt skipped; missing packages: $*"
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    log "apt-get not available; please install manually: $*"
    return 0
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
    APT_UPDATED=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@" >&2
}

missing=()
# cmake builds libz-ng (pulled in by pingora's compression crates).
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
{ command -v ip >/dev/null 2>&1 && command -v ss >/dev/null 2>&1; } || missing+=(iproute2)
# Debian's python3 needs python3-venv for `python3 -m venv` (ensurepip).
if [ ! -x "$VENV/bin/python" ] && ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
else
  log "apt packages: all present (cmake, redis-server, docker, ip/ss)"
fi

# ---------------------------------------------------------------- node peers
command -v node >/dev/null 2>&1 || { log "node not found (need Node >= 20)"; exit 1; }
command -v npm >/dev/null 2>&1 || { log "npm not found"; exit 1; }
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$NODE_MAJOR" -lt 20 ]; then
  log "node $(node --version) is too old (need >= 20)"; exit 1
fi

NPM_STAMP="$PEERS/node_modules/.warden-lock.sha256"
LOCK_SHA="$(sha "$PEERS/package-lock.json")"
if [ "$FORCE" = 0 ] && [ -f "$NPM_STAMP" ] && [ "$(cat "$NPM_STAMP")" = "$LOCK_SHA" ] \
   && (cd "$PEERS" && node -e "require('minecraft-protocol')" >/dev/null 2>&1); then
  log "npm: tests/peers/node_modules up to date"
else
  log "npm ci in tests/peers"
  # minecraft-protocol declares engines.node >= 22 but works on Node 20 for what the peers use
  # (offline auth); keep the engine check advisory.
  (cd "$PEERS" && npm ci --no-audit --no-fund --engine-strict=false --loglevel=error >&2)
  printf '%s\n' "$LOCK_SHA" > "$NPM_STAMP"
fi

# ---------------------------------------------------------------- python venv
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
PIP_STAMP="$VENV/.warden-requirements.sha256"
ARCHIVE_REQ="$REPO_ROOT/control/archive/test-requirements.txt"
API_REQ="$REPO_ROOT/control/api-test-requirements.txt"
REQ_SHA="$(cat "$PEERS/requirements.txt" "$ARCHIVE_REQ" "$API_REQ" 2>/dev/null | sha256sum | cut -d' ' -f1)"
if [ "$FORCE" = 0 ] && [ -f "$PIP_STAMP" ] && [ "$(cat "$PIP_STAMP")" = "$REQ_SHA" ] \
   && "$VENV/bin/python" -c 'import mcstatus, moto, schemathesis' >/dev/null 2>&1; then
  log "pip: .venv up to date"
else
  log "pip install (mcstatus, moto, schemathesis; pinned)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$PEERS/requirements.txt" -r "$ARCHIVE_REQ" -r "$API_REQ"
  printf '%s\n' "$REQ_SHA" > "$PIP_STAMP"
fi

# ---------------------------------------------------------------- summary
log "node $(node --version), minecraft-protocol $(cd "$PEERS" && node -p "require('minecraft-protocol/package.json').version")"
log "python $("$VENV/bin/python" -c 'import sys, importlib.metadata as m; print(sys.version.split()[0], "mcstatus", m.version("mcstatus"))')"
echo "WARDEN_TEST_PYTHON=$VENV/bin/python"
