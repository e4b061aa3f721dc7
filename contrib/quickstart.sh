#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# One command from a fresh Debian machine to a mounted vdiskfs:
#   contrib/quickstart.sh [IMAGEDIR [MOUNTPOINT]]
# installs the build dependencies, builds, and mounts IMAGEDIR (or a demo
# directory of sample images made with qemu-img) read-only.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
contrib/install-deps.sh
if [ ! -x configure ] || [ configure.ac -nt configure ]; then
    autoreconf -fi >/dev/null
fi
mkdir -p build
(cd build && { [ -f Makefile ] || ../configure -q; } && make -j"$(nproc)" >/dev/null)

imagedir=${1:-}
mnt=${2:-$top/mnt}
if [ -z "$imagedir" ]; then
    imagedir=$top/demo-images
    if [ ! -d "$imagedir" ]; then
        echo "creating demo images in $imagedir"
        mkdir -p "$imagedir"
        # A raw disk with a partition-like pattern and a hole in the middle.
        truncate -s 64M "$imagedir/disk.img"
        printf 'vdiskfs demo: raw image\n' | dd of="$imagedir/disk.img" conv=notrunc status=none
        # The same content in other formats, converted by qemu-img.
        qemu-img convert -O qcow2 "$imagedir/disk.img" "$imagedir/disk.qcow2"
        qemu-img convert -O vmdk "$imagedir/disk.img" "$imagedir/disk.vmdk"
        qemu-img convert -O vpc "$imagedir/disk.img" "$imagedir/disk.vhd"
        qemu-img convert -O vdi "$imagedir/disk.img" "$imagedir/disk.vdi"
        qemu-img convert -O vhdx "$imagedir/disk.img" "$imagedir/disk.vhdx"
        # A qcow2 with an internal snapshot, then changed after it.
        qemu-img create -q -f qcow2 "$imagedir/snap.qcow2" 64M
        qemu-io -c 'write -P 0x11 0 1M' "$imagedir/snap.qcow2" >/dev/null
        qemu-img snapshot -c before "$imagedir/snap.qcow2"
        qemu-io -c 'write -P 0x22 0 1M' "$imagedir/snap.qcow2" >/dev/null
    fi
fi
mkdir -p "$mnt"
if mountpoint -q "$mnt"; then
    echo "$mnt is already a mount point; unmount it first: fusermount3 -u $mnt" >&2
    exit 1
fi
build/vdiskfs "$imagedir" "$mnt"
cat <<EOT

vdiskfs has mounted $imagedir on $mnt (read-only).

  ls -l $mnt                         every image as a raw file
  ls $mnt/.snapshots/                internal snapshots, read-only
  getfattr -d $mnt/<image>           format, virtual size, errors
  cp --sparse=always $mnt/<image> /tmp/disk.raw
  build/vdisk info <image>           the same block layer without FUSE

Unmount with:  fusermount3 -u $mnt
Run the tests: contrib/run-tests.sh
EOT
