#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# VDI through a real mount: dynamic and static images made by qemu-img
# compared with qemu-img convert/map, the VirtualBox image from $TESTDATA,
# a differencing image built here from the VDI layout (QEMU cannot make
# them), parallel readers, random writes checked against a model and by
# qemu-img check and compare, growing. (SIGKILL: test-vdi-parallels-kill.sh.)
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
MiB=1048576

# qio IMAGE CMD...: qemu-io on a VDI image, quietly.
qio() {
    local img=$1
    shift
    for c in "$@"; do
        qemu-io -f vdi -c "$c" "$img" >/dev/null || fail "qemu-io $c $img"
    done
}

# put_le32 FILE OFFSET VALUE: write a little-endian 32-bit value.
put_le32() {
    local v=$3
    printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $((v & 255)) $(((v >> 8) & 255)) \
        $(((v >> 16) & 255)) $(((v >> 24) & 255)))" |
        dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# copy_bytes SRC SRC_OFF DST DST_OFF COUNT
copy_bytes() {
    dd if="$1" bs=1 skip="$2" count="$5" status=none |
        dd of="$3" bs=1 seek="$4" conv=notrunc status=none
}

note "images made by qemu-img: dynamic (empty, written) and static"
qemu-img create -q -f vdi "$D/empty.vdi" 3M
qemu-img create -q -f vdi "$D/dyn.vdi" 9M
qio "$D/dyn.vdi" "write -P 0x11 0 4k" "write -P 0x22 1536k 1M" "write -P 0x33 5M 512" \
    "write -P 0x44 9215k 1k"
qemu-img create -q -f vdi -o static=on "$D/static.vdi" 5M
qio "$D/static.vdi" "write -P 0x55 1M 64k" "write -P 0x66 4095k 2k"
qemu-img create -q -f vdi -o static=on "$D/static-empty.vdi" 2M
# An odd size: the last block is partly outside the disk.
qemu-img create -q -f vdi "$D/odd.vdi" 3000k
qio "$D/odd.vdi" "write -P 0x77 2047k 953k"

HAVE_BASIC=false
if [ -f "$TESTDATA/basic.vdi.gz" ]; then
    gunzip -c "$TESTDATA/basic.vdi.gz" >"$D/basic.vdi"
    HAVE_BASIC=true
else
    note "no \$TESTDATA/basic.vdi.gz: the VirtualBox image is not tested"
fi

note "a differencing image: child of parent.vdi, built from the VDI layout"
# parent: MiB 0..3 data. child: MiB 1 its own, MiB 2 a ZERO block (hides the
# parent), MiB 0 and 3 free (the parent's).
qemu-img create -q -f vdi "$D/parent.vdi" 4M
qio "$D/parent.vdi" "write -P 0xa0 0 1M" "write -P 0xa1 1M 1M" "write -P 0xa2 2M 1M" \
    "write -P 0xa3 3M 1M"
qemu-img create -q -f vdi "$T/child.tmp" 4M
qio "$T/child.tmp" "write -P 0xc1 1M 1M"
put_le32 "$T/child.tmp" $((0x4c)) 4                 # image type: differencing
copy_bytes "$D/parent.vdi" $((0x188)) "$T/child.tmp" $((0x1a8)) 16 # linkage = parent's UUID
copy_bytes "$D/parent.vdi" $((0x198)) "$T/child.tmp" $((0x1b8)) 16 # parent's modification UUID
put_le32 "$T/child.tmp" $((0x200 + 2 * 4)) $((0xfffffffe))          # block 2: zero
mv "$T/child.tmp" "$D/child.vdi"
qemu-img convert -O raw "$D/parent.vdi" "$T/child.expect"
head -c $MiB /dev/zero | tr '\0' '\301' | dd of="$T/child.expect" bs=$MiB seek=1 conv=notrunc status=none
dd if=/dev/zero of="$T/child.expect" bs=$MiB seek=2 count=1 conv=notrunc status=none
cp "$D/parent.vdi" "$T/parent.orig"

mount_vdiskfs "$D" "$M"

note "read-only mount: content and holes equal qemu-img's view"
for n in empty dyn static static-empty odd; do
    [ -f "$M/$n.vdi" ] || fail "$n.vdi is not shown"
    compare_to_qemu "$D/$n.vdi" "$M/$n.vdi"
done
[ "$(seek_map "$M/static.vdi")" = "0 5242880" ] ||
    fail "static image should be all data: $(seek_map "$M/static.vdi")"
[ -z "$(seek_map "$M/empty.vdi")" ] || fail "empty image has data: $(seek_map "$M/empty.vdi")"
getfattr --absolute-names -n user.vdiskfs.format --only-values "$M/dyn.vdi" | grep -qx vdi || fail "xattr format"
qemu-img convert -O raw "$D/dyn.vdi" "$T/dyn.raw"
"$VDTEST" parread "$M/dyn.vdi" "$T/dyn.raw" 8 40 || fail "parallel readers of dyn.vdi got wrong data"
"$VDISK" info "$D/static.vdi" | grep -q "static" || fail "vdisk info does not say static"

if $HAVE_BASIC; then
    note "the VirtualBox image basic.vdi"
    compare_to_qemu "$D/basic.vdi" "$M/basic.vdi"
    [ "$(stat -c %s "$M/basic.vdi")" = $((10 * MiB)) ] || fail "basic.vdi size"
    # First MiB zeros (a hole), then 4 KiB block i filled with byte i % 256.
    [ "$(seek_map "$M/basic.vdi")" = "$MiB $((9 * MiB))" ] ||
        fail "basic.vdi map: $(seek_map "$M/basic.vdi")"
    for blk in 256 257 300 511 1000 2559; do
        want=$(printf '%02x' $((blk % 256)))
        got=$(od -v -An -tx1 -j $((blk * 4096)) -N 4096 "$M/basic.vdi" | tr -s ' \n' '\n' | sort -u | grep .)
        [ "$got" = "$want" ] || fail "basic.vdi 4 KiB block $blk: expected all $want, got $got"
    done
fi

note "the differencing image reads through its parent (found by UUID)"
[ -f "$M/child.vdi" ] || fail "child.vdi is not shown"
same_bytes "$T/child.expect" "$M/child.vdi" child.vdi
[ "$(seek_map "$M/child.vdi" | tr '\n' ' ')" = "0 $((2 * MiB)) $((3 * MiB)) $MiB " ] ||
    fail "child.vdi map: $(seek_map "$M/child.vdi" | tr '\n' ' ')"
getfattr --absolute-names -n user.vdiskfs.backing_chain --only-values "$M/child.vdi" >"$T/bf" || fail "no backing_chain xattr"
grep -q "parent.vdi" "$T/bf" || fail "child.vdi backing chain: $(cat "$T/bf")"
note "child.vdi backing: $(cat "$T/bf")"
unmount_vdiskfs "$M"

note "rw: random writes against a model, then qemu-img check and compare"
qemu-img create -q -f vdi "$D/rand.vdi" 16M
truncate -s 16M "$T/rand.model"
qemu-img convert -O raw "$D/static.vdi" "$T/static.model"
cp "$T/child.expect" "$T/child.model"
mount_vdiskfs "$D" "$M" -o rw
# 60 writes: offsets anywhere (some unaligned, some crossing blocks),
# lengths from 1 byte to 1.5 MiB.
awk 'BEGIN { srand(4242); for (i = 0; i < 60; i++) {
        len = (i % 3 == 0) ? int(rand() * 1572864) + 1 : int(rand() * 70000) + 1;
        off = int(rand() * (16777216 - len));
        if (i % 5 == 0) off -= off % 4096;
        print off, len } }' >"$T/writes"
# Readers run all along: block status and reads race with allocation. (An
# image turns read-write at its first open for writing, which needs no
# other handles: do that first.)
for n in rand child; do
    dd if=/dev/null of="$M/$n.vdi" conv=notrunc status=none || fail "open $n.vdi for writing"
done
touch "$T/readers.run"
for r in 1 2 3; do
    (while [ -e "$T/readers.run" ]; do cat "$M/rand.vdi" "$M/child.vdi" >/dev/null || exit 1; done) &
    eval "reader$r=\$!"
done
i=0
while read -r off len; do
    head -c "$len" /dev/urandom >"$T/chunk"
    dd if="$T/chunk" of="$M/rand.vdi" bs=65536 oflag=seek_bytes seek="$off" conv=notrunc status=none ||
        fail "write $len bytes at $off"
    dd if="$T/chunk" of="$T/rand.model" bs=65536 oflag=seek_bytes seek="$off" conv=notrunc status=none
    # Every fourth write also goes to the static image and the child.
    if [ $((i % 4)) = 0 ] && [ $((off + len)) -le $((4 * MiB)) ]; then
        for n in static child; do
            dd if="$T/chunk" of="$M/$n.vdi" bs=65536 oflag=seek_bytes seek="$off" conv=notrunc status=none ||
                fail "write $len bytes at $off into $n.vdi"
            dd if="$T/chunk" of="$T/$n.model" bs=65536 oflag=seek_bytes seek="$off" conv=notrunc status=none
        done
    fi
    i=$((i + 1))
done <"$T/writes"
rm -f "$T/readers.run"
for r in "$reader1" "$reader2" "$reader3"; do
    wait "$r" || fail "a reader failed while rand.vdi and child.vdi were written"
done
# Zero ranges: a whole block (holes again) and a partial one.
"$VDTEST" errno "$M/rand.vdi" zero $((3 * MiB)) $MiB | grep -qx OK || fail "zero range"
"$VDTEST" errno "$M/rand.vdi" punch $((7 * MiB + 100)) 5000 | grep -qx OK || fail "punch"
dd if=/dev/zero of="$T/rand.model" bs=$MiB seek=3 count=1 conv=notrunc status=none
dd if=/dev/zero of="$T/rand.model" bs=1 seek=$((7 * MiB + 100)) count=5000 conv=notrunc status=none
same_bytes "$T/rand.model" "$M/rand.vdi" "rand.vdi through the rw mount"
same_bytes "$T/static.model" "$M/static.vdi" "static.vdi through the rw mount"
same_bytes "$T/child.model" "$M/child.vdi" "child.vdi through the rw mount"
unmount_vdiskfs "$M"
for n in rand static; do
    qemu-img check -f vdi "$D/$n.vdi" >"$T/check.out" 2>&1 ||
        fail "qemu-img check $n.vdi after writes: $(cat "$T/check.out")"
done
qemu-img compare -f raw -F vdi "$T/rand.model" "$D/rand.vdi" >"$T/cmp.out" 2>&1 ||
    fail "qemu-img compare rand.vdi: $(cat "$T/cmp.out")"
qemu-img compare -f raw -F vdi "$T/static.model" "$D/static.vdi" >"$T/cmp.out" 2>&1 ||
    fail "qemu-img compare static.vdi: $(cat "$T/cmp.out")"
same_bytes "$T/parent.orig" "$D/parent.vdi" "parent.vdi after writes to its child"

note "rw again: the written images still equal qemu-img's view; the child still opens"
mount_vdiskfs "$D" "$M"
compare_to_qemu "$D/rand.vdi" "$M/rand.vdi"
compare_to_qemu "$D/static.vdi" "$M/static.vdi"
same_bytes "$T/child.model" "$M/child.vdi" "child.vdi after remount"
unmount_vdiskfs "$M"

note "rw: growing a dynamic image within its block map's room"
mount_vdiskfs "$D" "$M" -o rw
truncate -s 20M "$M/dyn.vdi" || fail "truncate dyn.vdi to 20M"
[ "$(stat -c %s "$M/dyn.vdi")" = $((20 * MiB)) ] || fail "dyn.vdi size after growing"
printf 'tail' | dd of="$M/dyn.vdi" bs=1 seek=$((20 * MiB - 4)) conv=notrunc status=none
unmount_vdiskfs "$M"
qemu-img check -f vdi "$D/dyn.vdi" >"$T/check.out" 2>&1 || fail "qemu-img check after growing: $(cat "$T/check.out")"
qemu-img info --output=json "$D/dyn.vdi" | grep -q '"virtual-size": 20971520' ||
    fail "qemu-img info after growing: $(qemu-img info "$D/dyn.vdi")"
cp "$T/dyn.raw" "$T/dyn.grown"
truncate -s 20M "$T/dyn.grown"
printf 'tail' | dd of="$T/dyn.grown" bs=1 seek=$((20 * MiB - 4)) conv=notrunc status=none
qemu-img compare -f raw -F vdi "$T/dyn.grown" "$D/dyn.vdi" >"$T/cmp.out" 2>&1 ||
    fail "qemu-img compare after growing: $(cat "$T/cmp.out")"

note "writing the parent makes the child refuse it (modification UUID)"
mount_vdiskfs "$D" "$M" -o rw
printf 'x' | dd of="$M/parent.vdi" bs=1 seek=5 conv=notrunc status=none
unmount_vdiskfs "$M"
mount_vdiskfs "$D" "$M"
if head -c 1 "$M/child.vdi" >/dev/null 2>&1; then
    fail "child.vdi still opens after its parent changed"
fi
getfattr --absolute-names -n user.vdiskfs.error --only-values "$M/child.vdi" 2>/dev/null | grep -q "modified" ||
    fail "child.vdi error does not say why: $(getfattr --absolute-names -n user.vdiskfs.error --only-values "$M/child.vdi" 2>&1)"
unmount_vdiskfs "$M"

echo PASS
