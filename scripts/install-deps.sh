#!/usr/bin/env bash
# Installs everything Rebound and its test suite need on Debian 12 with Node 20:
# the real NBD clients and file-system tools the tests drive, then the npm
# packages (which also builds the small native addon) and the TypeScript build.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential python3          # node-gyp builds native/fileops.c
  qemu-utils                       # qemu-img, qemu-io
  libnbd-bin                       # nbdinfo, nbdcopy, nbdfuse
  nbdkit                           # the benchmark's peer
  fuse3 e2fsprogs util-linux       # nbdfuse mounts, mkfs/e2fsck, losetup/mount
  fio                              # workloads and benchmarks
  rsync iproute2
  postgresql                       # the configuration server’s tests run on PostgreSQL too
  dosfstools                       # vfat volumes for the retention-volume rules
  fusefat                          # ... mounted through FUSE where the kernel has no vfat
  qemu-system-x86                  # the qemu site's virtual machines (TCG where KVM cannot run)
  busybox-static cpio xz-utils     # the test guest's initramfs (rebound guest build)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: need root to apt-get install: ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 20)); then
  echo "install-deps: Node 20 or newer is required (found $(node -v))" >&2
  exit 1
fi

# `npm ci` refuses lock files that lack optional packages for other platforms (as the
# registry mirror of these machines serves them); `npm install` installs the same
# locked versions and builds the native addon the same way.
npm ci --no-audit --no-fund 2>/dev/null || npm install --no-audit --no-fund
npm run build

# The tiny Linux the qemu site's tests and the drill boot (Debian kernel + busybox initramfs):
# built once into $REBOUND_GUEST_DIR (default /var/cache/rebound/guest), skipped when present.
node dist/src/cli/main.js guest build
