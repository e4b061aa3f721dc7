#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Install what vdiskfs needs to build and test, on Debian or Ubuntu, where missing.
# --bench: also what the benchmarks compare with (tests/bench).
set -eu
PKGS="gcc clang make autoconf automake libtool pkg-config libfuse3-dev fuse3 libglib2.0-dev
zlib1g-dev libssl-dev libzstd-dev qemu-utils attr util-linux procps e2fsprogs groff-base
xz-utils zstd gzip bzip2 lbzip2 pbzip2 binutils mount fdisk fuse2fs"
PKGS="$PKGS libdeflate-dev libbz2-dev liblzma-dev bximage cloop-utils fio"
# tests/integration/test-netfs.sh: IMAGEDIR on a FUSE view changed underneath.
PKGS="$PKGS bindfs"
# FUSE over io_uring.
PKGS="$PKGS liburing-dev"
# JSON: vdisk's output, LUKS2 metadata.
PKGS="$PKGS libjson-glib-dev"
# EWF: ewf-tools to make and verify evidence files.
PKGS="$PKGS ewf-tools"
# LUKS2 key slots (Argon2), and cryptsetup to make LUKS2 test images.
PKGS="$PKGS libargon2-dev cryptsetup-bin"
# The Debian package (CI builds it and runs lintian).
PKGS="$PKGS debhelper dpkg-dev lintian"
# The benchmarks: qemu-storage-daemon, qcowmount, nbdkit's filters over
# nbdfuse, xmount (ewfmount comes with ewf-tools); xfsprogs for the xfs
# guests of run-guestfs.sh.
if [ "${1:-}" = --bench ]; then
    PKGS="$PKGS qemu-system-common libqcow-utils nbdkit nbdfuse xmount bc xfsprogs"
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -n "$missing" ] || exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
