#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# QEMU-compatible image locks: vdiskfs never writes an image QEMU writes,
# QEMU cannot write an image vdiskfs has open, qemu-img info -U still works;
# a refusal lasts only as long as QEMU's lock.
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
qemu-img create -q -f raw "$D/busy.img" 1M
qemu-img create -q -f raw "$D/mine.img" 1M

# QEMU holds busy.img open for writing while vdiskfs mounts.
mkfifo "$T/qemu-in"
qemu-io -f raw "$D/busy.img" <"$T/qemu-in" >/dev/null 2>&1 &
qpid=$!
exec 4>"$T/qemu-in"
# wait_qemu_lock: until QEMU holds its write-permission byte (101) on busy.img.
wait_qemu_lock() {
    local ino i=0
    ino=$(stat -c %i "$D/busy.img")
    until awk -v ino="$ino" '$6 ~ ":"ino"$" && $7 <= 101 && $8 >= 101 {f=1} END {exit !f}' /proc/locks; do
        i=$((i + 1))
        [ $i -lt 200 ] || fail "qemu-io did not lock busy.img"
        sleep 0.05
    done
}
wait_qemu_lock

mount_vdiskfs "$D" "$M" -o rw 4>&- # the daemon must not hold the fifo open
note "an image QEMU is writing is listed but refuses to open, with the reason"
ls "$M" | grep -qx busy.img || fail "busy.img is not listed"
r=$("$VDTEST" errno "$M/busy.img" open-rw)
[ "$r" != OK ] || fail "vdiskfs opened an image QEMU is writing"
getfattr -n user.vdiskfs.error --only-values "$M/busy.img" 2>/dev/null | grep -q "another process" ||
    fail "user.vdiskfs.error does not explain the lock conflict"

note "QEMU cannot write an image vdiskfs has open for writing"
exec 3<>"$M/mine.img"
if qemu-io -f raw -c 'write -P 7 0 512' "$D/mine.img" >"$T/qio" 2>&1; then
    fail "qemu-io wrote to an image vdiskfs has open for writing"
fi
grep -qi "lock" "$T/qio" || fail "qemu-io failed for another reason: $(cat "$T/qio")"
qemu-img info -U "$D/mine.img" >/dev/null || fail "qemu-img info -U fails on a mounted image"
exec 3>&-
exec 4>&-
wait $qpid 2>/dev/null || true

note "once QEMU has let go, the same mount opens the image it refused"
r=$("$VDTEST" errno "$M/busy.img" read)
[ "$r" = OK ] || fail "busy.img after QEMU exited: $r"
cmp "$D/busy.img" "$M/busy.img" || fail "busy.img after QEMU exited: differs"
r=$("$VDTEST" errno "$M/busy.img" open-rw)
[ "$r" = OK ] || fail "busy.img for writing after QEMU exited: $r"
! getfattr -n user.vdiskfs.error "$M/busy.img" >/dev/null 2>&1 ||
    fail "user.vdiskfs.error still set after a good open"
unmount_vdiskfs "$M"

note "a backing image in use by an open child cannot be written; an idle child is no obstacle"
mkdir -p "$T/chain"
qemu-img create -q -f vmdk "$T/chain/base.vmdk" 4M
qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$T/chain/child.vmdk"
mount_vdiskfs "$T/chain" "$M" -o rw 4>&-
ls -l "$M" >/dev/null # opens both images; the child holds base read-locked
exec 5<"$M/child.vmdk"
r=$("$VDTEST" errno "$M/base.vmdk" open-rw)
[ "$r" = EBUSY ] || fail "writing a base under an open child: $r, expected EBUSY"
exec 5<&-
r=$("$VDTEST" errno "$M/base.vmdk" open-rw)
[ "$r" = OK ] || fail "writing a base whose child is idle: $r"
unmount_vdiskfs "$M"

note "force_share reads an image that QEMU is writing"
qemu-io -f raw "$D/busy.img" <"$T/qemu-in" >/dev/null 2>&1 &
qpid=$!
exec 4>"$T/qemu-in"
wait_qemu_lock
mount_vdiskfs "$D" "$M" -o force_share 4>&-
cmp "$D/busy.img" "$M/busy.img" || fail "force_share: cannot read busy.img"
exec 4>&-
wait $qpid 2>/dev/null || true
unmount_vdiskfs "$M"
echo PASS
