#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Every file an image consists of is opened in one place (src/vd-file.c):
# confined to IMAGEDIR (symlinks included), never blocking on a FIFO,
# refused when it is not a regular file, locked like the image.
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D" "$M" "$T/private"
chmod 700 "$T/private"

note "a symlink in IMAGEDIR leading outside it is not shown, nor served to other users"
id vdtestuser >/dev/null 2>&1 || useradd -M -s /bin/sh vdtestuser 2>/dev/null ||
    fail "cannot create a test user"
printf 'TOP SECRET\n' >"$T/private/secret.img"
truncate -s 4096 "$T/private/secret.img"
chmod 644 "$T/private/secret.img"
ln -s "$T/private/secret.img" "$D/link.img"
qemu-img create -q -f raw "$D/inside.img" 1M
ln -s inside.img "$D/alias.img" # inside IMAGEDIR: fine
mkdir -p "$D/sub"
ln -s ../inside.img "$D/sub/up.img" # still inside
ln -s "$D/inside.img" "$D/absolute.img" # absolute, but inside
mount_vdiskfs "$D" "$M" -o allow_other
ls "$M" >"$T/ls"
grep -qx link.img "$T/ls" && fail "a symlink leading out of IMAGEDIR is listed"
for n in inside.img alias.img absolute.img; do
    grep -qx "$n" "$T/ls" || fail "$n is not listed: $(cat "$T/ls")"
done
[ -f "$M/sub/up.img" ] || fail "sub/up.img (a symlink to ../inside.img) is not shown"
[ ! -e "$M/link.img" ] || fail "link.img can be looked up"
if runuser -u vdtestuser -- head -c 10 "$M/link.img" 2>/dev/null | grep -q SECRET; then
    fail "another user read a file outside IMAGEDIR through the mount"
fi
cmp "$D/inside.img" "$M/alias.img" || fail "alias.img does not show inside.img"
unmount_vdiskfs "$M"
mount_vdiskfs "$D" "$M" -o allow_other,symlinks=any
cmp -n 4096 "$T/private/secret.img" "$M/link.img" || fail "-o symlinks=any does not follow the link"
unmount_vdiskfs "$M"
rm "$D/link.img"

note "an extent or data file that is a symlink leading out is refused, with the reason"
qemu-img create -q -f raw "$T/private/outside.raw" 1M
mkdir -p "$D/ext"
(cd "$D/ext" && qemu-img create -q -f qcow2 -o data_file=data.raw df.qcow2 1M && rm data.raw &&
    ln -s "$T/private/outside.raw" data.raw)
mount_vdiskfs "$D" "$M"
r=$("$VDTEST" errno "$M/ext/df.qcow2" open-ro)
[ "$r" != OK ] || fail "a qcow2 whose data file leads outside IMAGEDIR opened"
getfattr -n user.vdiskfs.error --only-values "$M/ext/df.qcow2" 2>/dev/null |
    grep -q "outside the image directory" || fail "no reason given for the refused data file"
unmount_vdiskfs "$M"
rm -r "$D/ext"

note "a FIFO as a qcow2 data file, a VMDK extent or an image: no hang, a clear error"
mkdir -p "$D/fifo"
(cd "$D/fifo" && qemu-img create -q -f qcow2 -o data_file=data.raw df.qcow2 16M && rm data.raw &&
    mkfifo data.raw)
qemu-img create -q -f vmdk -o subformat=monolithicFlat "$D/fifo/flat.vmdk" 1M
rm "$D/fifo/flat-flat.vmdk"
mkfifo "$D/fifo/flat-flat.vmdk"
mkfifo "$D/fifo/pipe.img"
qemu-img create -q -f qcow2 "$D/fifo/good.qcow2" 16M
mount_vdiskfs "$D" "$M"
timeout 10 ls -l "$M/fifo" >"$T/ls" 2>&1 || fail "ls -l of a directory with FIFO members hung or failed"
grep -q good.qcow2 "$T/ls" || fail "good.qcow2 missing from the listing"
grep -q pipe.img "$T/ls" && fail "a FIFO named like a raw image is listed"
for img in df.qcow2 flat.vmdk; do
    r=$(timeout 10 "$VDTEST" errno "$M/fifo/$img" open-ro) || fail "opening $img hung"
    [ "$r" = EIO ] || fail "$img with a FIFO member: $r, expected EIO"
    timeout 10 getfattr -n user.vdiskfs.error --only-values "$M/fifo/$img" 2>/dev/null |
        grep -q "FIFO" || fail "$img: user.vdiskfs.error does not name the FIFO"
done
timeout 10 cmp -n 65536 /dev/zero "$M/fifo/good.qcow2" || fail "good.qcow2 beside the FIFOs"
unmount_vdiskfs "$M"
rm -r "$D/fifo"

note "a FIFO as the key file is refused at once"
mkfifo "$T/keys"
if timeout 10 "$VDISKFS" -o keyfile="$T/keys" "$D" "$M" 2>"$T/err"; then
    fusermount3 -u "$M"
    fail "vdiskfs mounted with a FIFO as its key file"
fi
grep -q "not a regular file" "$T/err" || fail "key file FIFO: $(cat "$T/err")"

note "VMDK extents and qcow2 data files carry QEMU's locks"
mkdir -p "$D/locks"
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse "$D/locks/split.vmdk" 8M
(cd "$D/locks" && qemu-img create -q -f qcow2 -o data_file=payload.raw df.qcow2 8M)
mount_vdiskfs "$D/locks" "$M" -o rw
exec 3<>"$M/split.vmdk"
exec 6<>"$M/df.qcow2"
printf 'x' | dd of="$M/split.vmdk" conv=notrunc status=none
extent=$(ls "$D/locks" | grep -- '-s001.vmdk$')
if qemu-io -f vmdk -c 'write -P 7 0 512' "$D/locks/$extent" >"$T/qio" 2>&1; then
    fail "qemu-io wrote an extent that vdiskfs has open for writing"
fi
grep -qi lock "$T/qio" || fail "qemu-io failed on the extent for another reason: $(cat "$T/qio")"
if qemu-io -f raw -c 'write -P 7 0 512' "$D/locks/payload.raw" >"$T/qio" 2>&1; then
    fail "qemu-io wrote a data file that vdiskfs has open for writing"
fi
grep -qi lock "$T/qio" || fail "qemu-io failed on the data file for another reason: $(cat "$T/qio")"
exec 3>&- 6>&-
unmount_vdiskfs "$M"
echo PASS
