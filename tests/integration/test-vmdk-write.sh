#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# VMDK writes through a -o rw mount: random writes and zeroing against a
# model file for every writable subformat (monolithicSparse,
# twoGbMaxExtentSparse across its 2 GiB extent boundary, monolithicFlat,
# twoGbMaxExtentFlat, zeroed grains, grain tables allocated by vdiskfs, a
# child over a parent), then
# `qemu-img check` and `qemu-img compare`; streamOptimized refuses writes;
# writing a parent changes its CID so that its child is refused; a
# daemon killed (SIGKILL) in the middle of writes leaves a clean image
# holding everything that was fsync'ed.
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D" "$M" "$T/model"

# random_writes FILE MODEL SIZE SEED COUNT: COUNT writes of up to 300000
# random bytes at random unaligned offsets, to FILE and MODEL alike.
random_writes() {
    awk -v seed="$4" -v n="$5" -v sectors="$(($3 / 512))" 'BEGIN {
        srand(seed);
        for (i = 0; i < n; i++) {
            len = 1 + int(rand() * 300000);
            s = int(rand() * (sectors - 600));
            printf "%d %d %d\n", s, int(rand() * 512), len;
        }
    }' >"$T/ops"
    while read -r s so len; do
        write_both "$1" "$2" $((s * 512 + so)) "$len"
    done <"$T/ops"
}

# write_both FILE MODEL OFFSET LENGTH: the same random bytes to both.
write_both() {
    head -c "$4" /dev/urandom >"$T/patch"
    dd if="$T/patch" of="$1" bs=1M oflag=seek_bytes seek="$3" conv=notrunc status=none ||
        fail "write of $4 bytes at $3 to $1"
    dd if="$T/patch" of="$2" bs=1M oflag=seek_bytes seek="$3" conv=notrunc status=none
}

# zero_both FILE MODEL OP OFFSET LENGTH: fallocate (punch or zero) the
# mounted file, zeros into the model.
zero_both() {
    [ "$("$VDTEST" errno "$1" "$3" "$4" "$5")" = OK ] || fail "$3 $4+$5 on $1"
    head -c "$5" /dev/zero >"$T/patch"
    dd if="$T/patch" of="$2" bs=1M oflag=seek_bytes seek="$4" conv=notrunc status=none
}

note "images: every writable subformat, zeroed grains, a child"
qemu-img create -q -f vmdk -o subformat=monolithicSparse "$D/ms.vmdk" 64M
qemu-img create -q -f vmdk -o subformat=monolithicFlat "$D/mf.vmdk" 64M
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse "$D/ts.vmdk" 2600M
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentFlat "$D/tf.vmdk" 2600M
qemu-img create -q -f vmdk -o zeroed_grain=on "$D/zg.vmdk" 64M
# nt.vmdk: qemu-img preallocates every grain table; unallocate them all
# (both directories zeroed) so that vdiskfs must allocate tables itself.
qemu-img create -q -f vmdk "$D/nt.vmdk" 64M
for field in 48 56; do
    sector=$(od -An -t u8 -j $field -N 8 "$D/nt.vmdk" | tr -d ' ')
    dd if=/dev/zero of="$D/nt.vmdk" bs=1 seek=$((sector * 512)) count=8 conv=notrunc status=none
done
qemu-img check "$D/nt.vmdk" >/dev/null || fail "nt.vmdk without grain tables"
qemu-img create -q -f vmdk "$D/base.vmdk" 64M
for f in ms mf ts tf zg base; do
    qemu-io -f vmdk -c "write -P 0x31 0 3M" -c "write -P 0x32 30M 1M" "$D/$f.vmdk" >/dev/null ||
        fail "initial data in $f"
done
qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$D/child.vmdk"
qemu-io -f vmdk -c "write -P 0x33 100k 10k" "$D/child.vmdk" >/dev/null
qemu-img create -q -f raw "$T/src.raw" 16M
qemu-io -f raw -c "write -P 0x34 0 1M" "$T/src.raw" >/dev/null
qemu-img convert -O vmdk -o subformat=streamOptimized "$T/src.raw" "$D/so.vmdk"
WRITABLE="ms mf ts tf zg nt child"
for f in $WRITABLE; do
    qemu-img convert -O raw "$D/$f.vmdk" "$T/model/$f.raw"
done
cp "$D/base.vmdk" "$T/base.orig"

mount_vdiskfs "$D" "$M" -o rw

note "random writes and zeroing, mirrored into models"
seed=1
for f in $WRITABLE; do
    size=$(stat -c %s "$M/$f.vmdk")
    [ "$size" = "$(stat -c %s "$T/model/$f.raw")" ] || fail "$f: size $size"
    random_writes "$M/$f.vmdk" "$T/model/$f.raw" "$size" $seed 40
    seed=$((seed + 1))
    zero_both "$M/$f.vmdk" "$T/model/$f.raw" punch 1000000 300000
    zero_both "$M/$f.vmdk" "$T/model/$f.raw" zero 30000000 70000
    zero_both "$M/$f.vmdk" "$T/model/$f.raw" punch 2097152 65536
done
note "writes across the 2 GiB extent boundary"
for f in ts tf; do
    write_both "$M/$f.vmdk" "$T/model/$f.raw" $((2048 * 1048576 - 70000)) 150000
    write_both "$M/$f.vmdk" "$T/model/$f.raw" $((2600 * 1048576 - 1000)) 1000
done
note "the mount reads back what was written"
for f in $WRITABLE; do
    same_bytes "$T/model/$f.raw" "$M/$f.vmdk" "$f.vmdk while mounted"
done

note "streamOptimized stays read-only"
[ "$(stat -c %a "$M/so.vmdk")" = 444 ] || fail "so.vmdk mode $(stat -c %a "$M/so.vmdk")"
[ "$("$VDTEST" errno "$M/so.vmdk" open-rw)" = EROFS ] || fail "so.vmdk opens for writing"
unmount_vdiskfs "$M"

note "qemu-img check and compare"
for f in $WRITABLE so; do
    qemu-img check "$D/$f.vmdk" >"$T/check" 2>&1 || fail "qemu-img check $f.vmdk: $(cat "$T/check")"
done
for f in $WRITABLE; do
    qemu-img compare -f raw -F vmdk "$T/model/$f.raw" "$D/$f.vmdk" >"$T/cmp" 2>&1 ||
        fail "qemu-img compare $f.vmdk with its model: $(cat "$T/cmp")"
done
cmp "$T/base.orig" "$D/base.vmdk" || fail "writing the child changed its parent"
strings "$D/child.vmdk" | grep -qx "parentCID=$(strings "$D/base.vmdk" | sed -n 's/^CID=//p')" ||
    fail "the child's parentCID no longer names the parent's CID"

note "read-only remount: content and map equal qemu-img's"
mount_vdiskfs "$D" "$M"
for f in ms zg nt child; do
    compare_to_qemu "$D/$f.vmdk" "$M/$f.vmdk"
done
unmount_vdiskfs "$M"

note "writing a parent gives it a new CID: its child is then refused"
cid_before=$(strings "$D/base.vmdk" | sed -n 's/^CID=//p')
mount_vdiskfs "$D" "$M" -o rw
printf 'new' | dd of="$M/base.vmdk" bs=1 seek=5 conv=notrunc status=none || fail "write to base.vmdk"
unmount_vdiskfs "$M"
cid_after=$(strings "$D/base.vmdk" | sed -n 's/^CID=//p')
[ -n "$cid_after" ] && [ "$cid_before" != "$cid_after" ] || fail "CID unchanged: $cid_before"
qemu-img check "$D/base.vmdk" >/dev/null || fail "qemu-img check base.vmdk after the CID update"
if "$VDISK" info "$D/child.vmdk" >"$T/out" 2>&1; then
    fail "the child of a changed parent still opens"
fi
grep -q CID "$T/out" || fail "no CID in the refusal: $(cat "$T/out")"

note "SIGKILL during writes: a clean image, fsync'ed data kept"
K=$T/kmnt
mkdir -p "$T/kill" "$K"
qemu-img create -q -f vmdk "$T/kill/k.vmdk" 256M
mount_vdiskfs "$T/kill" "$K" -o rw
head -c 4194304 /dev/zero | tr '\0' 'A' >"$T/apattern"
dd if="$T/apattern" of="$K/k.vmdk" bs=1M seek=1 conv=notrunc,fsync status=none || fail "phase A"
pid=$(pgrep -f "vdiskfs.* $K\$") || fail "no daemon for $K"
# Phase B writes 64 KiB blocks from 100 on: past phase A (blocks 16..79).
awk 'BEGIN { srand(99); for (i = 0; i < 400; i++) printf "%d\n", 100 + int(rand() * 3900) }' >"$T/kops"
(
    while read -r blk; do
        dd if=/dev/urandom of="$K/k.vmdk" bs=64k count=1 seek="$blk" conv=notrunc status=none \
            2>/dev/null || exit 0
    done <"$T/kops"
) &
writer=$!
sleep 0.3
kill -9 "$pid"
wait_gone "$pid"
wait "$writer" || true
umount -l "$K" 2>/dev/null || fusermount3 -uz "$K" 2>/dev/null || true
qemu-img check "$T/kill/k.vmdk" >"$T/check" 2>&1 ||
    fail "qemu-img check after SIGKILL: $(cat "$T/check")"
qemu-io -f vmdk -c "read -P 0x41 1M 4M" "$T/kill/k.vmdk" >"$T/pat" 2>&1 || true
if grep -q "verification failed" "$T/pat" || ! grep -q "read 4194304/4194304" "$T/pat"; then
    fail "fsync'ed data lost after SIGKILL: $(cat "$T/pat")"
fi
mount_vdiskfs "$T/kill" "$K"
cmp -n 4194304 -i 1048576:0 "$K/k.vmdk" "$T/apattern" || fail "fsync'ed data through the mount"
unmount_vdiskfs "$K"
echo PASS
