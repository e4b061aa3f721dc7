#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# VDI and Parallels: the daemon killed with SIGKILL in the middle of
# writes. The image must pass qemu-img check (a leak is allowed, no
# corruption), and every sector must hold either its old content (zeros)
# or the new one: a block becomes visible only once its data is in.
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
MiB=1048576
head -c $((24 * MiB)) /dev/urandom >"$T/new"

for fmt in vdi parallels; do
    img=$D/kill.$fmt
    note "$fmt: SIGKILL while a writer fills the disk"
    qemu-img create -q -f $fmt "$img" 24M
    mount_vdiskfs "$D" "$M" -o rw
    pid=$(pgrep -f "vdiskfs.* $M\$" | head -n 1)
    [ -n "$pid" ] || fail "cannot find the vdiskfs process"
    dd if="$T/new" of="$M/kill.$fmt" bs=64k oflag=dsync conv=notrunc status=none 2>/dev/null &
    ddpid=$!
    # Kill once a third of the disk is allocated: the writer is mid-way.
    i=0
    while [ "$(stat -c %s "$img")" -lt $((8 * MiB)) ] && [ $i -lt 2000 ]; do
        sleep 0.005
        i=$((i + 1))
    done
    running=no
    kill -0 "$ddpid" 2>/dev/null && running=yes
    kill -9 "$pid"
    wait_gone "$pid"
    wait "$ddpid" 2>/dev/null || true
    [ "$running" = yes ] || fail "$fmt: the writer had finished before the daemon was killed"
    umount -l "$M" 2>/dev/null || fusermount3 -u -z "$M" 2>/dev/null || true

    rc=0
    qemu-img check -f $fmt "$img" >"$T/check.out" 2>&1 || rc=$?
    # 0: clean; 3: leaked space only (allowed); anything else is corruption.
    [ $rc = 0 ] || [ $rc = 3 ] || fail "$fmt: qemu-img check after SIGKILL (exit $rc): $(cat "$T/check.out")"
    note "$fmt: qemu-img check exit $rc"

    qemu-img convert -O raw "$img" "$T/got"
    # Every 512-byte sector is old or new: data offsets in these formats
    # are sector-aligned, so a write killed mid-way may tear a 4 KiB page
    # of the guest, like a power cut on a disk, but never a sector.
    "$VDTEST" torn "$T/new" "$T/got" 512 >"$T/torn.out" ||
        fail "$fmt: torn sectors after SIGKILL: $(cat "$T/torn.out")"
    grep -q "^new [1-9]" "$T/torn.out" || fail "$fmt: nothing written before the kill"
    note "$fmt: $(tail -n 1 "$T/torn.out")"

    note "$fmt: the image reads back as qemu-img sees it"
    mount_vdiskfs "$D" "$M"
    compare_to_qemu "$img" "$M/kill.$fmt"
    unmount_vdiskfs "$M"
    rm -f "$img"
done
echo PASS
