#!/usr/bin/env bash
# Builds the Warden node image: a bootable x86_64 raw disk, hybrid BIOS + UEFI (GPT with a
# BIOS boot partition for GRUB's core image and an EFI system partition with a removable-path
# GRUB), a Debian rootfs from debootstrap, and the warden binary. See node-image/README.md.
#
#   node-image/build.sh [OUT_DIR]        # default target/node-image; writes
#                                        # warden-node.raw and warden-node.manifest
#
# Environment:
#   WARDEN_BIN            the warden binary to ship (default: cargo build --release -p
#                         warden-control into $CARGO_TARGET_DIR, default target/)
#   WARDEN_IMAGE_CACHE    the rootfs cache (default ~/.cache/warden-node-image); the base
#                         rootfs (every package installed) is kept as a tarball keyed by the
#                         package list, the suite and the mirrors, so a warm build skips
#                         debootstrap and apt
#   WARDEN_IMAGE_SUITE    Debian suite (default: the build machine's VERSION_CODENAME)
#   WARDEN_IMAGE_MIRROR   Debian mirror (default: read from the build machine's apt sources)
#
# Needs root (debootstrap, chroot). Installs its own build dependencies with apt-get. No loop
# device, no mount of the image: the root filesystem is made from a directory (mkfs.ext4 -d),
# the ESP with mtools, and the partitions are copied into the disk at their offsets.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
OUT=${1:-${WARDEN_IMAGE_OUT:-$REPO/target/node-image}}
CACHE=${WARDEN_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/warden-node-image}
RECIPE=3 # bump when the base-rootfs steps below change (invalidates the cache)

# Fixed identifiers: the same inputs give the same disk layout.
DISK_GUID=5741524e-0000-4000-8000-000000000001
ESP_GUID=5741524e-0000-4000-8000-000000000002
ROOT_GUID=5741524e-0000-4000-8000-000000000003
BIOS_GUID=5741524e-0000-4000-8000-000000000004
ROOT_UUID=5741524e-0000-4000-8000-0000000000f5
ESP_VOLID=5741524e
ESP_SERIAL=5741-524E
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1735689600} # 2025-01-01, for file times in the image
export SOURCE_DATE_EPOCH

log() { printf '[node-image %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap and chroot need it)"
START=$SECONDS

# --- build dependencies ------------------------------------------------------------------
need=()
for p in debootstrap grub-pc-bin grub-efi-amd64-bin grub-common gdisk dosfstools e2fsprogs mtools binutils; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    log "installing build dependencies: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --- the Debian mirror the build machine's apt uses ---------------------------------------
SUITE=${WARDEN_IMAGE_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}
# Prints the first URI whose suites include $1, from deb822 .sources files, then one-line lists.
apt_uri_for_suite() {
    local suite=$1 f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v s="$suite" 'BEGIN { RS = "" } {
            uri = ""; ok = 0; deb = 0; n = split($0, L, "\n")
            for (i = 1; i <= n; i++) {
                if (L[i] ~ /^Types:/ && L[i] ~ /[ \t]deb([ \t]|$)/) deb = 1
                if (L[i] ~ /^URIs:/) { split(L[i], a, /[ \t]+/); uri = a[2] }
                if (L[i] ~ /^Suites:/) { m = split(L[i], b, /[ \t]+/); for (j = 2; j <= m; j++) if (b[j] == s) ok = 1 }
            }
            if (ok && deb && uri != "") { print uri; exit }
        }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v s="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i + 1) == s) { print $i; exit } }' "$f"
    done
}
MIRROR=${WARDEN_IMAGE_MIRROR:-$(apt_uri_for_suite "$SUITE" | head -1)}
SECURITY=$(apt_uri_for_suite "$SUITE-security" | head -1)
[ -n "$MIRROR" ] || die "no apt source for suite $SUITE on this machine; set WARDEN_IMAGE_MIRROR"
MIRROR=${MIRROR%/}
SECURITY=${SECURITY%/}
log "suite $SUITE, mirror $MIRROR, security ${SECURITY:-none}"

PACKAGES=$(grep -v '^\s*#' "$HERE/packages.list" | awk 'NF { print $1 }' | sort -u | tr '\n' ' ')
KEY=$(printf '%s\n' "recipe=$RECIPE" "suite=$SUITE" "mirror=$MIRROR" "security=$SECURITY" "packages=$PACKAGES" |
    sha256sum | cut -c1-16)
BASE=$CACHE/rootfs-$SUITE-$KEY.tar

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/warden-node-image.XXXXXX")
ROOTFS=$WORK/rootfs
MOUNTS=()
cleanup() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
bind() { mkdir -p "$ROOTFS/$2"; mount "${@:3}" "$1" "$ROOTFS/$2"; MOUNTS+=("$ROOTFS/$2"); }

# --- the warden binary (built early: a failure should not cost a debootstrap) --------------
if [ -n "${WARDEN_BIN:-}" ]; then
    [ -x "$WARDEN_BIN" ] || die "WARDEN_BIN=$WARDEN_BIN is not an executable"
else
    log "building warden (release)"
    (cd "$REPO" && cargo build --release -p warden-control --quiet)
    WARDEN_BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/warden
fi
WARDEN_VERSION=$("$WARDEN_BIN" --version | awk '{ print $NF }')

# --- base rootfs: debootstrap + every package (cached) ------------------------------------
mkdir -p "$CACHE" "$ROOTFS"
if [ -f "$BASE" ]; then
    log "rootfs cache hit: $BASE"
    tar --numeric-owner -xpf "$BASE" -C "$ROOTFS"
else
    log "rootfs cache miss ($BASE): debootstrap + apt (several minutes)"
    debootstrap --variant=minbase --components=main "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    bind proc proc -t proc
    bind sysfs sys -t sysfs
    bind /dev dev --bind
    # No daemon starts in the chroot; no docs, man pages or translations in the image.
    printf '#!/bin/sh\nexit 101\n' >"$ROOTFS/usr/sbin/policy-rc.d"
    chmod 755 "$ROOTFS/usr/sbin/policy-rc.d"
    cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/01-warden-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    {
        printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$MIRROR" "$SUITE" "$SUITE"
        [ -z "$SECURITY" ] ||
            printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                "$SECURITY" "$SUITE"
    } >"$ROOTFS/etc/apt/sources.list.d/debian.sources"
    rm -f "$ROOTFS/etc/apt/sources.list"
    # The kernel's initramfs: generic, so it boots on any virtual or bare-metal disk.
    mkdir -p "$ROOTFS/etc/initramfs-tools/conf.d"
    echo 'COMPRESS=zstd' >"$ROOTFS/etc/initramfs-tools/conf.d/warden.conf"
    chroot "$ROOTFS" apt-get update -qq >"$WORK/apt.log" 2>&1 || { tail -20 "$WORK/apt.log" >&2; die "apt-get update failed"; }
    # shellcheck disable=SC2086 # one word per package
    chroot "$ROOTFS" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confold $PACKAGES zstd >>"$WORK/apt.log" 2>&1 ||
        { tail -30 "$WORK/apt.log" >&2; die "apt-get install failed"; }
    chroot "$ROOTFS" apt-get clean
    rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/usr/share/doc/*/[!c]* "$ROOTFS"/usr/share/man/* \
        "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/var/log/*.log \
        "$ROOTFS"/var/log/apt/* "$ROOTFS"/usr/sbin/policy-rc.d
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[$i]}"; done
    MOUNTS=()
    tar --numeric-owner -cpf "$BASE.tmp" -C "$ROOTFS" . && mv "$BASE.tmp" "$BASE"
    log "rootfs cached: $BASE ($(du -sh "$BASE" | cut -f1))"
fi

# --- the node: warden, units, configuration ----------------------------------------------
log "installing warden $WARDEN_VERSION and the node configuration"
install -m 0755 "$WARDEN_BIN" "$ROOTFS/usr/local/bin/warden"
objcopy --strip-debug "$ROOTFS/usr/local/bin/warden" # keeps symbols for backtraces
cp -r --preserve=mode "$HERE/rootfs/." "$ROOTFS/"
install -m 0644 "$HERE/warden.service" "$ROOTFS/etc/systemd/system/warden.service"
chmod 0755 "$ROOTFS"/usr/local/lib/warden/*
mkdir -p "$ROOTFS/etc/warden" "$ROOTFS/var/lib/warden"
chmod 0750 "$ROOTFS/etc/warden"
chmod 0700 "$ROOTFS/var/lib/warden"
wants=$ROOTFS/etc/systemd/system/multi-user.target.wants
mkdir -p "$wants"
for u in warden-firstboot.service nftables.service systemd-networkd.service; do
    unit=$(find "$ROOTFS/etc/systemd/system" "$ROOTFS/lib/systemd/system" -maxdepth 1 -name "$u" | head -1)
    [ -n "$unit" ] || die "unit $u missing"
    ln -sf "${unit#"$ROOTFS"}" "$wants/$u"
done
# Per-node identity is made on first boot: machine id, SSH host keys, cloud-init state.
: >"$ROOTFS/etc/machine-id"
rm -f "$ROOTFS/var/lib/dbus/machine-id" "$ROOTFS"/etc/ssh/ssh_host_*
rm -rf "$ROOTFS/var/lib/cloud"/*
echo warden-node >"$ROOTFS/etc/hostname"
passwd -R "$ROOTFS" -l root >/dev/null # no root password: SSH keys only
cat >"$ROOTFS/etc/fstab" <<EOF
UUID=$ROOT_UUID / ext4 defaults,discard,errors=remount-ro 0 1
UUID=$ESP_SERIAL /boot/efi vfat umask=0077,nofail 0 2
EOF
mkdir -p "$ROOTFS/boot/efi" "$ROOTFS/boot/grub"
# transparent_hugepage=madvise: Debian's default "always" backs 2 MiB-aligned anonymous
# memory (allocator extents, thread stacks) with huge pages on first touch, which took an
# idle warden from 23 to 55 MiB RSS in this VM; madvise leaves huge pages to software that
# asks for them (as Redis and most databases advise).
KCMD="root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200n8 net.ifnames=0 transparent_hugepage=madvise quiet"
cat >"$ROOTFS/boot/grub/grub.cfg" <<EOF
# Written by node-image/build.sh. /vmlinuz and /initrd.img are Debian's links to the newest
# kernel, so a kernel upgrade needs no change here.
serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=1
menuentry "Warden node" {
    linux /vmlinuz $KCMD
    initrd /initrd.img
}
EOF
find "$ROOTFS" -newermt "@$SOURCE_DATE_EPOCH" -print0 2>/dev/null |
    xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"

# --- manifest inputs: package versions, binary hash ---------------------------------------
mkdir -p "$OUT"
RAW=$OUT/warden-node.raw
MANIFEST=$OUT/warden-node.manifest
{
    echo "# Warden node image manifest (node-image/build.sh)"
    echo "warden-version $WARDEN_VERSION"
    echo "warden-sha256 $(sha256sum <"$WARDEN_BIN" | cut -d' ' -f1)"
    echo "warden-shipped-sha256 $(sha256sum <"$ROOTFS/usr/local/bin/warden" | cut -d' ' -f1)"
    echo "suite $SUITE"
    echo "mirror $MIRROR"
    echo "security ${SECURITY:-none}"
    echo "node-files-sha256 $(cd "$HERE" && find rootfs warden.service packages.list -type f -print0 | sort -z |
        xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
    echo "kernel $(basename "$(readlink -f "$ROOTFS/vmlinuz")")"
    dpkg-query --admindir="$ROOTFS/var/lib/dpkg" -W -f 'package ${Package} ${Version}\n' | sort
} >"$MANIFEST.tmp"

# --- filesystems: root (ext4 from the directory) and ESP (FAT with mtools) -----------------
log "making the filesystems"
root_mib=$(($(du -sm --apparent-size "$ROOTFS" | cut -f1) * 13 / 10 + 256))
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -L warden-root -U "$ROOT_UUID" \
    -E "hash_seed=$ROOT_UUID,root_owner=0:0" -d "$ROOTFS" "$WORK/root.img" "${root_mib}M" >/dev/null
# mkfs.ext4 -d copies each file's ctime (the moment it was unpacked here) and atime (when
# this build read it): set them to SOURCE_DATE_EPOCH, so that the same inputs give the same
# image, byte for byte.
{
    echo "sif / ctime @$SOURCE_DATE_EPOCH"
    echo "sif / atime @$SOURCE_DATE_EPOCH"
    (cd "$ROOTFS" && find . -mindepth 1 -printf '%P\n') |
        sed "s|^\(.*\)\$|sif \"/\1\" ctime @$SOURCE_DATE_EPOCH\nsif \"/\1\" atime @$SOURCE_DATE_EPOCH|"
} >"$WORK/ctime.cmds"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f "$WORK/ctime.cmds" "$WORK/root.img" >/dev/null 2>"$WORK/ctime.err"
if grep -v '^debugfs ' "$WORK/ctime.err" | grep -q .; then
    log "warning: ctime not set on: $(grep -v '^debugfs ' "$WORK/ctime.err" | head -3 | tr '\n' ' ')"
fi
esp_mib=32
GRUBDIR=$WORK/grub
mkdir -p "$GRUBDIR"
cat >"$GRUBDIR/early.cfg" <<EOF
search --no-floppy --fs-uuid --set=root $ROOT_UUID
set prefix=(\$root)/boot/grub
configfile \$prefix/grub.cfg
EOF
mods="part_gpt ext2 search search_fs_uuid configfile normal linux echo test serial terminal"
grub-mkimage -O x86_64-efi -o "$GRUBDIR/BOOTX64.EFI" -c "$GRUBDIR/early.cfg" -p /boot/grub \
    $mods fat efi_gop all_video
grub-mkimage -O i386-pc -o "$GRUBDIR/core.img" -c "$GRUBDIR/early.cfg" -p /boot/grub $mods biosdisk
rm -f "$WORK/esp.img"
mkfs.vfat -C -n WARDEN-EFI -i "$ESP_VOLID" --invariant "$WORK/esp.img" $((esp_mib * 1024)) >/dev/null
MTOOLS_SKIP_CHECK=1 mmd -i "$WORK/esp.img" ::/EFI ::/EFI/BOOT
touch -d "@$SOURCE_DATE_EPOCH" "$GRUBDIR/BOOTX64.EFI"
MTOOLS_SKIP_CHECK=1 mcopy -m -i "$WORK/esp.img" "$GRUBDIR/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI

# --- the disk: GPT with BIOS boot (1 MiB), ESP, root ------------------------------------
log "assembling the disk"
bios_start=2048
esp_start=4096
root_start=$((esp_start + esp_mib * 2048))
disk_sectors=$((root_start + root_mib * 2048 + 2048))
rm -f "$RAW.tmp"
truncate -s $((disk_sectors * 512)) "$RAW.tmp"
# (not -q: with it this sgdisk writes nothing)
sgdisk -o -U "$DISK_GUID" \
    -n "1:$bios_start:$((esp_start - 1))" -t 1:ef02 -c 1:bios -u "1:$BIOS_GUID" \
    -n "2:$esp_start:$((root_start - 1))" -t 2:ef00 -c 2:esp -u "2:$ESP_GUID" \
    -n "3:$root_start:$((root_start + root_mib * 2048 - 1))" -t 3:8304 -c 3:root -u "3:$ROOT_GUID" \
    "$RAW.tmp" >/dev/null
sgdisk -v "$RAW.tmp" | grep -q 'No problems found' || die "the partition table is broken"
dd if="$WORK/esp.img" of="$RAW.tmp" bs=1M seek=$((esp_start / 2048)) conv=notrunc status=none
dd if="$WORK/root.img" of="$RAW.tmp" bs=1M seek=$((root_start / 2048)) conv=notrunc,sparse status=none
# BIOS boot, as grub-bios-setup does it for a GPT disk with a BIOS boot partition:
# boot.img in the MBR's code area (the partition table stays), pointing at core.img's first
# sector; core.img in the BIOS boot partition, its first sector's blocklist naming the rest.
core_sectors=$((($(stat -c %s "$GRUBDIR/core.img") + 511) / 512))
[ $core_sectors -le $((esp_start - bios_start)) ] || die "core.img does not fit the BIOS boot partition"
le() { # le VALUE BYTES: little-endian bytes as printf escapes
    local v=$1 n=$2 s=""
    for ((k = 0; k < n; k++)); do s+=$(printf '\\x%02x' $(((v >> (8 * k)) & 255))); done
    printf '%s' "$s"
}
cp "$GRUBDIR/core.img" "$GRUBDIR/core.patched"
# shellcheck disable=SC2059 # the format is the escaped bytes
printf "$(le $((bios_start + 1)) 8)$(le $((core_sectors - 1)) 2)" |
    dd of="$GRUBDIR/core.patched" bs=1 seek=$((0x1f4)) conv=notrunc status=none
dd if="$GRUBDIR/core.patched" of="$RAW.tmp" bs=512 seek=$bios_start conv=notrunc status=none
dd if=/usr/lib/grub/i386-pc/boot.img of="$RAW.tmp" bs=1 count=$((0x1b8)) conv=notrunc status=none
# shellcheck disable=SC2059
printf "$(le $bios_start 8)" | dd of="$RAW.tmp" bs=1 seek=$((0x5c)) conv=notrunc status=none
printf '\x90\x90' | dd of="$RAW.tmp" bs=1 seek=$((0x66)) conv=notrunc status=none # hard disk: no drive check
mv "$RAW.tmp" "$RAW"

{
    cat "$MANIFEST.tmp"
    echo "image-bytes $(stat -c %s "$RAW")"
    echo "image-sha256 $(sha256sum <"$RAW" | cut -d' ' -f1)"
} >"$MANIFEST"
rm -f "$MANIFEST.tmp"
log "done in $((SECONDS - START)) s: $RAW ($(du -h --apparent-size "$RAW" | cut -f1), $(du -h "$RAW" | cut -f1) allocated), manifest $MANIFEST"
