#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The first requests on a fresh mount race each other (a listing, a lookup
# in .snapshots/, a read): every one of them must see the whole truth.
# Once, the first `ls .snapshots/snap.qcow2` of a mount came back empty.
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D/sub" "$M"
qemu-img create -q -f qcow2 "$D/snap.qcow2" 16M
qemu-io -f qcow2 -c "write -P 1 0 64k" "$D/snap.qcow2" >/dev/null
qemu-img snapshot -c before "$D/snap.qcow2"
qemu-img snapshot -c after "$D/snap.qcow2"
for i in 1 2 3 4 5 6; do qemu-img create -q -f qcow2 "$D/sub/d$i.qcow2" 1M; done
qemu-img create -q -f vmdk "$D/sub/base.vmdk" 1M
qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$D/sub/child.vmdk"
ROUNDS=${FRESH_MOUNT_ROUNDS:-40}
r=0
while [ $r -lt "$ROUNDS" ]; do
    r=$((r + 1))
    mount_vdiskfs "$D" "$M" -o idle_timeout=1
    ls -l "$M" "$M/sub" >"$T/ls" 2>&1 &
    a=$!
    ls "$M/.snapshots/snap.qcow2" >"$T/snaps" 2>&1 &
    b=$!
    cmp -n 65536 "$M/sub/child.vmdk" /dev/zero >"$T/cmp" 2>&1 &
    c=$!
    ls "$M/.snapshots" >"$T/snapdir" 2>&1
    wait $a || fail "round $r: ls -l: $(cat "$T/ls")"
    wait $b || fail "round $r: ls .snapshots/snap.qcow2: $(cat "$T/snaps")"
    wait $c || fail "round $r: reading child.vmdk: $(cat "$T/cmp")"
    [ "$(tr '\n' ' ' <"$T/snaps")" = "after before " ] ||
        fail "round $r: .snapshots/snap.qcow2 lists '$(cat "$T/snaps")'"
    [ "$(tr '\n' ' ' <"$T/snapdir")" = "snap.qcow2 sub " ] || fail "round $r: .snapshots lists '$(cat "$T/snapdir")'"
    # File lines only: the directory headers hold the path, which may
    # itself contain "qcow2".
    n=$(grep -c '^-.*\.\(qcow2\|vmdk\)$' "$T/ls")
    [ "$n" = 9 ] || fail "round $r: ls -l shows $n images: $(cat "$T/ls")"
    unmount_vdiskfs "$M"
done
echo PASS
