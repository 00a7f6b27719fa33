#!/usr/bin/env bash
# Warden's whole test suite, from a fresh clone on a fresh machine:
# installs what the tests need (apt packages, npm and PyPI peers pinned by lock files),
# then format, lint, unit and integration tests against real peers, the fuzz smoke run
# and the forecast evaluation on shared/data. Prints a summary line at the end.
#
# Usage: scripts/test.sh            (CI runs exactly this through .ci/run)
# Env:   FUZZ_SECONDS=N             seconds per fuzz target (default 15)
#        WARDEN_SKIP_FUZZ=1         skip the fuzz smoke (local iterations)
#        WARDEN_SKIP_QUICKSTART=1   skip the fresh-clone quickstart (a release build)
#        WARDEN_SKIP_IMAGE=1        skip the node image build, boot and upload tests
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"
LOG_DIR="${TMPDIR:-/tmp}/warden-ci-$$"
mkdir -p "$LOG_DIR"
export CARGO_TERM_COLOR=never

# Runs one step and returns its exit status (set -e then stops the script on failure).
step() {
  local name="$1"; shift
  local t0=$SECONDS rc=0
  echo "=== $name"
  "$@" || rc=$?
  echo "=== $name: done in $((SECONDS - t0)) s (exit $rc)"
  return "$rc"
}

step "install test dependencies" scripts/install-test-deps.sh
# The Docker tests start a daemon if none answers (scripts/dockerd.sh); stop it at the end,
# whatever happens (it stops only a daemon that script started).
trap 'scripts/dockerd.sh --stop || true' EXIT
export WARDEN_TEST_PYTHON="$ROOT/.venv/bin/python"

step "cargo fmt" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
# The integration tests run target/debug/warden, which `cargo test` does not build.
step "build warden" cargo build -p warden-control -p warden-hcloud-fake --bins

# Unit and integration tests. Integration tests start target/debug/warden and the real
# peers; they are not skipped anywhere.
set +e
step "cargo test" cargo test --workspace --no-fail-fast 2>&1 | tee "$LOG_DIR/test.log"
test_rc=${PIPESTATUS[0]}
set -e

if [ "${WARDEN_SKIP_FUZZ:-0}" != 1 ]; then
  step "fuzz smoke" env FUZZ_SECONDS="${FUZZ_SECONDS:-15}" scripts/fuzz-smoke.sh
fi

if [ -x scripts/forecast-ci.sh ]; then
  step "forecast eval and simulate" scripts/forecast-ci.sh
fi

# The README's "Try it", from a fresh clone, as a newcomer runs it (builds the release binary).
quick_rc=0
if [ "${WARDEN_SKIP_QUICKSTART:-0}" != 1 ]; then
  # The release binary it builds (from nothing, in CI) is kept for the node image.
  step "quickstart (README: Try it)" env WARDEN_QUICKSTART_TARGET="$ROOT/target/quickstart-release" \
    scripts/quickstart-ci.sh || quick_rc=$?
fi

# The node image (node-image/README.md): built, booted in qemu (BIOS and UEFI) with a player
# through the VM, a reboot and bad user data; then the upload against the Hetzner fake.
image_rc=0
if [ "${WARDEN_SKIP_IMAGE:-0}" != 1 ]; then
  qs_bin="$ROOT/target/quickstart-release/release/warden"
  if [ -x "$qs_bin" ]; then export WARDEN_BIN="$qs_bin"; fi
  step "node image (scripts/image-test.sh)" scripts/image-test.sh || image_rc=$?
  step "node image upload (against warden-hcloud-fake)" scripts/image-upload-test.sh || image_rc=$?
fi

passed=$(grep -Eo 'test result: [a-zA-Z]+\. [0-9]+ passed' "$LOG_DIR/test.log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -E 'test result:' "$LOG_DIR/test.log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "tests: $passed passed, $failed failed"
[ "$quick_rc" = 0 ] || echo "quickstart: FAILED (exit $quick_rc)"
[ "$image_rc" = 0 ] || echo "node image: FAILED (exit $image_rc)"
[ "$test_rc" = 0 ] || exit "$test_rc"
[ "$quick_rc" = 0 ] || exit "$quick_rc"
exit "$image_rc"
