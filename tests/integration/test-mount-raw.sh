#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Raw images through a real mount: content, holes, sparse copies, parallel
# readers, writes (rw) and their refusal (ro), punch/zero, truncate, xattrs.
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D/sub/deeper" "$M"
# sparse.raw: 64 MiB with data at 1 MiB and 40 MiB; dense.img random.
truncate -s 64M "$D/sparse.raw"
dd if=/dev/urandom of="$D/sparse.raw" bs=64k count=16 seek=16 conv=notrunc status=none
dd if=/dev/urandom of="$D/sparse.raw" bs=1M count=3 seek=40 conv=notrunc status=none
dd if=/dev/urandom of="$D/dense.img" bs=1M count=8 status=none
cp "$D/dense.img" "$D/sub/deeper/copy.iso"
echo "not a disk" >"$D/readme.txt"
truncate -s 1M "$D/unknown.xyz"
cp "$D/sparse.raw" "$T/sparse.orig"
cp "$D/dense.img" "$T/dense.orig"

mount_vdiskfs "$D" "$M"

note "listing mirrors IMAGEDIR, non-images hidden, .snapshots present"
ls -a "$M" >"$T/ls"
for n in dense.img sparse.raw sub .snapshots; do
    grep -qx "$n" "$T/ls" || fail "$n missing from the listing: $(cat "$T/ls")"
done
for n in readme.txt unknown.xyz; do
    ! grep -qx "$n" "$T/ls" || fail "$n (not an image) is listed"
done
[ -f "$M/sub/deeper/copy.iso" ] || fail "image in a subdirectory is not shown"
[ ! -e "$M/readme.txt" ] || fail "lookup of a non-image succeeds"
[ -d "$M/.snapshots" ] || fail ".snapshots is not a directory"

note "attributes come from the image file"
[ "$(stat -c %s "$M/sparse.raw")" = 67108864 ] || fail "size of sparse.raw"
[ "$(stat -c %a "$M/dense.img")" = 444 ] || fail "write bits not cleared on a read-only mount: $(stat -c %a "$M/dense.img")"
[ "$(stat -c %Y "$M/dense.img")" = "$(stat -c %Y "$D/dense.img")" ] || fail "mtime differs"
[ "$(stat -c %b "$M/sparse.raw")" = "$(stat -c %b "$D/sparse.raw")" ] || fail "st_blocks differs from the host file"

note "content and holes equal the host file"
same_bytes "$D/sparse.raw" "$M/sparse.raw" sparse.raw
same_bytes "$D/dense.img" "$M/dense.img" dense.img
same_bytes "$D/sub/deeper/copy.iso" "$M/sub/deeper/copy.iso" copy.iso
seek_map "$D/sparse.raw" >"$T/host.map"
seek_map "$M/sparse.raw" >"$T/mnt.map"
diff "$T/host.map" "$T/mnt.map" || fail "SEEK_DATA/SEEK_HOLE differ from the host file"
[ "$(wc -l <"$T/mnt.map")" -ge 2 ] || fail "sparse.raw shows no holes: $(cat "$T/mnt.map")"
compare_to_qemu "$D/sparse.raw" "$M/sparse.raw"

note "cp --sparse=always gives an identical sparse copy"
cp --sparse=always "$M/sparse.raw" "$T/copy.raw"
same_bytes "$D/sparse.raw" "$T/copy.raw" "sparse copy"
[ "$(stat -c %b "$T/copy.raw")" -le $(( $(stat -c %b "$D/sparse.raw") + 64 )) ] ||
    fail "copy is not sparse: $(stat -c %b "$T/copy.raw") blocks"

note "8 parallel readers"
"$VDTEST" parread "$M/sparse.raw" "$D/sparse.raw" 8 40 || fail "parallel readers got wrong data"
"$VDTEST" parread "$M/dense.img" "$D/dense.img" 8 40 || fail "parallel readers got wrong data"

note "the default mount is read-only"
[ "$("$VDTEST" errno "$M/dense.img" open-rw)" = EROFS ] || fail "open for writing is not EROFS"
if dd if=/dev/zero of="$M/dense.img" bs=512 count=1 conv=notrunc status=none 2>/dev/null; then
    fail "dd wrote to a read-only mount"
fi
[ "$("$VDTEST" errno "$M/dense.img" truncate 1024)" = EROFS ] || fail "truncate is not EROFS"
touch "$M/new.img" 2>/dev/null && fail "created a file in the mount"
getfattr -n user.vdiskfs.format --only-values "$M/dense.img" | grep -qx raw || fail "xattr format"
getfattr -n user.vdiskfs.virtual_size --only-values "$M/sparse.raw" | grep -qx 67108864 ||
    fail "xattr virtual_size"
unmount_vdiskfs "$M"
same_bytes "$T/dense.orig" "$D/dense.img" "dense.img after a read-only mount"

note "rw: dd writes persist after unmount"
mount_vdiskfs "$D" "$M" -o rw
[ "$(stat -c %a "$M/dense.img")" = 644 ] || fail "write bits missing on rw mount"
head -c 5000 /dev/urandom >"$T/patch"
dd if="$T/patch" of="$M/dense.img" bs=1 seek=123457 conv=notrunc status=none
dd if="$T/patch" of="$T/dense.orig" bs=1 seek=123457 conv=notrunc status=none
sync "$M/dense.img"
same_bytes "$T/dense.orig" "$M/dense.img" "dense.img after dd through the mount"

note "rw: punch hole and zero range read back as zeros; punch frees host space"
before=$(stat -c %b "$D/sparse.raw")
[ "$("$VDTEST" errno "$M/sparse.raw" punch $((40 << 20)) $((2 << 20)))" = OK ] || fail "punch hole"
[ "$("$VDTEST" errno "$M/sparse.raw" zero $((1 << 20)) 4096)" = OK ] || fail "zero range"
dd if=/dev/zero of="$T/sparse.orig" bs=1M count=2 seek=40 conv=notrunc status=none
dd if=/dev/zero of="$T/sparse.orig" bs=4096 count=1 seek=256 conv=notrunc status=none
same_bytes "$T/sparse.orig" "$M/sparse.raw" "sparse.raw after punch/zero"
after=$(stat -c %b "$D/sparse.raw")
[ "$after" -lt "$before" ] || fail "punch hole did not free host space ($before -> $after blocks)"

note "rw: truncate grows and shrinks a raw image"
truncate -s 80M "$M/sparse.raw" || fail "grow"
[ "$(stat -c %s "$M/sparse.raw")" = 83886080 ] || fail "size after grow"
truncate -s 32M "$M/sparse.raw" || fail "shrink"
[ "$(stat -c %s "$D/sparse.raw")" = 33554432 ] || fail "host size after shrink"

note "rw: the mount refuses to create or remove names"
[ "$(touch "$M/x.img" 2>&1; echo $?)" != 0 ] || fail "created a file"
rm -f "$M/dense.img" 2>/dev/null && fail "removed an image"
[ -e "$D/dense.img" ] || fail "the image is gone"
unmount_vdiskfs "$M"
same_bytes "$T/dense.orig" "$D/dense.img" "dense.img after unmount"
echo PASS
