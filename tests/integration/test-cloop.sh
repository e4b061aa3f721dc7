#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# cloop images made by create_compressed_fs (cloop-utils) in several block
# sizes and compression levels, through a real mount: bytes and the data
# map equal qemu-img's (cloop has no holes: every block is data).
. "$TESTLIB"
require_fuse
require_qemu
command -v create_compressed_fs >/dev/null ||
    fail "create_compressed_fs is missing (apt-get install cloop-utils)"

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
# 3 MiB: random, zeros, text, random; not a multiple of the block sizes.
{
    head -c 700000 /dev/urandom
    head -c 900000 /dev/zero
    yes "cloop test line for vdiskfs" | head -c 800000
    head -c 654321 /dev/urandom
} >"$T/src.raw"
n=0
for opts in "-B 65536" "-B 16384" "-B 131072 -L 1" "-B 4096 -L 0"; do
    n=$((n + 1))
    # shellcheck disable=SC2086
    create_compressed_fs -q $opts "$T/src.raw" "$D/img$n.cloop" >"$T/ccfs.log" 2>&1 ||
        fail "create_compressed_fs $opts: $(cat "$T/ccfs.log")"
done

mount_vdiskfs "$D" "$M"
note "content and map equal qemu-img's"
for i in $(seq 1 $n); do
    f=img$i.cloop
    qemu-img convert -f cloop -O raw "$D/$f" "$T/expect.raw" || fail "qemu-img convert $f"
    [ "$(stat -c %s "$M/$f")" = "$(stat -c %s "$T/expect.raw")" ] || fail "$f: size"
    same_bytes "$T/expect.raw" "$M/$f" "$f"
    cmp -s -n "$(stat -c %s "$T/src.raw")" "$T/src.raw" "$M/$f" || fail "$f differs from its source"
    qemu_data_map -f cloop "$D/$f" >"$T/qmap"
    seek_map "$M/$f" >"$T/vmap"
    diff "$T/qmap" "$T/vmap" >"$T/mapdiff" ||
        fail "$f: data map differs from qemu-img map (< qemu, > vdiskfs): $(cat "$T/mapdiff")"
done
getfattr --absolute-names -n user.vdiskfs.format --only-values "$M/img1.cloop" | grep -qx cloop ||
    fail "format xattr"
"$VDISK" info "$D/img2.cloop" | grep -q "block_size: 16384" || fail "vdisk info block size"
qemu-img convert -f cloop -O raw "$D/img2.cloop" "$T/img2.raw"
"$VDTEST" parread "$M/img2.cloop" "$T/img2.raw" 8 40 || fail "parallel readers"

note "a corrupt block fails that read only"
unmount_vdiskfs "$M"
cp "$D/img1.cloop" "$T/bad.cloop"
# Block 1's stream starts at the second offset of the table (136 + 8).
off=$(od -An -tu1 -j 144 -N 8 "$T/bad.cloop" | awk '{ v = 0; for (i = 1; i <= NF; i++) v = v * 256 + $i; print v }')
printf '\377\377\377\377' | dd of="$T/bad.cloop" bs=1 seek=$((off + 2)) conv=notrunc status=none
mkdir -p "$T/bad" && mv "$T/bad.cloop" "$T/bad/"
mount_vdiskfs "$T/bad" "$M"
dd if="$M/bad.cloop" of=/dev/null bs=65536 count=1 status=none || fail "block 0 of the corrupt image unreadable"
if dd if="$M/bad.cloop" of=/dev/null bs=65536 skip=1 count=1 status=none 2>/dev/null; then
    fail "the corrupt block was readable"
fi
unmount_vdiskfs "$M"
echo PASS
