#!/usr/bin/env bash
# Start a local S3-compatible server (moto) for warden-archive's tests, in the foreground.
# Installs control/archive/test-requirements.txt into <repo>/.venv first if moto is missing
# (creating the venv if needed), then execs the server so the caller's PID is the server's.
#
# Usage: scripts/s3-server.sh PORT        (listens on 127.0.0.1:PORT; any access key works)
# Env:   PYTHON=python3.x  interpreter used to create the venv (default: python3)
set -euo pipefail

PORT="${1:?usage: scripts/s3-server.sh PORT}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
REQ="$REPO_ROOT/control/archive/test-requirements.txt"

log() { printf '[s3-server] %s\n' "$*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
STAMP="$VENV/.warden-archive-requirements.sha256"
REQ_SHA="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/moto_server" ] || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$REQ_SHA" ]; then
  log "pip install -r $REQ"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ" >&2
  printf '%s\n' "$REQ_SHA" > "$STAMP"
fi

exec "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT"
