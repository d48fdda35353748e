#!/usr/bin/env bash
# Installs what vfio-conformance needs on a Debian machine (run as root), then the npm packages.
# Used by the README's commands and by CI, so a fresh machine and CI install the same things.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
packages=(
  # guests: QEMU (with SeaBIOS), the initramfs userspace, SSH client keys
  qemu-system-x86 busybox-static dropbear-bin openssh-client
  # kernel builds: tinyconfig + fragments, out of tree, ccache'd
  make gcc libc6-dev flex bison bc libelf-dev libssl-dev cpio ccache dwarves rsync kmod xz-utils
  # the agent (static) and the iommufd selftests
  libcap-dev
  # report checks: JUnit schema validation, the HTML report in a real browser
  libxml2-utils chromium
  # the real-client suite: a Debian rootfs with a QEMU new enough for VFIO migration v2
  debootstrap
  # arm64 guests behind SMMUv3: QEMU, the cross compiler for the kernel, the agent and the selftests
  # (the guest's userspace is Debian's arm64 packages, downloaded and unpacked by the harness)
  qemu-system-arm gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils
  # the QEMU under test, built from Debian's qemu source with our patch series (meson itself comes
  # from the unstable suite, unpacked into the cache: bookworm's is too old)
  dpkg-dev ninja-build pkg-config python3-venv libglib2.0-dev libslirp-dev libpixman-1-dev libfdt-dev zlib1g-dev libattr1-dev
)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
