#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# VHD (vpc) through a real mount: every qemu-img create option (dynamic,
# fixed, force_size), the Hyper-V image from $TESTDATA, differencing disks
# (made by the unit test's generator: QEMU cannot create them), a missing
# parent, and random writes through -o rw checked against a model and
# qemu-img compare (QEMU has no checker for vpc).
. "$TESTLIB"
require_fuse
require_qemu
. "$(dirname "$TESTLIB")/test-vhd-common.sh"

D=$T/images M=$T/mnt G=$T/gen
mkdir -p "$D" "$M" "$G"
UNIT=$(dirname "$VDISK")/tests/unit

# compare_vpc IMAGE MOUNTED: bytes, size and data map equal qemu-img's.
# Always with -f vpc: QEMU's probe only knows the footer copy at offset 0,
# so it takes fixed images for raw.
compare_vpc() {
    local img=$1 got=$2 name
    name=$(basename "$img")
    qemu-img convert -f vpc -O raw "$img" "$T/expect.raw" || fail "qemu-img convert $img"
    want=$(qemu-img info -f vpc --output=json "$img" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
    [ "$(stat -c %s "$got")" = "$want" ] || fail "$name: size $(stat -c %s "$got"), qemu-img says $want"
    same_bytes "$T/expect.raw" "$got" "$name"
    qemu_data_map -f vpc "$img" >"$T/qmap"
    seek_map "$got" >"$T/vmap"
    diff "$T/qmap" "$T/vmap" >"$T/mapdiff" ||
        fail "$name: data map differs from qemu-img map (< qemu, > vdiskfs): $(cat "$T/mapdiff")"
}

# fill IMAGE END: qemu-io writes at the start, in the middle and at the end.
fill() {
    qemu-io -f vpc -c "write -P 0xa1 0 64k" -c "write -P 0xb2 3M 1100k" \
        -c "write -P 0xc3 $(($2 - 4096)) 4k" "$1" >/dev/null || fail "qemu-io $1"
}

note "images in every create option"
qemu-img create -q -f vpc "$D/dynamic.vhd" 20M
qemu-img create -q -f vpc -o force_size=on "$D/dynamic-force.vhd" 20M
qemu-img create -q -f vpc "$D/dynamic-odd.vhd" 7654321
qemu-img create -q -f vpc -o subformat=fixed "$D/fixed.vhd" 12M
qemu-img create -q -f vpc -o subformat=fixed,force_size=on "$D/fixed-force.vhd" 12M
qemu-img create -q -f vpc -o subformat=fixed,preallocation=full "$D/fixed-full.vhd" 6M
qemu-img create -q -f vpc -o subformat=fixed,preallocation=falloc "$D/fixed-falloc.vhd" 6M
qemu-img create -q -f vpc "$D/empty.vhd" 64M
for f in dynamic dynamic-force dynamic-odd fixed fixed-force fixed-full fixed-falloc; do
    size=$(qemu-img info -f vpc --output=json "$D/$f.vhd" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
    fill "$D/$f.vhd" "$size"
done
if [ -d "${TESTDATA:-}" ] && [ -f "$TESTDATA/hyperv-dynamic.vhd.gz" ]; then
    gunzip -c "$TESTDATA/hyperv-dynamic.vhd.gz" >"$D/hyperv-dynamic.vhd"
else
    note "no \$TESTDATA: skipping the Hyper-V image"
fi
"$UNIT/test-vhd" gen "$G" || fail "generator"
mkdir -p "$D/diff" "$D/orphan"
cp "$G/parent.vhd" "$G/child.vhd" "$D/diff/"
cp "$G/child.vhd" "$D/orphan/child.vhd"

mount_vdiskfs "$D" "$M"

note "contents, sizes and maps equal qemu-img's"
for f in dynamic dynamic-force dynamic-odd fixed fixed-force fixed-full fixed-falloc empty; do
    compare_vpc "$D/$f.vhd" "$M/$f.vhd"
done
[ "$(stat -c %s "$M/dynamic.vhd")" != "$(stat -c %s "$M/dynamic-force.vhd")" ] ||
    fail "force_size made no difference to the size"
[ -z "$(seek_map "$M/empty.vhd")" ] || fail "empty.vhd shows data: $(seek_map "$M/empty.vhd")"
getfattr --absolute-names -n user.vdiskfs.format --only-values "$M/fixed.vhd" | grep -qx vpc || fail "fixed.vhd not vpc"
getfattr --absolute-names -n user.vdiskfs.cluster_size --only-values "$M/dynamic.vhd" | grep -qx 2097152 ||
    fail "cluster_size xattr"
"$VDISK" info "$D/dynamic-force.vhd" >"$T/info"
grep -q "disk_type: dynamic" "$T/info" || fail "vdisk info: $(cat "$T/info")"
grep -q "creator: qem2" "$T/info" || fail "vdisk info creator: $(cat "$T/info")"

if [ -f "$D/hyperv-dynamic.vhd" ]; then
    note "Hyper-V dynamic VHD"
    compare_vpc "$D/hyperv-dynamic.vhd" "$M/hyperv-dynamic.vhd"
    [ "$(stat -c %s "$M/hyperv-dynamic.vhd")" = 10485760 ] || fail "Hyper-V VHD size"
    [ "$(od -An -tx1 -j510 -N2 "$M/hyperv-dynamic.vhd" | tr -d ' ')" = 55aa ] || fail "no MBR signature"
    [ "$(od -An -tx1 -v -j$((0x200000)) -N512 "$M/hyperv-dynamic.vhd" | tr -d ' \n' | tr -d f)" = "" ] ||
        fail "512 bytes of 0xff expected at 0x200000"
    cmp -s -n $((10485760 - 0x3fff * 512)) -i $((0x3fff * 512)):0 "$M/hyperv-dynamic.vhd" /dev/zero ||
        fail "sectors from 0x3fff on are not zero"
    "$VDISK" info "$D/hyperv-dynamic.vhd" | grep -q "creator: win " || fail "Hyper-V creator"
fi

note "differencing disk: sectors not in the child come from the parent"
same_bytes "$G/child.expect" "$M/diff/child.vhd" "diff/child.vhd"
getfattr --absolute-names -n user.vdiskfs.backing --only-values "$M/diff/child.vhd" | grep -q parent.vhd ||
    fail "backing xattr of the child"
seek_map "$M/diff/child.vhd" >"$T/vmap"
[ -s "$T/vmap" ] || fail "child shows no data"

"$VDTEST" parread "$M/diff/child.vhd" "$G/child.expect" 8 40 || fail "parallel readers (child)"
qemu-img convert -f vpc -O raw "$D/dynamic.vhd" "$T/dynamic.raw"
"$VDTEST" parread "$M/dynamic.vhd" "$T/dynamic.raw" 8 40 || fail "parallel readers got wrong data"

note "differencing disk without its parent: listed, refused with a reason"
[ -f "$M/orphan/child.vhd" ] || fail "orphan child not listed"
if cat "$M/orphan/child.vhd" >/dev/null 2>&1; then
    fail "a child without its parent was readable"
fi
getfattr --absolute-names -n user.vdiskfs.error --only-values "$M/orphan/child.vhd" >"$T/err" 2>&1 || true
grep -q "parent.vhd" "$T/err" || fail "error does not name the missing parent: $(cat "$T/err")"
unmount_vdiskfs "$M"

note "rw: random writes against a model"
RW="dynamic fixed dynamic-odd empty"
[ -f "$D/hyperv-dynamic.vhd" ] && RW="$RW hyperv-dynamic"
for f in $RW; do
    qemu-img convert -f vpc -O raw "$D/$f.vhd" "$T/$f.model"
done
cp "$G/child.expect" "$T/child.model"
cp "$D/diff/parent.vhd" "$T/parent.before"
mount_vdiskfs "$D" "$M" -o rw
seed=1
for f in $RW; do
    random_writes "$M/$f.vhd" "$T/$f.model" "$(stat -c %s "$T/$f.model")" $seed
    seed=$((seed + 1))
    same_bytes "$T/$f.model" "$M/$f.vhd" "$f.vhd after writes"
done
random_writes "$M/diff/child.vhd" "$T/child.model" "$(stat -c %s "$T/child.model")" 9
same_bytes "$T/child.model" "$M/diff/child.vhd" "diff/child.vhd after writes"
unmount_vdiskfs "$M"

for f in $RW; do
    qemu-img compare -q -f vpc -F raw "$D/$f.vhd" "$T/$f.model" ||
        fail "$f.vhd: qemu-img compare with the model: $(qemu-img compare -f vpc -F raw "$D/$f.vhd" "$T/$f.model" 2>&1)"
done
same_bytes "$T/parent.before" "$D/diff/parent.vhd" "the parent after writes to the child"
mount_vdiskfs "$D" "$M"
same_bytes "$T/child.model" "$M/diff/child.vhd" "diff/child.vhd remounted"
compare_vpc "$D/dynamic.vhd" "$M/dynamic.vhd"
unmount_vdiskfs "$M"
echo PASS
