#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# A listing probes a gzip, bzip2 or zstd file from the head of what it
# holds, and leaves the size (a full decode) to the file's own stat: a
# LOOKUP of its sibling, or a listing without attributes, does not wait
# for a 2 GiB .gz to inflate, while the .gz's own stat does. Formats
# known by the head (qcow2) are found from it; a fixed VHD, known only by
# its footer, is listed by its name inside and found by its stat (which
# decodes it whole, and a listing does not); a file damaged past its head
# is listed and its stat reports why.
. "$TESTLIB"
require_fuse
require_qemu
command -v zstd >/dev/null || fail "zstd is missing (apt-get install zstd)"
command -v bzip2 >/dev/null || fail "bzip2 is missing (apt-get install bzip2)"

D=$T/images M=$T/mnt
mkdir -p "$D/vhd" "$D/vhdz" "$M"
# 2 GiB of zeros as 32 gzip members of 64 MiB: seconds to inflate, made
# in a fraction of one.
head -c 64M /dev/zero | gzip -1 >"$T/member.gz"
for i in $(seq 32); do cat "$T/member.gz"; done >"$D/big.img.gz"
head -c 6M /dev/urandom >"$T/seed"
truncate -s 8M "$T/seed"
cp "$T/seed" "$D/plain.img"
qemu-img convert -f raw -O qcow2 "$T/seed" "$T/q.qcow2"
qemu-img snapshot -c s1 "$T/q.qcow2"
qemu-img convert -f raw -O vpc -o subformat=fixed "$T/seed" "$T/v.vhd"
qemu-img convert -f vpc -O raw "$T/v.vhd" "$T/v.raw"
gzip -c "$T/q.qcow2" >"$D/q.qcow2.gz"
bzip2 -c "$T/q.qcow2" >"$D/qb.qcow2.bz2"
zstd -q -c <"$T/q.qcow2" >"$D/qz.qcow2.zst" # from a pipe: no size recorded
# In directories of their own (vhd/ only .gz, whose head is cheap to
# probe): their stat decodes them whole. One of 2 GiB: 32 members of
# zeros, then one with the footer.
qemu-img create -q -f vpc -o subformat=fixed,force_size=on "$T/big.vhd" 2G
[ "$(stat -c %s "$T/big.vhd")" = 2147484160 ] || fail "qemu-img made a fixed VHD of another size"
{
    for i in $(seq 32); do cat "$T/member.gz"; done
    tail -c 512 "$T/big.vhd" | gzip -c
} >"$D/vhd/bigfixed.vhd.gz"
rm "$T/big.vhd"
gzip -c "$T/v.vhd" >"$D/vhd/fixed.vhd.gz"
bzip2 -c "$T/v.vhd" >"$D/vhdz/fixedb.vhd.bz2"
zstd -q -c <"$T/v.vhd" >"$D/vhdz/fixedz.vhd.zst"
# Damaged past its head: the head inflates, the rest does not.
gzip -c "$T/q.qcow2" >"$D/late.qcow2.gz"
sz=$(stat -c %s "$D/late.qcow2.gz")
head -c 65536 /dev/zero | dd of="$D/late.qcow2.gz" bs=1 seek=$((sz / 2)) conv=notrunc status=none
# Not an image: a compressed text file stays hidden.
seq 100000 | gzip -c >"$D/notes.txt.gz"

now_ms() { echo $(($(date +%s%N) / 1000000)); }

mount_vdiskfs "$D" "$M"
t0=$(now_ms)
[ "$(stat -c %s "$M/plain.img")" = 8388608 ] || fail "plain.img has the wrong size"
t1=$(now_ms)
names=$(ls -f "$M" | grep -v '^\.' | sort | tr '\n' ' ')
t2=$(now_ms)
[ "$names" = "big.img late.qcow2 plain.img q.qcow2 qb.qcow2 qz.qcow2 vhd vhdz " ] ||
    fail "the listing is: $names"
[ "$(stat -c %s "$M/big.img")" = 2147483648 ] || fail "big.img has the wrong size"
t3=$(now_ms)
sibling=$((t1 - t0)) listing=$((t2 - t1)) big=$((t3 - t2))
note "stat of a sibling ${sibling} ms, a listing ${listing} ms, the 2 GiB .gz's stat ${big} ms"
[ $((sibling * 4)) -lt "$big" ] ||
    fail "a sibling's stat (${sibling} ms) waited for the .gz (its own stat: ${big} ms)"
[ $((listing * 4)) -lt "$big" ] ||
    fail "a listing without attributes (${listing} ms) waited for the .gz (${big} ms)"
# Inflated to a spill file in /var/tmp (the default) on that stat: its
# 2 GiB of zeros are holes there, and in the mount.
# (Unless /var/tmp is short of the space vdiskfs keeps free there: 1 GiB
# or a twentieth of it, and 64 MiB.)
avail=$(df -P -k /var/tmp | awk 'NR == 2 { print $4 }')
total=$(df -P -k /var/tmp | awk 'NR == 2 { print $2 }')
keep=$((total / 20 > 1048576 ? total / 20 : 1048576))
if [ "$avail" -gt $((keep + 131072)) ]; then
    [ "$(getfattr -n user.vdiskfs.gzip.spilled --only-values "$M/big.img")" = true ] ||
        fail "big.img was not spilled"
    [ "$("$VDTEST" seekmap "$M/big.img")" = "" ] || fail "big.img's zeros are not holes"
else
    note "/var/tmp has ${avail} KiB free, under what vdiskfs keeps free: spill not checked"
fi
# Its first 1 MiB and its end read as zeros.
cmp -n 1048576 "$M/big.img" /dev/zero || fail "big.img does not start with zeros"
dd if="$M/big.img" bs=1M skip=2047 count=1 status=none | cmp -n 1048576 - /dev/zero ||
    fail "big.img's end does not read"

# .snapshots/ opens the images whose format has snapshots (a qcow2 in a
# .gz found by its head too), and no other: not a .vhd.gz.
snaps=$(ls -f "$M/.snapshots" | grep -v '^\.' | sort | tr '\n' ' ')
[ "$snaps" = "q.qcow2 qb.qcow2 qz.qcow2 vhd vhdz " ] || fail ".snapshots/ lists: $snaps"
t0=$(now_ms)
names=$(ls -f "$M/vhd" | grep -v '^\.' | sort | tr '\n' ' ')
snaps=$(ls -f "$M/.snapshots/vhd" | grep -v '^\.' | tr '\n' ' ')
t1=$(now_ms)
[ "$names" = "bigfixed.vhd fixed.vhd " ] || fail "vhd/ lists: $names"
[ -z "$snaps" ] || fail ".snapshots/vhd/ lists: $snaps"
[ -e "$M/.snapshots/vhd/bigfixed.vhd" ] && fail ".snapshots/vhd/bigfixed.vhd is there"
[ "$(getfattr -n user.vdiskfs.format --only-values "$M/vhd/bigfixed.vhd")" = vpc ] ||
    fail "bigfixed.vhd (a fixed VHD in gzip) is not shown as vpc"
t2=$(now_ms)
[ "$(stat -c %s "$M/vhd/bigfixed.vhd")" = 2147483648 ] || fail "bigfixed.vhd has the wrong size"
listing=$((t1 - t0)) big=$((t2 - t1))
note "listings of vhd/ and .snapshots/vhd/ ${listing} ms, its 2 GiB fixed VHD's open ${big} ms"
[ $((listing * 4)) -lt "$big" ] ||
    fail "listing vhd/ or .snapshots/vhd/ (${listing} ms) decoded its 2 GiB .vhd.gz (${big} ms)"
dd if="$M/vhd/bigfixed.vhd" bs=1M skip=2047 count=1 status=none | cmp -n 1048576 - /dev/zero ||
    fail "bigfixed.vhd's end does not read"

qemu-img convert -f qcow2 -O raw "$T/q.qcow2" "$T/q.raw"
for n in q.qcow2 qb.qcow2 qz.qcow2; do
    [ "$(getfattr -n user.vdiskfs.format --only-values "$M/$n")" = qcow2 ] ||
        fail "$n is not shown as a qcow2"
    cmp "$T/q.raw" "$M/$n" || fail "$n differs from qemu-img convert"
done
for n in vhd/fixed.vhd vhdz/fixedb.vhd vhdz/fixedz.vhd; do
    [ "$(getfattr -n user.vdiskfs.format --only-values "$M/$n")" = vpc ] ||
        fail "$n (a fixed VHD: only its footer says so) is not shown as vpc"
    cmp "$T/v.raw" "$M/$n" || fail "$n differs from qemu-img convert"
done
if cat "$M/late.qcow2" >/dev/null 2>&1; then
    fail "late.qcow2 (damaged past its head) reads"
fi
getfattr -n user.vdiskfs.error --only-values "$M/late.qcow2" 2>/dev/null | grep -q gzip ||
    fail "no reason for late.qcow2: $(getfattr -n user.vdiskfs.error --only-values "$M/late.qcow2" 2>&1)"
cmp "$T/seed" "$M/plain.img" || fail "plain.img does not read after the damaged one"
unmount_vdiskfs "$M"

# Without a spill directory, reads inflate from the restart points.
mount_vdiskfs "$D" "$M" -o spill_dir=none
[ "$(getfattr -n user.vdiskfs.gzip.spilled --only-values "$M/q.qcow2")" = false ] ||
    fail "q.qcow2 was spilled with spill_dir=none"
cmp "$T/q.raw" "$M/q.qcow2" || fail "q.qcow2 differs from qemu-img convert without a spill"
unmount_vdiskfs "$M"
exit 0
