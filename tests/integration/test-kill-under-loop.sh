#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# SIGKILL of the daemon under a rw loop-mounted guest filesystem: the loop
# device must fail with I/O errors (no hang), the guest unmount and the
# loop device detach, and a new daemon must mount the same IMAGEDIR at once
# (after the dead mountpoint is unmounted, as vdiskfs(1) says) and open
# the image for writing: no stale lock. Every image passes qemu-img check.
. "$TESTLIB"
require_fuse
require_qemu
[ "$(id -u)" = 0 ] || skip "needs root (loop devices)"
for c in mkfs.ext4 e2fsck losetup timeout; do
    command -v $c >/dev/null || fail "$c is missing (apt-get install e2fsprogs mount coreutils)"
done

D=$T/images M=$T/mnt G=$T/guest
mkdir -p "$D" "$M" "$G"
LOOP="" GUEST_MOUNTED=0

test_cleanup() {
    [ $GUEST_MOUNTED = 1 ] && { umount "$G" 2>/dev/null || umount -l "$G" 2>/dev/null; }
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
    # A dead daemon's mount fails mountpoint(1), which lib.sh's cleanup asks.
    grep -q " $M " /proc/self/mountinfo && umount -l "$M" 2>/dev/null
    cleanup
}
trap test_cleanup EXIT

daemon_pid() {
    pgrep -f "vdiskfs -o rw $D $M\$" | head -n1
}

# bounded SECONDS WHAT COMMAND...: COMMAND must end (with any status) in
# time; a hang fails the test.
bounded() {
    secs=$1 what=$2
    shift 2
    rc=0
    timeout -s KILL "$secs" "$@" >"$T/bounded.out" 2>&1 || rc=$?
    [ $rc != 137 ] || fail "$what hung (> $secs s): $(tail -n 3 "$T/bounded.out")"
    return $rc
}

for fmt in qcow2 vmdk; do
    note "$fmt: SIGKILL under a loop-mounted ext4"
    rm -f "$D"/*
    img=$D/disk.$fmt
    qemu-img create -q -f $fmt "$img" 256M
    mount_vdiskfs "$D" "$M" -o rw
    pid=$(daemon_pid)
    [ -n "$pid" ] || fail "$fmt: no daemon"
    LOOP=$(losetup -f --show "$M/disk.$fmt") || fail "$fmt: losetup"
    mkfs.ext4 -q -F "$LOOP" || fail "$fmt: mkfs.ext4"
    mount "$LOOP" "$G" || fail "$fmt: mount $LOOP"
    GUEST_MOUNTED=1
    "$VDTEST" pattern 7 4194304 >"$G/synced"
    sync -f "$G/synced"
    # A writer still writing (and syncing) when the daemon dies.
    (
        i=0
        while [ $i -lt 1000 ]; do
            "$VDTEST" pattern $((i % 200 + 1)) 1048576 >"$G/w$((i % 8))" 2>/dev/null || exit 0
            sync -f "$G/." 2>/dev/null || exit 0
            i=$((i + 1))
        done
    ) &
    wpid=$!
    sleep 0.5
    kill -9 "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done

    # I/O errors, not a hang: the writer stops, reads past the page cache
    # and syncs fail in bounded time.
    i=0
    while kill -0 $wpid 2>/dev/null && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
    kill -0 $wpid 2>/dev/null && fail "$fmt: the guest writer hangs after the daemon died"
    wait $wpid || true
    bounded 20 "a direct read of the loop device" dd if="$LOOP" of=/dev/null bs=4096 count=1 \
        skip=100 iflag=direct && fail "$fmt: a direct read of $LOOP succeeded after the daemon died"
    grep -qi "error" "$T/bounded.out" || fail "$fmt: no I/O error from $LOOP: $(cat "$T/bounded.out")"
    bounded 20 "sync of the guest" sync -f "$G/." || true

    # What a user does (vdiskfs(1), CRASHES; README): unmount the guest, detach the
    # loop device, unmount the dead mountpoint, mount again.
    bounded 20 "umount of the guest" umount "$G" || bounded 20 "umount -l of the guest" umount -l "$G" ||
        fail "$fmt: cannot unmount the guest"
    GUEST_MOUNTED=0
    bounded 20 "losetup -d" losetup -d "$LOOP" || fail "$fmt: losetup -d $LOOP: $(cat "$T/bounded.out")"
    LOOP=""
    bounded 20 "fusermount3 -uz" fusermount3 -uz "$M" || bounded 20 "umount -l" umount -l "$M" ||
        fail "$fmt: cannot unmount the dead mountpoint $M"

    rc=0
    qemu-img check -q -f $fmt "$img" >"$T/check" 2>&1 || rc=$?
    # 0: clean; 3: leaked clusters only (allowed after a crash).
    [ $rc = 0 ] || [ $rc = 3 ] || fail "$fmt: qemu-img check after the kill, exit $rc: $(cat "$T/check")"
    rc_kill=$rc
    cp "$T/check" "$T/check.kill"

    mount_vdiskfs "$D" "$M" -o rw
    # Opened for writing at once: no stale lock of the dead daemon.
    dd if=/dev/zero of="$M/disk.$fmt" bs=512 count=1 seek=1 conv=notrunc status=none 2>"$T/dd.err" ||
        fail "$fmt: the new mount cannot write the image: $(cat "$T/dd.err")"
    # The guest survived: journal replayed, no other repair needed.
    rc=0
    e2fsck -fp "$M/disk.$fmt" >"$T/fsck" 2>&1 || rc=$?
    [ $rc -le 1 ] || fail "$fmt: guest e2fsck exit $rc: $(cat "$T/fsck")"
    LOOP=$(losetup -f --show -r "$M/disk.$fmt") || fail "$fmt: losetup after the remount"
    mount -o ro "$LOOP" "$G" || fail "$fmt: the guest does not mount again"
    GUEST_MOUNTED=1
    "$VDTEST" pattern 7 4194304 | cmp - "$G/synced" || fail "$fmt: data synced before the kill is lost"
    umount "$G"
    GUEST_MOUNTED=0
    losetup -d "$LOOP"
    LOOP=""
    unmount_vdiskfs "$M"
    # No worse than after the kill: clusters the kill leaked stay leaked
    # (nothing reclaims them but qemu-img check -r), nothing else.
    killed_rc=$rc_kill rc=0
    qemu-img check -q -f $fmt "$img" >"$T/check" 2>&1 || rc=$?
    [ $rc = 0 ] || { [ $rc = 3 ] && [ "$killed_rc" = 3 ]; } ||
        fail "$fmt: qemu-img check after the clean remount, exit $rc: $(cat "$T/check"); after the kill, exit $killed_rc: $(cat "$T/check.kill")"
done
echo PASS
