#!/usr/bin/env bash
# Smoke-fuzzes warden-wire: builds every cargo-fuzz target in fuzz/ and runs each one for a
# bounded time from the committed seeds (fuzz/seeds/<target>/). Exits non-zero if a build
# fails or any target finds a crash (panic, failed property, overflow, timeout, OOM).
#
# Works on a stable toolchain: cargo-fuzz's flags are nightly-only, so RUSTC_BOOTSTRAP=1 is
# set for the fuzz builds (and only for them).
#
# Environment:
#   FUZZ_SECONDS     seconds per target (default 20)
#   FUZZ_TARGETS     space-separated subset of targets (default: all, from `cargo fuzz list`)
#   FUZZ_SANITIZER   none (default) | address — warden-wire is safe Rust, so ASan adds build
#                    and run time but little signal; overflow checks are always on (-a)
#   FUZZ_TARGET_DIR  cargo target dir for fuzz builds (default fuzz/target)
#   CARGO_FUZZ_VERSION  version installed when cargo-fuzz is missing (default 0.13.2)
#
# Reproduce a failure it reports with the command printed next to it, e.g.
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -a -s none frames_split fuzz/artifacts/frames_split/crash-…
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ_DIR="$ROOT/fuzz"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-20}"
SANITIZER="${FUZZ_SANITIZER:-none}"
CARGO_FUZZ_VERSION="${CARGO_FUZZ_VERSION:-0.13.2}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$FUZZ_DIR/target}"
export RUSTC_BOOTSTRAP=1
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# cargo-fuzz appends the caller's RUSTFLAGS to its own; a workspace-wide RUSTFLAGS
# (e.g. -D warnings in CI) would leak into every fuzz build, dependencies included.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS

log() { printf '[fuzz-smoke] %s\n' "$*"; }

if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ]; then
    echo "FUZZ_SECONDS must be a positive integer, got '$SECONDS_PER_TARGET'" >&2
    exit 2
fi
if ! command -v c++ >/dev/null && ! command -v g++ >/dev/null && ! command -v clang++ >/dev/null; then
    echo "libfuzzer-sys needs a C++ compiler (g++ or clang++)" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
log "$(cargo fuzz --version), $(rustc --version)"

cd "$ROOT"
FLAGS=(--fuzz-dir "$FUZZ_DIR" -a -s "$SANITIZER")

if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
    mapfile -t TARGETS < <(cargo fuzz list --fuzz-dir "$FUZZ_DIR")
fi
[ "${#TARGETS[@]}" -gt 0 ] || { echo "no fuzz targets found" >&2; exit 2; }

log "building ${#TARGETS[@]} targets (sanitizer: $SANITIZER, target dir: $CARGO_TARGET_DIR)"
build_start=$(date +%s)
cargo fuzz build "${FLAGS[@]}"
log "built in $(($(date +%s) - build_start)) s"

LOG_DIR="$CARGO_TARGET_DIR/fuzz-smoke"
mkdir -p "$LOG_DIR"
failed=0
summary=()

for t in "${TARGETS[@]}"; do
    corpus="$FUZZ_DIR/corpus/$t"
    artifacts="$FUZZ_DIR/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    if [ -d "$FUZZ_DIR/seeds/$t" ]; then
        cp -n "$FUZZ_DIR/seeds/$t"/* "$corpus"/ 2>/dev/null || true
    fi
    before=$(ls -A "$artifacts" | wc -l)
    log "running $t for ${SECONDS_PER_TARGET} s"
    set +e
    cargo fuzz run "${FLAGS[@]}" "$t" "$corpus" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$LOG_DIR/$t.log" 2>&1
    rc=$?
    set -e
    execs=$(grep -a -oE 'stat::number_of_executed_units: [0-9]+' "$LOG_DIR/$t.log" | tail -n1 | grep -oE '[0-9]+$' || true)
    if [ -z "$execs" ]; then
        # A crash skips the final stats; take the last progress line instead.
        execs=$(grep -a -oE '^#[0-9]+' "$LOG_DIR/$t.log" | tail -n1 | tr -d '#' || true)
    fi
    after=$(ls -A "$artifacts" | wc -l)
    if [ "$rc" -eq 0 ] && [ "$after" -eq "$before" ]; then
        result="ok"
    else
        failed=1
        artifact=$(grep -a -oE 'Test unit written to [^ ]+' "$LOG_DIR/$t.log" | tail -n1 | sed 's/Test unit written to //' || true)
        result="FAILED (exit $rc${artifact:+, input $artifact})"
        echo "----- $t (full log: $LOG_DIR/$t.log) -----"
        grep -a -m1 -A4 -E 'panicked at|ERROR: libFuzzer|^error' "$LOG_DIR/$t.log" | cut -c1-400 || true
        grep -a -E '^SUMMARY:' "$LOG_DIR/$t.log" || true
        if [ -n "$artifact" ]; then
            echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run -a -s $SANITIZER $t $artifact"
        fi
        echo "-----"
    fi
    summary+=("$(printf '%-16s %12s execs in %3s s  %s' "$t" "${execs:-?}" "$SECONDS_PER_TARGET" "$result")")
done

echo
log "summary"
printf '  %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    log "FAILED: at least one target found a crash"
    exit 1
fi
log "all targets passed"
