#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The write permission is held only while an image is being written: when
# its last writer closes, vdiskfs flushes and gives the write locks back,
# so a child opens over a base just written, and `qemu-img check` right
# after an unmount finds the image free. force_share shares reads only.
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"

for fmt in vmdk qed qcow2; do
    note "$fmt: write the base, close it, then open its child"
    qemu-img create -q -f $fmt "$D/base.$fmt" 4M
    qemu-img create -q -f $fmt -b "base.$fmt" -F $fmt "$D/child.$fmt"
    mount_vdiskfs "$D" "$M" -o rw
    if [ $fmt = vmdk ]; then
        # A write gives a VMDK base a new CID, which (rightly) orphans its
        # child: open it for writing and close it only.
        exec 3<>"$M/base.$fmt"
        exec 3>&-
    else
        "$VDTEST" pattern 171 65536 | dd of="$M/base.$fmt" bs=64k conv=notrunc status=none ||
            fail "$fmt: writing the base"
    fi
    r=$("$VDTEST" errno "$M/child.$fmt" read)
    [ "$r" = OK ] || fail "$fmt: the child does not open after its base was written and closed: $r"
    cmp -n 65536 "$M/base.$fmt" "$M/child.$fmt" || fail "$fmt: the child does not show the base's write"
    note "$fmt: writing the base again while the child is open is EBUSY, and says why"
    exec 5<"$M/child.$fmt"
    r=$("$VDTEST" errno "$M/base.$fmt" open-rw)
    if [ "$r" = OK ]; then
        # Opening for writing may succeed (the image is already open read-write
        # here); the write itself must then be refused.
        if printf 'x' | dd of="$M/base.$fmt" conv=notrunc status=none 2>"$T/dd"; then
            fail "$fmt: wrote a base image under an open child"
        fi
    else
        [ "$r" = EBUSY ] || fail "$fmt: writing a base under an open child: $r, expected EBUSY"
    fi
    exec 5<&-
    unmount_vdiskfs "$M"
    qemu-img check -q "$D/base.$fmt" || fail "$fmt: qemu-img check of the base"
    rm -f "$D/base.$fmt" "$D/child.$fmt"
done

note "a writer's open is EBUSY beside a reader that stays, and waits for one that is closing"
qemu-img create -q -f qcow2 "$D/r.qcow2" 4M
mount_vdiskfs "$D" "$M" -o rw
exec 6<"$M/r.qcow2"
r=$("$VDTEST" errno "$M/r.qcow2" open-rw)
[ "$r" = EBUSY ] || fail "opening for writing beside an open reader: $r, expected EBUSY"
exec 6<&-
# close(2) returns before the kernel's RELEASE reaches the daemon: a
# reader that goes 0.3 s after the writer's open must not fail it.
rm -f "$T/opened"
(
    exec 6<"$M/r.qcow2"
    touch "$T/opened"
    sleep 0.3
) &
until [ -e "$T/opened" ]; do sleep 0.01; done
"$VDTEST" pattern 77 65536 | dd of="$M/r.qcow2" bs=64k conv=notrunc status=none ||
    fail "a writer's open failed beside a reader that closed 0.3 s later"
wait
unmount_vdiskfs "$M"
"$VDTEST" pattern 77 65536 >"$T/p77"
qemu-img convert -O raw "$D/r.qcow2" "$T/r.raw"
cmp -n 65536 "$T/p77" "$T/r.raw" || fail "r.qcow2 does not hold the write"

note "qemu-img check right after fusermount3 -u finds the image unlocked (10 rounds)"
qemu-img create -q -f qcow2 "$D/a.qcow2" 4G
i=0
while [ $i -lt 10 ]; do
    mount_vdiskfs "$D" "$M" -o rw
    dd if=/dev/urandom of="$M/a.qcow2" bs=1M count=16 seek=$((i * 16)) conv=notrunc status=none
    fusermount3 -u "$M"
    qemu-img check -q "$D/a.qcow2" 2>"$T/err" || fail "round $i: qemu-img check: $(cat "$T/err")"
    k=0 # the daemon exits after the kernel lets go: wait before mounting again
    while pgrep -f "vdiskfs.* $M\$" >/dev/null 2>&1 && [ $k -lt 100 ]; do
        sleep 0.05
        k=$((k + 1))
    done
    i=$((i + 1))
done

note "force_share does not let vdiskfs write an image QEMU is writing"
qemu-img create -q -f qcow2 "$D/busy.qcow2" 64M
mkfifo "$T/qemu-in"
qemu-io -f qcow2 "$D/busy.qcow2" <"$T/qemu-in" >/dev/null 2>&1 &
qpid=$!
exec 4>"$T/qemu-in"
echo "write -P 17 0 64k" >&4
ino=$(stat -c %i "$D/busy.qcow2")
n=0
until awk -v ino="$ino" '$6 ~ ":"ino"$" && $7 <= 101 && $8 >= 101 {f=1} END {exit !f}' /proc/locks; do
    n=$((n + 1))
    [ $n -lt 200 ] || fail "qemu-io did not lock busy.qcow2"
    sleep 0.05
done
mount_vdiskfs "$D" "$M" -o rw,force_share 4>&-
cmp -n 65536 /dev/zero "$M/busy.qcow2" >/dev/null 2>&1 || true # reading is allowed
r=$("$VDTEST" errno "$M/busy.qcow2" open-rw)
[ "$r" = EBUSY ] || [ "$r" = EIO ] || fail "force_share opened an image QEMU writes read-write: $r"
echo "write -P 18 1M 64k" >&4
echo quit >&4
exec 4>&-
wait $qpid 2>/dev/null || true
unmount_vdiskfs "$M"
qemu-img check -q "$D/busy.qcow2" || fail "busy.qcow2 is damaged"
qemu-io -f qcow2 -c "read -P 17 0 64k" -c "read -P 18 1M 64k" "$D/busy.qcow2" >"$T/qio" 2>&1 ||
    fail "QEMU's writes are not all there: $(cat "$T/qio")"
echo PASS
