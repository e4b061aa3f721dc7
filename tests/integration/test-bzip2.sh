#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# bzip2 container: a raw ext4 disk, a qcow2 and a mostly-zero raw disk
# inside .bz2 files made by bzip2 (levels 1 and 9), lbzip2 and pbzip2
# (several streams) are shown under the name inside and read as the
# originals (qemu-img convert -O raw for the qcow2), whole and at random
# offsets; all-zero blocks are holes; a damaged .bz2 is listed, fails with
# EIO and names the block in user.vdiskfs.error while the rest reads on.
. "$TESTLIB"
require_fuse
require_qemu
for t in bzip2 lbzip2 pbzip2 mkfs.ext4; do
    command -v $t >/dev/null || fail "$t is missing (contrib/install-deps.sh)"
done

D=$T/images M=$T/mnt
mkdir -p "$D" "$M" "$T/files"
# An ext4 disk with some files on it.
head -c 3M /dev/urandom >"$T/files/blob"
seq 1 200000 >"$T/files/numbers"
truncate -s 48M "$T/x.img"
mkfs.ext4 -q -F -d "$T/files" "$T/x.img"
bzip2 -9 -c "$T/x.img" >"$D/x.img.bz2"
# A qcow2 with data here and there.
qemu-img create -q -f qcow2 "$T/q.qcow2" 40M
for w in "0xaa 1M 3M" "0x55 17M 1M" "0x3c 39M 1M"; do
    set -- $w
    qemu-io -f qcow2 -c "write -P $1 $2 $3" "$T/q.qcow2" >/dev/null
done
bzip2 -1 -c "$T/q.qcow2" >"$D/q.qcow2.bz2"
qemu-img convert -f qcow2 -O raw "$T/q.qcow2" "$T/q.raw"
# Mostly zeros (whole zero blocks), by lbzip2; and in streams by pbzip2.
{ head -c 2M /dev/urandom; head -c 100M /dev/zero; seq 1 100000; } >"$T/z.img"
lbzip2 -9 -c "$T/z.img" >"$D/z.img.bz2"
pbzip2 -b3 -c "$T/x.img" >"$D/p.img.bz2"
: | bzip2 -c >"$D/empty.img.bz2"
# Damaged: a byte flipped in the middle; cut short.
cp "$D/x.img.bz2" "$D/bad.img.bz2"
sz=$(stat -c %s "$D/bad.img.bz2")
printf '\377' | dd of="$D/bad.img.bz2" bs=1 seek=$((sz / 2)) conv=notrunc status=none
head -c $((sz / 2)) "$D/x.img.bz2" >"$D/cut.img.bz2"
mount_vdiskfs "$D" "$M"

note "listed under the name inside"
ls "$M" >"$T/ls"
for n in x.img q.qcow2 z.img p.img empty.img bad.img cut.img; do
    grep -qx "$n" "$T/ls" || fail "$n is not listed: $(cat "$T/ls")"
done
[ "$(stat -c %s "$M/empty.img")" = 0 ] || fail "empty.img: size $(stat -c %s "$M/empty.img")"
[ "$(stat -c %s "$M/q.qcow2")" = $((40 << 20)) ] || fail "q.qcow2: size $(stat -c %s "$M/q.qcow2")"
[ "$(getfattr -n user.vdiskfs.format --only-values "$M/q.qcow2")" = qcow2 ] ||
    fail "q.qcow2 is not read as qcow2"
[ "$(getfattr -n user.vdiskfs.container --only-values "$M/x.img")" = bzip2 ] ||
    fail "x.img: user.vdiskfs.container is not bzip2"
"$VDISK" info "$D/p.img.bz2" >"$T/info"
grep -q 'container: bzip2' "$T/info" || fail "vdisk info does not say bzip2: $(cat "$T/info")"
streams=$(sed -n 's/.*bzip2.streams: //p' "$T/info")
[ "${streams:-0}" -gt 1 ] || fail "pbzip2 wrote one stream? $(cat "$T/info")"

note "reads equal the originals"
same_bytes "$T/x.img" "$M/x.img" x.img
same_bytes "$T/x.img" "$M/p.img" p.img
same_bytes "$T/q.raw" "$M/q.qcow2" q.qcow2
same_bytes "$T/z.img" "$M/z.img" z.img

note "random reads, out of order, 4 KiB and 300 KiB"
for o in 11 0 47 5 29 30 17 1 46 23; do
    for bs in 4096 307200; do
        k=$((o * 1048576 / bs + 7))
        dd if="$M/x.img" bs=$bs skip=$k count=1 iflag=direct status=none >"$T/got" 2>/dev/null ||
            dd if="$M/x.img" bs=$bs skip=$k count=1 status=none >"$T/got"
        dd if="$T/x.img" bs=$bs skip=$k count=1 status=none >"$T/want"
        cmp -s "$T/want" "$T/got" || fail "x.img: $bs bytes at block $k: $(cmp "$T/want" "$T/got")"
        dd if="$M/q.qcow2" bs=$bs skip=$((k % (40 * 1048576 / bs))) count=1 status=none >"$T/got"
        dd if="$T/q.raw" bs=$bs skip=$((k % (40 * 1048576 / bs))) count=1 status=none >"$T/want"
        cmp -s "$T/want" "$T/got" || fail "q.qcow2: $bs bytes at block $k differ"
    done
done

note "zero blocks are holes"
seek_map "$M/z.img" >"$T/zmap"
hole=$(awk 'NR > 1 { h = $1 - e; if (h > m) m = h } { e = $1 + $2 } END { print m + 0 }' "$T/zmap")
[ "$hole" -ge $((40 << 20)) ] || fail "z.img: no hole of 40 MiB in its data map: $(cat "$T/zmap")"

note "damaged files: EIO, the block named; the rest unharmed"
for n in bad.img cut.img; do
    r=$("$VDTEST" errno "$M/$n" read)
    [ "$r" = EIO ] || fail "$n: $r, expected EIO"
done
getfattr -n user.vdiskfs.error --only-values "$M/bad.img" 2>/dev/null | grep -q 'bzip2 block [0-9]' ||
    fail "no block named for bad.img: $(getfattr -n user.vdiskfs.error --only-values "$M/bad.img" 2>&1)"
getfattr -n user.vdiskfs.error --only-values "$M/cut.img" 2>/dev/null | grep -q 'cut short' ||
    fail "no reason for cut.img: $(getfattr -n user.vdiskfs.error --only-values "$M/cut.img" 2>&1)"
same_bytes "$T/x.img" "$M/x.img" "x.img after the damaged ones"
same_bytes "$T/q.raw" "$M/q.qcow2" "q.qcow2 after the damaged ones"
unmount_vdiskfs "$M"
echo PASS
