#!/usr/bin/env bash
# Build and run Warden on this machine: the README's run command.
#
# cargo fetches every Rust dependency, but one of them builds C code with tools cargo cannot
# fetch: pingora compresses with zlib-ng, whose build needs cmake (and make and a C
# compiler). This script installs whichever of those is missing with apt-get (sudo when not
# root), builds the release binary and runs it with the given config.
#
# Usage: scripts/run.sh [CONFIG] [-- ARGS for `warden run`]
#   CONFIG defaults to examples/quickstart.toml (the README's "Try it": a sleeping demo server).
# Env:   WARDEN_SKIP_APT=1   never touch apt (fail with the list of what is missing instead)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONFIG=examples/quickstart.toml
if [ "$#" -gt 0 ] && [ "$1" != "--" ]; then CONFIG="$1"; shift; fi
[ "${1:-}" = "--" ] && shift

say() { printf 'run.sh: %s\n' "$*" >&2; }

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
if [ "${#missing[@]}" -gt 0 ]; then
  say "building Warden needs ${missing[*]} (zlib-ng, pulled in by pingora, is built with cmake)"
  if [ "${WARDEN_SKIP_APT:-0}" = 1 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "install them with your package manager, then run this again"
    exit 1
  fi
  as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
  say "installing them with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
    install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
command -v cargo >/dev/null 2>&1 || { say "cargo not found: install Rust from https://rustup.rs"; exit 1; }

say "building warden (release; the first build takes a few minutes)"
cargo build --release -p warden-control --bin warden
say "running: warden run --config $CONFIG $*"
exec "${CARGO_TARGET_DIR:-target}/release/warden" run --config "$CONFIG" "$@"
