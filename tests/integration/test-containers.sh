#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Containers below the formats: an image inside an .xz is shown under the
# name inside, reads equal the image's, and any format composes with it
# (a qcow2 in an xz, a qcow2 whose backing file is an xz'd raw disk).
. "$TESTLIB"
require_fuse
require_qemu
command -v xz >/dev/null || fail "xz is missing (xz-utils)"

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
head -c 24M /dev/urandom >"$T/data"
truncate -s 96M "$T/data" # zeros after the data: a single xz block above 64 MiB
qemu-img convert -f raw -O qcow2 "$T/data" "$T/disk.qcow2"
xz -T2 -3 --block-size=4MiB -c "$T/disk.qcow2" >"$D/disk.qcow2.xz" # many blocks
xz -T1 -1 -c "$T/data" >"$D/single.img.xz"                         # one block
cp "$T/data" "$T/base.raw"
xz -T2 --block-size=8MiB -c "$T/base.raw" >"$D/base.raw.xz"
qemu-img create -q -f qcow2 -b base.raw.xz -F raw "$D/top.qcow2" 96M
qemu-io -f qcow2 -c "write -P 0x77 1M 64k" "$D/top.qcow2" >/dev/null 2>&1 ||
    true # qemu-io cannot read the xz backing file; the write needs no COW of it
dd if="$T/data" of="$T/top.expect" bs=1M status=none
"$VDTEST" pattern 119 65536 | dd of="$T/top.expect" bs=64k seek=16 conv=notrunc status=none
# A fixed VHD in one xz block: its footer, at the end, is what says VHD.
qemu-img create -q -f vpc -o subformat=fixed "$T/fixed.vhd" 32M
qemu-io -f vpc -c "write -P 0x5a 0 1M" -c "write -P 0xa5 31M 1M" "$T/fixed.vhd" >/dev/null
qemu-img convert -f vpc -O raw "$T/fixed.vhd" "$T/fixed.expect"
xz -T1 -1 -c "$T/fixed.vhd" >"$D/fixed.vhd.xz"
printf 'not really xz' >"$T/junk"
cp "$D/disk.qcow2.xz" "$D/cut.qcow2.xz"
truncate -s 1M "$D/cut.qcow2.xz" # its index is gone
mount_vdiskfs "$D" "$M"

note "an xz'd image is shown under the name inside, with its virtual size"
ls "$M" >"$T/ls"
for n in disk.qcow2 single.img base.raw top.qcow2; do
    grep -qx "$n" "$T/ls" || fail "$n is not listed: $(cat "$T/ls")"
done
grep -q '\.xz$' "$T/ls" && fail "a .xz name is listed: $(cat "$T/ls")"
[ "$(stat -c %s "$M/disk.qcow2")" = $((96 << 20)) ] || fail "disk.qcow2 (in xz): size"
[ "$(getfattr -n user.vdiskfs.format --only-values "$M/disk.qcow2")" = qcow2 ] ||
    fail "disk.qcow2.xz is not read as qcow2"
[ "$(getfattr -n user.vdiskfs.container --only-values "$M/disk.qcow2")" = xz ] ||
    fail "disk.qcow2: user.vdiskfs.container is not xz"

note "a listing and a first read decode only the start of a single-block xz"
# The end of one big block costs decoding all of it (96 MiB here; a cloud
# image's gigabytes): the probes that looked for a footer there did so
# for every open, four times before the first byte.
# Counted in what the daemon reads of the host: a new file's probes,
# listing, stat and open, and 4 KiB read, against the 24 MiB compressed.
cp "$D/single.img.xz" "$D/again.img.xz"
pid=$(pgrep -f "vdiskfs.* $M\$" | head -n1)
r0=$(awk '/^rchar/ {print $2}' "/proc/$pid/io")
ls -l "$M" >/dev/null
head -c 4096 "$M/again.img" | cmp -s - "$T/data" -n 4096 || fail "again.img: first 4 KiB"
r1=$(awk '/^rchar/ {print $2}' "/proc/$pid/io")
[ $((r1 - r0)) -le $((12 << 20)) ] ||
    fail "a listing and 4 KiB of a single-block xz read $((r1 - r0)) bytes of it"
d=$(getfattr -n user.vdiskfs.xz.bytes_decoded --only-values "$M/again.img")
[ "$d" -le $((4 << 20)) ] || fail "again.img: $d bytes decoded for 4 KiB"
note "a format known by its end is still found there when the name asks (fixed.vhd.xz)"
[ "$(getfattr -n user.vdiskfs.format --only-values "$M/fixed.vhd")" = vpc ] ||
    fail "fixed.vhd.xz is not read as VHD"
[ "$(stat -c %s "$M/fixed.vhd")" = "$(stat -c %s "$T/fixed.expect")" ] ||
    fail "fixed.vhd (in xz): size"
cmp "$T/fixed.expect" "$M/fixed.vhd" || fail "fixed VHD inside xz"

note "reads equal the image: qcow2 in a multi-block xz, raw in a single-block xz"
cmp "$T/data" "$M/disk.qcow2" || fail "qcow2 inside xz"
cmp "$T/data" "$M/single.img" || fail "raw inside a single-block xz"
# Out of order, as several readers ask.
for o in 80 3 60 0 95 40; do
    dd if="$M/single.img" bs=1M skip=$o count=1 status=none >"$T/got"
    dd if="$T/data" bs=1M skip=$o count=1 status=none | cmp -s - "$T/got" ||
        fail "single.img at MiB $o"
done
cat "$M/single.img" >/dev/null &
cat "$M/disk.qcow2" >/dev/null &
cmp "$T/data" "$M/single.img" || fail "single.img with concurrent readers"
wait
note "a qcow2 whose backing file is an xz'd raw disk"
cmp "$T/top.expect" "$M/top.qcow2" || fail "top.qcow2 over base.raw.xz"

note "a damaged xz is listed with a reason, the rest of the mount unharmed"
grep -qx cut.qcow2 "$T/ls" || fail "the damaged xz is not listed"
r=$("$VDTEST" errno "$M/cut.qcow2" read)
[ "$r" = EIO ] || fail "a truncated xz: $r, expected EIO"
getfattr -n user.vdiskfs.error --only-values "$M/cut.qcow2" 2>/dev/null | grep -q xz ||
    fail "no reason given for the damaged xz"
cmp "$T/data" "$M/disk.qcow2" || fail "disk.qcow2 after the damaged one"
unmount_vdiskfs "$M"
echo PASS
