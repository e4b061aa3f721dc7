#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Bochs images through a real mount: growing images made by bximage
# (empty, and converted from a raw disk with data at known places), and an
# undoable redolog over its base (bximage cannot make one: a growing image
# relabelled "Undoable", which is the same layout). Content is compared
# with qemu-img convert -f bochs; the hole map with the sectors bximage
# stored (QEMU 7.2's bochs driver has no block status, so qemu-img map
# calls the whole disk data; bximage stores exactly the non-zero sectors).
. "$TESTLIB"
require_fuse
require_qemu
command -v bximage >/dev/null || fail "bximage is missing (apt-get install bximage)"

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"

# A 10 MiB disk (bximage rounds to 10321920 bytes of CHS geometry) with
# random data in sectors 5-7, at 4000 KiB (200 KiB), at 9 MiB (64 KiB) and
# in the last 4 KiB.
bximage -func=create -hd=10M -imgmode=growing -q "$D/empty.img" >/dev/null 2>&1 ||
    fail "bximage create"
size=$(qemu-img info -f bochs --output=json "$D/empty.img" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
[ "$size" = 10321920 ] || fail "unexpected bximage size $size"
truncate -s "$size" "$T/src.raw"
dd if=/dev/urandom of="$T/src.raw" bs=512 count=3 seek=5 conv=notrunc status=none
dd if=/dev/urandom of="$T/src.raw" bs=1024 count=200 seek=4000 conv=notrunc status=none
dd if=/dev/urandom of="$T/src.raw" bs=1024 count=64 seek=9216 conv=notrunc status=none
dd if=/dev/urandom of="$T/src.raw" bs=512 count=8 seek=$((size / 512 - 8)) conv=notrunc status=none
printf '%s\n' "2560 1536" "4096000 204800" "9437184 65536" "$((size - 4096)) 4096" >"$T/src.map"
bximage -func=convert -imgmode=growing -q "$T/src.raw" "$D/data.img" >/dev/null 2>&1 ||
    fail "bximage convert"
# A second, larger disk (other catalog and extent sizes).
bximage -func=create -hd=128M -imgmode=growing -q "$D/big.img" >/dev/null 2>&1 || fail "bximage 128M"

# Undoable redolog: the converted image relabelled, over a random base.
head -c "$size" /dev/urandom >"$D/base.img"
cp "$D/data.img" "$D/base.img.redolog"
printf 'Undoable\0' | dd of="$D/base.img.redolog" bs=1 seek=48 conv=notrunc status=none
cp "$D/base.img" "$T/undo.model"
while read -r off len; do
    dd if="$T/src.raw" of="$T/undo.model" bs=512 skip=$((off / 512)) seek=$((off / 512)) \
        count=$((len / 512)) conv=notrunc status=none
done <"$T/src.map"

mount_vdiskfs "$D" "$M"

note "content equals qemu-img convert -f bochs, data map equals the stored sectors"
for f in empty data big; do
    qemu-img convert -f bochs -O raw "$D/$f.img" "$T/$f.raw" || fail "qemu-img convert $f"
    want=$(stat -c %s "$T/$f.raw")
    [ "$(stat -c %s "$M/$f.img")" = "$want" ] || fail "$f.img: size $(stat -c %s "$M/$f.img"), qemu $want"
    same_bytes "$T/$f.raw" "$M/$f.img" "$f.img"
done
same_bytes "$T/src.raw" "$M/data.img" "data.img against its source"
seek_map "$M/data.img" >"$T/vmap"
diff "$T/src.map" "$T/vmap" >"$T/mapdiff" || fail "data.img map (< stored, > vdiskfs): $(cat "$T/mapdiff")"
[ -z "$(seek_map "$M/empty.img")" ] || fail "empty.img shows data: $(seek_map "$M/empty.img")"
getfattr --absolute-names -n user.vdiskfs.format --only-values "$M/data.img" | grep -qx bochs ||
    fail "format xattr"
"$VDISK" info "$D/data.img" >"$T/info"
grep -q "bochs_type: growing" "$T/info" || fail "vdisk info: $(cat "$T/info")"
grep -q "extent_size: " "$T/info" || fail "vdisk info: $(cat "$T/info")"
"$VDTEST" parread "$M/data.img" "$T/src.raw" 8 40 || fail "parallel readers"

note "undoable redolog over its base"
same_bytes "$T/undo.model" "$M/base.img.redolog" "base.img.redolog"
getfattr --absolute-names -n user.vdiskfs.backing --only-values "$M/base.img.redolog" |
    grep -q "base.img" || fail "backing xattr of the redolog"
same_bytes "$D/base.img" "$M/base.img" "the base itself"

note "read-only: writes refused"
if dd if=/dev/zero of="$M/data.img" bs=512 count=1 conv=notrunc status=none 2>/dev/null; then
    fail "a write to a bochs image succeeded"
fi
unmount_vdiskfs "$M"

note "rw mount: still read-only"
mount_vdiskfs "$D" "$M" -o rw
[ "$(stat -c %a "$M/data.img" | cut -c1)" != 6 ] || fail "bochs image shown writable: $(stat -c %a "$M/data.img")"
unmount_vdiskfs "$M"
echo PASS
