#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# A table entry that points a guest cluster (grain) at the image's own
# metadata, in images qemu-img made: a write there through a -o rw mount
# is refused and logged, reads go on (VMDK and QED have no refcounts: the
# walk of a read-write open finds it, every write fails with EROFS), and
# afterwards qemu-img check and
# qemu-img convert find the image exactly as before the mount: nothing
# reached the metadata or the data. VMDK and QED here; every kind of
# metadata of every such format is in the unit tests.
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
MiB=1048576

# get_le FILE OFFSET BYTES: an unsigned little-endian value.
get_le() {
    od -An -tu1 -j "$2" -N "$3" "$1" | awk '{ for (i = NF; i >= 1; i--) v = v * 256 + $i } END { print v }'
}

# put_le FILE OFFSET BYTES VALUE: write one.
put_le() {
    local f=$1 off=$2 n=$3 v=$4 esc="" i=0
    while [ $i -lt "$n" ]; do
        esc="$esc$(printf '\\%03o' $(((v >> (8 * i)) & 255)))"
        i=$((i + 1))
    done
    printf "$esc" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
}

# before IMAGE FORMAT: what qemu-img says of it now (check output, content).
before() {
    qemu-img check -f "$2" "$1" >"$T/check.before" 2>&1 || true
    qemu-img convert -f "$2" -O raw "$1" "$T/before.raw"
}

# same_as_before IMAGE FORMAT: qemu-img check reports the same, and the
# content is the same.
same_as_before() {
    qemu-img check -f "$2" "$1" >"$T/check.after" 2>&1 || true
    diff "$T/check.before" "$T/check.after" >"$T/check.diff" ||
        fail "$(basename "$1"): qemu-img check changed its verdict: $(cat "$T/check.diff")"
    qemu-img convert -f "$2" -O raw "$1" "$T/after.raw"
    same_bytes "$T/before.raw" "$T/after.raw" "$(basename "$1") after the refused write"
}

# mount_logged: a -o rw mount whose daemon logs to $T/daemon.log.
mount_logged() {
    "$VDISKFS" -f -o rw "$D" "$M" 2>"$T/daemon.log" &
    DPID=$!
    MOUNTS="$MOUNTS $M"
    i=0
    until mountpoint -q "$M"; do
        [ $i -lt 200 ] || fail "vdiskfs did not mount $M: $(cat "$T/daemon.log")"
        sleep 0.05
        i=$((i + 1))
    done
}

note "vmdk: grain 64 points at the grain directory"
img=$D/a.vmdk
qemu-img create -q -f vmdk "$img" 16M
qemu-io -f vmdk -c "write -P 0x5a 0 64k" -c "write -P 0x6b 1M 64k" "$img" >/dev/null
gd=$(($(get_le "$img" 56 8) * 512))
rgd=$(($(get_le "$img" 48 8) * 512))
for dir in $gd $rgd; do
    gt=$(($(get_le "$img" $dir 4) * 512))
    put_le "$img" $((gt + 64 * 4)) 4 $((gd / 512))
done
before "$img" vmdk
mount_logged
# VMDK has no refcounts: the walk of a read-write open finds the grain on
# the directory and serves the image read-only, saying why (once per
# open: each writer's open of the file opens the image again).
for off in $((4 * MiB)) 0; do
    got=$("$VDTEST" errno "$M/a.vmdk" pwrite $off 4096)
    [ "$got" = EROFS ] || fail "a.vmdk: a write at $off gave $got, not EROFS"
done
dd if="$M/a.vmdk" of=/dev/null bs=64k count=32 status=none || fail "a.vmdk: reads fail"
fusermount3 -u "$M"
wait $DPID || fail "vdiskfs exited with $?: $(cat "$T/daemon.log")"
n=$(grep -c "overlaps the grain directory.*read-only" "$T/daemon.log" || true)
[ "$n" -ge 1 ] || fail "a.vmdk: no log line about the overlap: $(cat "$T/daemon.log")"
note "$(grep -m1 "overlaps the grain directory" "$T/daemon.log")"
same_as_before "$img" vmdk
rm -f "$img"

note "qed: cluster 64 points at the L1 table"
img=$D/b.qed
qemu-img create -q -f qed "$img" 16M
qemu-io -f qed -c "write -P 0x5a 0 64k" -c "write -P 0x6b 1M 64k" "$img" >/dev/null
l1=$(get_le "$img" 40 8)
l2=$(get_le "$img" "$l1" 8)
put_le "$img" $((l2 + 64 * 8)) 8 "$l1"
before "$img" qed
mount_logged
# Neither has QED refcounts: the walk of every read-write open finds the
# cluster on the L1 table and serves the image read-only, saying why; the
# image is not touched (no need-check flag either).
for off in $((4 * MiB)) 0; do
    got=$("$VDTEST" errno "$M/b.qed" pwrite $off 4096)
    [ "$got" = EROFS ] || fail "b.qed: a write at $off gave $got, not EROFS"
done
dd if="$M/b.qed" of=/dev/null bs=64k count=32 status=none || fail "b.qed: reads fail"
fusermount3 -u "$M"
wait $DPID || fail "vdiskfs exited with $?: $(cat "$T/daemon.log")"
grep -q "b.qed: .*read-only" "$T/daemon.log" || fail "b.qed: no log line saying why: $(cat "$T/daemon.log")"
note "$(grep -m1 "b.qed: .*read-only" "$T/daemon.log")"
[ $(($(get_le "$img" 16 8) & 2)) = 0 ] || fail "b.qed: the need-check flag was set"
same_as_before "$img" qed
echo PASS
