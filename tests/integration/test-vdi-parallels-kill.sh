#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# VDI and Parallels: the daemon killed with SIGKILL in the middle of
# writes. The image must pass qemu-img check (a leak is allowed, no
# corruption), and every 4 KiB page must hold either its old content
# (zeros) or the new one: a block becomes visible only once its data is in.
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
MiB=1048576
head -c $((24 * MiB)) /dev/urandom >"$T/new"
zero_sum=$(head -c 4096 /dev/zero | md5sum | cut -d' ' -f1)
mkdir -p "$T/pg.new"
(cd "$T/pg.new" && split -b 4096 -a 5 -d "$T/new" p && md5sum p*) | sort -k2 >"$T/sum.new"
rm -rf "$T/pg.new"

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
    wait "$ddpid" 2>/dev/null || true
    [ "$running" = yes ] || fail "$fmt: the writer had finished before the daemon was killed"
    umount -l "$M" 2>/dev/null || fusermount3 -u -z "$M" 2>/dev/null || true

    rc=0
    qemu-img check -f $fmt "$img" >"$T/check.out" 2>&1 || rc=$?
    # 0: clean; 3: leaked space only (allowed); anything else is corruption.
    [ $rc = 0 ] || [ $rc = 3 ] || fail "$fmt: qemu-img check after SIGKILL (exit $rc): $(cat "$T/check.out")"
    note "$fmt: qemu-img check exit $rc"

    qemu-img convert -O raw "$img" "$T/got"
    rm -rf "$T/pg.got"
    mkdir "$T/pg.got"
    (cd "$T/pg.got" && split -b 4096 -a 5 -d "$T/got" p && md5sum p*) | sort -k2 >"$T/sum.got"
    join -1 2 -2 2 "$T/sum.new" "$T/sum.got" | awk -v z="$zero_sum" -v fmt=$fmt '
        $2 == $3 { n++; next } $3 == z { o++; next }
        { print fmt ": page " $1 " is neither old nor new"; bad++ }
        END { printf "# %s: pages new %d, old %d, torn %d\n", fmt, n, o, bad; exit bad > 0 || n == 0 }' ||
        fail "$fmt: torn pages (or nothing written) after SIGKILL"

    note "$fmt: the image reads back as qemu-img sees it"
    mount_vdiskfs "$D" "$M"
    compare_to_qemu "$img" "$M/kill.$fmt"
    unmount_vdiskfs "$M"
    rm -f "$img"
done
echo PASS
