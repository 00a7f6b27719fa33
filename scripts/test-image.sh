#!/usr/bin/env bash
# Builds the local image `warden-test-node:1` for the Docker runtime's integration tests, with no
# registry and no network.
#
# The image is an almost empty root: the merged-/usr symlinks (bin, lib, lib64, sbin → usr/…) and
# empty mount points. Containers borrow the host's /usr read-only (`-v /usr:/usr:ro`), so the
# host's own `node` runs inside, and mount the repo's tests/peers read-only at /peers:
#
#   docker run --network host -v /usr:/usr:ro -v <repo>/tests/peers:/peers:ro warden-test-node:1 \
#     node /peers/backend.js --version 1.20.4 --port P
#
# Idempotent: does nothing if the image exists (WARDEN_TEST_IMAGE_REBUILD=1 forces a rebuild).
# Last stdout line: WARDEN_TEST_IMAGE=warden-test-node:1
set -euo pipefail

IMAGE=warden-test-node:1
say() { echo "test-image.sh: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

docker info >/dev/null 2>&1 || fail "docker is not answering; run scripts/dockerd.sh first"

if [[ ${WARDEN_TEST_IMAGE_REBUILD:-0} != 1 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "WARDEN_TEST_IMAGE=$IMAGE"
  exit 0
fi

# Borrowing /usr only works on a merged-/usr host, where /bin etc. are links into /usr.
for d in bin lib sbin; do
  [[ -L /$d ]] || fail "/$d is not a symlink: this host does not have a merged /usr"
done
command -v node >/dev/null 2>&1 || fail "node is not installed on the host"
case "$(command -v node)" in
  /usr/*) ;;
  *) fail "node is at $(command -v node), outside /usr, so the container cannot see it" ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/usr "$root"/etc "$root"/tmp "$root"/data "$root"/proc "$root"/sys "$root"/dev "$root"/peers
chmod 1777 "$root"/tmp
ln -s usr/bin "$root"/bin
ln -s usr/lib "$root"/lib
ln -s usr/lib64 "$root"/lib64
ln -s usr/sbin "$root"/sbin
# Node resolves "localhost" and the current user through these; tiny static copies are enough.
printf '127.0.0.1 localhost\n::1 localhost\n' >"$root"/etc/hosts
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$root"/etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root"/etc/group

tar -C "$root" --numeric-owner --owner=0 --group=0 -cf "$work"/root.tar .
docker import \
  --change 'WORKDIR /data' \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change 'LABEL warden.test=true' \
  "$work"/root.tar "$IMAGE" >/dev/null || fail "docker import failed"
say "built $IMAGE"
echo "WARDEN_TEST_IMAGE=$IMAGE"
