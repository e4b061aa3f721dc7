#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# gzip and zstd containers: a qcow2 (and a raw disk) inside .gz and .zst,
# made by the real tools (multi-frame zstd by concatenating `zstd -c`
# outputs, a single frame, one from a pipe without its size, gzip with
# one member and several), is shown under the name inside and reads as
# qemu-img convert -O raw reads the original, whole and at random
# offsets; damaged ones are listed, fail with EIO and say why in
# user.vdiskfs.error, and the rest of the mount reads on.
. "$TESTLIB"
require_fuse
require_qemu
command -v zstd >/dev/null || fail "zstd is missing (apt-get install zstd)"
command -v gzip >/dev/null || fail "gzip is missing"

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
head -c 12M /dev/urandom >"$T/seed"
truncate -s 64M "$T/seed"
qemu-img convert -f raw -O qcow2 "$T/seed" "$T/disk.qcow2"
for w in "0xaa 16M 4M" "0x55 23M 1M" "0x11 40M 7M" "0x3c 63M 1M"; do
    set -- $w
    qemu-io -f qcow2 -c "write -P $1 $2 $3" "$T/disk.qcow2" >/dev/null
done
qemu-img convert -f qcow2 -O raw "$T/disk.qcow2" "$T/disk.raw"

# zstd: frames of 4 MiB pieces, concatenated; one frame; one from a pipe.
split -b 4M "$T/disk.qcow2" "$T/piece."
for p in "$T"/piece.*; do zstd -q -c "$p"; done >"$D/frames.qcow2.zst"
zstd -q -c "$T/disk.qcow2" >"$D/single.qcow2.zst"
zstd -q -c <"$T/disk.qcow2" >"$D/pipe.qcow2.zst"
zstd -q -c "$T/disk.raw" >"$D/rawzst.img.zst"
# gzip: one member, and one per piece, concatenated.
gzip -c "$T/disk.qcow2" >"$D/one.qcow2.gz"
for p in "$T"/piece.*; do gzip -c "$p"; done >"$D/members.qcow2.gz"
gzip -1 -c "$T/disk.raw" >"$D/rawgz.img.gz"
# A name that is taken: shown with its suffix.
cp "$T/disk.raw" "$D/taken.img"
gzip -c "$T/disk.raw" >"$D/taken.img.gz"
# Damaged: cut short, and a frame of a multi-frame zstd overwritten.
head -c 3M "$D/one.qcow2.gz" >"$D/cutgz.qcow2.gz"
head -c 3M "$D/single.qcow2.zst" >"$D/cutzst.qcow2.zst"
cp "$D/frames.qcow2.zst" "$D/bad.qcow2.zst"
cp "$D/members.qcow2.gz" "$D/badgz.qcow2.gz"
head -c 4096 /dev/zero | dd of="$D/badgz.qcow2.gz" bs=1 seek=2000000 conv=notrunc status=none
sz=$(stat -c %s "$D/bad.qcow2.zst")
head -c 4096 /dev/urandom | dd of="$D/bad.qcow2.zst" bs=1 seek=$((sz - 100000)) conv=notrunc status=none
mount_vdiskfs "$D" "$M"

note "shown under the name inside when it is free, with the suffix when not"
ls "$M" >"$T/ls"
for n in frames.qcow2 single.qcow2 pipe.qcow2 rawzst.img one.qcow2 members.qcow2 rawgz.img \
    taken.img taken.img.gz cutgz.qcow2 cutzst.qcow2 bad.qcow2 badgz.qcow2; do
    grep -qx "$n" "$T/ls" || fail "$n is not listed: $(cat "$T/ls")"
done
for n in frames.qcow2 single.qcow2 pipe.qcow2 one.qcow2 members.qcow2; do
    [ "$(stat -c %s "$M/$n")" = $((64 << 20)) ] || fail "$n: size $(stat -c %s "$M/$n")"
    [ "$(getfattr -n user.vdiskfs.format --only-values "$M/$n")" = qcow2 ] ||
        fail "$n is not read as qcow2"
done
[ "$(getfattr -n user.vdiskfs.container --only-values "$M/frames.qcow2")" = zstd ] ||
    fail "frames.qcow2: user.vdiskfs.container is not zstd"
[ "$(getfattr -n user.vdiskfs.container --only-values "$M/one.qcow2")" = gzip ] ||
    fail "one.qcow2: user.vdiskfs.container is not gzip"
"$VDISK" info "$D/members.qcow2.gz" >"$T/info"
grep -q 'container: gzip' "$T/info" || fail "vdisk info does not say gzip: $(cat "$T/info")"
pieces=$(ls "$T"/piece.* | wc -l)
[ "$pieces" -gt 1 ] || fail "the qcow2 is in one piece: no multi-member gzip to test"
grep -q "gzip.members: $pieces\$" "$T/info" || fail "vdisk info: members: $(cat "$T/info")"
"$VDISK" info "$D/frames.qcow2.zst" >"$T/info"
grep -q 'container: zstd' "$T/info" || fail "vdisk info does not say zstd: $(cat "$T/info")"

note "reads equal qemu-img's"
for n in frames.qcow2 single.qcow2 pipe.qcow2 one.qcow2 members.qcow2 taken.img; do
    cmp "$T/disk.raw" "$M/$n" || fail "$n differs from qemu-img convert -O raw"
done
for n in rawgz.img rawzst.img; do
    cmp "$T/disk.raw" "$M/$n" || fail "$n (a raw disk inside) differs"
done
cmp "$T/disk.raw" "$M/taken.img.gz" || fail "taken.img.gz differs"

note "random reads, out of order, on fresh opens"
for n in frames.qcow2 single.qcow2 one.qcow2 members.qcow2; do
    for o in 60 3 41 0 23 17 63 12 40; do
        dd if="$M/$n" bs=512K skip=$((o * 2 + 1)) count=1 status=none >"$T/got"
        dd if="$T/disk.raw" bs=512K skip=$((o * 2 + 1)) count=1 status=none >"$T/want"
        cmp -s "$T/want" "$T/got" || fail "$n at MiB $o.5: $(cmp "$T/want" "$T/got")"
    done
done
cat "$M/single.qcow2" >/dev/null &
cat "$M/one.qcow2" >/dev/null &
cmp "$T/disk.raw" "$M/members.qcow2" || fail "members.qcow2 with concurrent readers"
wait

note "damaged files: listed, EIO, a reason; the rest unharmed"
for n in cutgz.qcow2 cutzst.qcow2 bad.qcow2 badgz.qcow2; do
    r=$("$VDTEST" errno "$M/$n" read)
    if [ "$r" = OK ]; then
        # Opened (the damage is past the header): reading it all fails.
        cat "$M/$n" >/dev/null 2>&1 && fail "$n reads whole despite the damage"
    else
        [ "$r" = EIO ] || fail "$n: $r, expected EIO"
    fi
done
for n in cutgz.qcow2 cutzst.qcow2; do
    getfattr -n user.vdiskfs.error --only-values "$M/$n" 2>/dev/null | grep -q 'cut short' ||
        fail "no reason for $n: $(getfattr -n user.vdiskfs.error --only-values "$M/$n" 2>&1)"
done
getfattr -n user.vdiskfs.error --only-values "$M/bad.qcow2" 2>/dev/null | grep -q zstd ||
    fail "no reason for bad.qcow2: $(getfattr -n user.vdiskfs.error --only-values "$M/bad.qcow2" 2>&1)"
getfattr -n user.vdiskfs.error --only-values "$M/badgz.qcow2" 2>/dev/null | grep -q gzip ||
    fail "no reason for badgz.qcow2: $(getfattr -n user.vdiskfs.error --only-values "$M/badgz.qcow2" 2>&1)"
cmp "$T/disk.raw" "$M/frames.qcow2" || fail "frames.qcow2 after the damaged ones"
cmp "$T/disk.raw" "$M/one.qcow2" || fail "one.qcow2 after the damaged ones"
unmount_vdiskfs "$M"
echo PASS
