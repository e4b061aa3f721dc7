#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# IMAGEDIR on a network-like filesystem.
# 1. A bindfs view changed underneath, as another host changes a network
#    filesystem: no inotify event reaches the mount, which must notice the
#    change through the directory's times (add, remove, replace an image)
#    within a few seconds.
# 2. A filesystem that refuses byte-range locks (nolock-fuse: ENOLCK,
#    EOPNOTSUPP, EINVAL, as some network ones do): images open all the same,
#    unlocked, with one warning per mount, not one per image or open.
# 3. A server gone for a while (nolock-fuse -r: reads fail with EIO): an
#    open that failed on it is tried again once it answers, not refused
#    for the life of the mount.
. "$TESTLIB"
require_fuse
require_qemu
command -v bindfs >/dev/null || fail "bindfs is missing (apt-get install bindfs)"
NOLOCK=$(dirname "$VDTEST")/nolock-fuse
[ -x "$NOLOCK" ] || fail "$NOLOCK is missing (make check builds it)"

U=$T/under V=$T/view M=$T/mnt
mkdir -p "$U" "$V" "$M"
mkimg() { # NAME SIZE BYTE: a qcow2 with 64 KiB of BYTE at 1 MiB
    qemu-img create -q -f qcow2 "$1" "$2"
    qemu-io -f qcow2 -c "write -P $3 1M 64k" "$1" >/dev/null
}

# until SECONDS WHAT COMMAND...: COMMAND succeeds within SECONDS.
until_true() {
    secs=$1 what=$2
    shift 2
    i=0
    while ! "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -le $((secs * 5)) ] || fail "$what: not seen within $secs s"
        sleep 0.2
    done
    note "$what: seen after $((i * 200)) ms"
}
listed() { ls "$M" | grep -qx "$1"; }
not_listed() { ! listed "$1"; }
size_is() { [ "$(stat -c %s "$M/$1")" = "$2" ]; }

mkimg "$U/a.qcow2" 64M 0x11
bindfs "$U" "$V" || fail "bindfs $U $V"
MOUNTS="$MOUNTS $V"
mount_vdiskfs "$V" "$M"
listed a.qcow2 || fail "a.qcow2 is not listed: $(ls -la "$M")"
compare_to_qemu "$U/a.qcow2" "$M/a.qcow2"

mkimg "$U/b.qcow2" 32M 0x22
until_true 5 "b.qcow2 added underneath" listed b.qcow2
compare_to_qemu "$U/b.qcow2" "$M/b.qcow2"

rm "$U/a.qcow2"
until_true 5 "a.qcow2 removed underneath" not_listed a.qcow2

mkimg "$T/new.qcow2" 48M 0x33
mv "$T/new.qcow2" "$U/b.qcow2"
until_true 5 "b.qcow2 replaced underneath" size_is b.qcow2 $((48 * 1024 * 1024))
compare_to_qemu "$U/b.qcow2" "$M/b.qcow2"
unmount_vdiskfs "$M"
fusermount3 -u "$V"

# 2. Locks refused: probe that they really are, then mount.
N=$T/nolock L=$T/lockless
mkdir -p "$N" "$L"
for i in 1 2 3; do mkimg "$L/d$i.qcow2" 16M $((i + 0x40)); done
for e in ENOLCK EOPNOTSUPP EINVAL; do
    note "host filesystem refusing locks with $e"
    "$NOLOCK" -e $e "$L" "$N" &
    MOUNTS="$MOUNTS $N"
    until_true 5 "nolock-fuse mounted" mountpoint -q "$N"
    got=$("$VDTEST" ofdlock "$N/d1.qcow2")
    [ "$got" = "$e" ] || fail "an OFD lock on nolock-fuse gives $got, not $e"
    "$VDISKFS" -f -o idle_timeout=1 "$N" "$M" 2>"$T/log" &
    MOUNTS="$MOUNTS $M"
    until_true 5 "vdiskfs mounted" mountpoint -q "$M"
    for round in 1 2; do
        for i in 1 2 3; do
            compare_to_qemu "$L/d$i.qcow2" "$M/d$i.qcow2"
            cat "$M/d$i.qcow2" >/dev/null
        done
        # Idle images close after 1 s: the second round opens them again.
        [ $round = 1 ] && sleep 3
    done
    unmount_vdiskfs "$M"
    fusermount3 -u "$N"
    wait
    n=$(grep -c "refuses byte-range locks" "$T/log" || true)
    [ "$n" = 1 ] || fail "$e: $n lock warnings, not one: $(cat "$T/log")"
done

note "a read error of the host at open is not a lasting verdict"
"$NOLOCK" -r "$T/server-gone" "$L" "$N" &
MOUNTS="$MOUNTS $N"
until_true 5 "nolock-fuse mounted" mountpoint -q "$N"
"$VDISKFS" -f "$N" "$M" 2>"$T/log" &
MOUNTS="$MOUNTS $M"
until_true 5 "vdiskfs mounted" mountpoint -q "$M"
ls -l "$M" >/dev/null
: >"$T/server-gone"
r=$("$VDTEST" errno "$M/d2.qcow2" read)
[ "$r" = EIO ] || fail "reading d2.qcow2 while its host reads fail: $r, not EIO"
getfattr -n user.vdiskfs.error --only-values "$M/d2.qcow2" 2>/dev/null | grep -q . ||
    fail "no user.vdiskfs.error while the host reads fail"
rm "$T/server-gone"
until_true 10 "d2.qcow2 opens once the host answers again" dd if="$M/d2.qcow2" of=/dev/null bs=4k count=1 status=none
compare_to_qemu "$L/d2.qcow2" "$M/d2.qcow2"
! getfattr -n user.vdiskfs.error "$M/d2.qcow2" >/dev/null 2>&1 ||
    fail "user.vdiskfs.error still set after a good open"
unmount_vdiskfs "$M"
fusermount3 -u "$N"
wait
echo PASS
