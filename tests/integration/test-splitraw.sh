#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Split raw images through a real mount: sets made by split(1) in every
# naming scheme (NAME.000..., NAME.001..., NAME.aa..., two-digit), shown as
# one raw file under the first segment's name with the later segments
# hidden; holes from sparse segments; writes in place through -o rw
# against a model (no growth); a lone NAME.000 is not an image.
. "$TESTLIB"
require_fuse

D=$T/images M=$T/mnt
mkdir -p "$D/num0" "$D/num1" "$D/alpha" "$D/two" "$D/sparse" "$D/lone" "$M"
# 5 MiB + 1234 bytes with holes at 1-2 MiB and 3.5-4 MiB.
truncate -s $((5 * 1048576 + 1234)) "$T/disk.img"
dd if=/dev/urandom of="$T/disk.img" bs=1M count=1 conv=notrunc status=none
dd if=/dev/urandom of="$T/disk.img" bs=512k count=3 seek=4 conv=notrunc status=none
dd if=/dev/urandom of="$T/disk.img" bs=1M count=1 seek=4 conv=notrunc status=none
dd if=/dev/urandom of="$T/disk.img" bs=1234 count=1 seek=$((5 * 1048576)) oflag=seek_bytes conv=notrunc status=none
split -b 1M -d -a 3 --numeric-suffixes=0 "$T/disk.img" "$D/num0/disk.img."
split -b 1500000 -d -a 3 --numeric-suffixes=1 "$T/disk.img" "$D/num1/disk.img."
split -b 700000 "$T/disk.img" "$D/alpha/disk.img."
split -b 2M -d "$T/disk.img" "$D/two/disk."
split -b 1M -d -a 3 --numeric-suffixes=0 "$T/disk.img" "$D/sparse/disk.img."
for s in "$D"/sparse/disk.img.*; do
    cp --sparse=always "$s" "$s.tmp" && mv "$s.tmp" "$s"
done
head -c 65536 /dev/urandom >"$D/lone/single.000"

mount_vdiskfs "$D" "$M"
note "one file per set, under the first segment's name, later segments hidden"
check_set() { # DIR FIRST
    ls "$M/$1" >"$T/ls"
    [ "$(cat "$T/ls")" = "$2" ] || fail "$1 lists $(tr '\n' ' ' <"$T/ls"), expected only $2"
    same_bytes "$T/disk.img" "$M/$1/$2" "$1/$2"
    getfattr --absolute-names -n user.vdiskfs.format --only-values "$M/$1/$2" | grep -qx split-raw ||
        fail "$1/$2: format xattr"
}
check_set num0 disk.img.000
check_set num1 disk.img.001
check_set alpha disk.img.aa
check_set two disk.00
check_set sparse disk.img.000
[ -z "$(ls "$M/lone")" ] || fail "a lone NAME.000 is listed: $(ls "$M/lone")"

note "holes: the sparse set's map equals the original's"
seek_map "$T/disk.img" >"$T/orig.map"
seek_map "$M/sparse/disk.img.000" >"$T/vmap"
diff "$T/orig.map" "$T/vmap" >"$T/mapdiff" || fail "sparse set map (< original, > vdiskfs): $(cat "$T/mapdiff")"
[ "$(wc -l <"$T/vmap")" -ge 3 ] || fail "no holes in the sparse set: $(cat "$T/vmap")"
# split(1) writes zeros as data: those sets are all data.
[ "$(seek_map "$M/num0/disk.img.000")" = "0 $(stat -c %s "$T/disk.img")" ] || fail "num0 map"
"$VDISK" info "$D/alpha/disk.img.aa" >"$T/info"
grep -q "segments: 8" "$T/info" || fail "vdisk info: $(cat "$T/info")"
[ "$(stat -c %b "$M/num0/disk.img.000")" -ge $(( $(stat -c %s "$T/disk.img") / 512 )) ] ||
    fail "st_blocks does not count every segment: $(stat -c %b "$M/num0/disk.img.000")"
"$VDTEST" parread "$M/num1/disk.img.001" "$T/disk.img" 8 40 || fail "parallel readers"
if dd if=/dev/zero of="$M/num0/disk.img.000" bs=512 count=1 conv=notrunc status=none 2>/dev/null; then
    fail "write through a read-only mount succeeded"
fi
unmount_vdiskfs "$M"

note "rw: writes land in the segments, the set never grows"
. "$(dirname "$TESTLIB")/test-vhd-common.sh"
cp "$T/disk.img" "$T/model"
mount_vdiskfs "$D" "$M" -o rw
random_writes "$M/alpha/disk.img.aa" "$T/model" "$(stat -c %s "$T/model")" 3
same_bytes "$T/model" "$M/alpha/disk.img.aa" "alpha after writes"
if dd if=/dev/zero of="$M/alpha/disk.img.aa" bs=1 count=10 seek=$(stat -c %s "$T/model") \
    conv=notrunc status=none 2>/dev/null; then
    fail "a write past the end of the set succeeded"
fi
unmount_vdiskfs "$M"
cat "$D"/alpha/disk.img.* | cmp - "$T/model" || fail "segments after writes differ from the model"
for s in "$D"/alpha/disk.img.*; do
    case $s in *.ah) want=$(( $(stat -c %s "$T/disk.img") - 7 * 700000 )) ;; *) want=700000 ;; esac
    [ "$(stat -c %s "$s")" = "$want" ] || fail "$s changed size: $(stat -c %s "$s")"
done
echo PASS
