#!/usr/bin/env bash
# Builds the peer proxies `warden-bench peers` compares Warden with, at pinned versions,
# into a cache outside the repository (binaries are never committed):
#
#   Infrarust 1.6.3  (tag v1.6.3)   -> $WARDEN_PEERS_DIR/bin/infrarust
#   lazymc 0.2.11    (commit 2db85b5) -> $WARDEN_PEERS_DIR/bin/lazymc
#
# Neither is on crates.io at these versions (crates.io has only Infrarust 2.0 betas and no
# lazymc), so both are built from their source with `cargo install --locked --path`.
# Sources come from INFRARUST_GIT / LAZYMC_GIT (a URL or a local clone; the public
# repositories by default). lazymc has one git dependency (timvisee/rust-minecraft-protocol);
# cargo fetches it with the git CLI, so on a machine without that host git's own
# `url.<local>.insteadOf` (e.g. via GIT_CONFIG_COUNT/GIT_CONFIG_KEY_n/GIT_CONFIG_VALUE_n)
# points it at a local clone. Builds run niced with one job so they can share a small box.
set -euo pipefail

dir="${WARDEN_PEERS_DIR:-$HOME/.cache/warden-peers}"
infrarust_git="${INFRARUST_GIT:-https://github.com/Shadowner/Infrarust}"
infrarust_rev="${INFRARUST_REV:-v1.6.3}"
lazymc_git="${LAZYMC_GIT:-https://github.com/timvisee/lazymc}"
lazymc_rev="${LAZYMC_REV:-2db85b5}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$dir/target}"
jobs="${PEERS_JOBS:-1}"
export CARGO_NET_GIT_FETCH_WITH_CLI=true

mkdir -p "$dir/src"

# checkout NAME GIT REV: a clean tree of REV in $dir/src/NAME.
checkout() {
	local name="$1" git="$2" rev="$3" src="$dir/src/$1"
	if [ ! -d "$src/.git" ]; then
		git clone --quiet --no-checkout "$git" "$src"
		# Screenshots and documentation sites are not needed to build (and a shallow
		# mirror may lack their blobs).
		git -C "$src" sparse-checkout set 2>/dev/null --no-cone '/*' '!/res/screenshot/' '!/docs/'
	fi
	git -C "$src" fetch --quiet --tags "$git" || true
	git -C "$src" -c advice.detachedHead=false checkout --quiet --force "$rev"
	echo "$name at $(git -C "$src" rev-parse --short HEAD) ($rev)" >&2
}

# build NAME: cargo install from its checkout, skipped when the binary is already there.
build() {
	local name="$1" crate="$2"
	if [ -x "$dir/bin/$name" ] && [ -z "${PEERS_REBUILD:-}" ]; then
		echo "$dir/bin/$name exists (PEERS_REBUILD=1 to rebuild)" >&2
		return
	fi
	nice -n 19 cargo install --locked --force --jobs "$jobs" --root "$dir" \
		--path "$dir/src/$crate"
}

want="${*:-infrarust lazymc}"
for peer in $want; do
	case "$peer" in
	infrarust)
		checkout infrarust "$infrarust_git" "$infrarust_rev"
		build infrarust infrarust/crates/infrarust
		;;
	lazymc)
		checkout lazymc "$lazymc_git" "$lazymc_rev"
		build lazymc lazymc
		;;
	*)
		echo "unknown peer: $peer (infrarust, lazymc)" >&2
		exit 2
		;;
	esac
done
ls -l "$dir/bin"
