#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Living on a real system: a live IMAGEDIR, mount(8)/fstab, ordinary users,
# SIGTERM, logging.
. "$TESTLIB"
require_fuse

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
head -c 1048576 /dev/urandom >"$D/a.img"
mount_vdiskfs "$D" "$M"

# within SECONDS CMD...: CMD succeeds within that many seconds.
within() {
    local limit=$1 i=0
    shift
    while ! "$@" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le $((limit * 10)) ] || return 1
        sleep 0.1
    done
}
listed() { ls "$M" | grep -qx "$1"; }
not_listed() { ! ls "$M" | grep -qx "$1"; }

note "images added, removed and renamed in IMAGEDIR show up live"
stat "$M/a.img" >/dev/null
cp "$D/a.img" "$D/b.img"
within 2 listed b.img || fail "a new image is not listed after 2 s"
within 2 test -f "$M/b.img" || fail "a new image cannot be looked up after 2 s"
rm "$D/b.img"
within 2 not_listed b.img || fail "a removed image is still listed after 2 s"
within 2 test ! -e "$M/b.img" || fail "a removed image can still be looked up after 2 s"
mv "$D/a.img" "$D/c.img"
within 2 test ! -e "$M/a.img" || fail "the old name of a renamed image stays"
within 2 test -f "$M/c.img" || fail "the new name of a renamed image does not appear"
same_bytes "$D/c.img" "$M/c.img" "renamed image"

note "an image replaced under an open handle serves the old one until closed"
cp "$D/c.img" "$T/old.img"
exec 3<"$M/c.img"
head -c 1048576 /dev/zero >"$D/new.img"
mv "$D/new.img" "$D/c.img"
cmp "$T/old.img" - <&3 || fail "the open handle does not read the replaced image's old bytes"
exec 3<&-
within 2 cmp -s "$D/c.img" "$M/c.img" || fail "a new open does not see the replacement"
unmount_vdiskfs "$M"

note "idle images are closed (file descriptors released) and reopen on demand"
mount_vdiskfs "$D" "$M" -o idle_timeout=1
cmp "$D/c.img" "$M/c.img" || fail "read before idling"
pid=$(pgrep -f "vdiskfs -o idle_timeout=1 $D $M" | head -n1)
[ -n "$pid" ] || fail "cannot find the daemon"
holds_image() { ls -l "/proc/$pid/fd" 2>/dev/null | grep -q "$D/c.img"; }
holds_image || fail "the daemon does not hold the image open after a read"
within 5 sh -c "! ls -l /proc/$pid/fd | grep -q '$D/c.img'" || fail "an idle image stays open"
exec 3<"$M/c.img"
sleep 2.5
holds_image || fail "an image with an open handle was closed"
exec 3<&-
cmp "$D/c.img" "$M/c.img" || fail "read after the image was closed for idleness"
unmount_vdiskfs "$M"

note "SIGTERM unmounts cleanly; -f logs one line per problem image to stderr"
mkdir -p "$T/logd"
head -c 1048576 /dev/urandom >"$T/logd/ok.img"
"$VDISKFS" -f "$T/logd" "$M" 2>"$T/stderr" &
pid=$!
MOUNTS="$MOUNTS $M"
within 5 mountpoint -q "$M" || fail "foreground mount did not appear"
ls -l "$M" >/dev/null
cat "$M/ok.img" >/dev/null
kill -TERM $pid
within 5 sh -c "! kill -0 $pid" || fail "vdiskfs did not exit on SIGTERM"
wait $pid || fail "vdiskfs exited non-zero after SIGTERM"
! mountpoint -q "$M" || fail "still mounted after SIGTERM"
[ ! -s "$T/stderr" ] || fail "unexpected messages for a clean directory: $(cat "$T/stderr")"

note "mount -t fuse.vdiskfs and an fstab line work through mount.fuse3"
command -v unshare >/dev/null || fail "unshare (util-linux) is missing"
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$T/bin"
    ln -s "$VDISKFS" "$T/bin/vdiskfs"
    printf '%s %s fuse.vdiskfs ro,allow_other 0 0\n' "$D" "$M" >"$T/fstab"
    # A private mount namespace puts our vdiskfs first in mount.fuse3's
    # PATH without touching the system.
    unshare -m --propagation private sh -e -c '
        mount --bind "$1/bin" /usr/local/bin
        mount -t fuse.vdiskfs -o ro "$2" "$3"
        grep -q " fuse.vdiskfs " /proc/self/mountinfo
        cmp "$2/c.img" "$3/c.img"
        umount "$3"
        mount -T "$1/fstab" "$3"
        grep " $3 " /proc/self/mountinfo | grep -q allow_other
        cmp "$2/c.img" "$3/c.img"
        umount "$3"
    ' sh "$T" "$D" "$M" || fail "mount -t fuse.vdiskfs / fstab"
fi

note "an ordinary user mounts and reads their own images through fusermount3"
if [ "$(id -u)" = 0 ]; then
    U=$T/user
    mkdir -p "$U/img" "$U/mnt"
    cp "$D/c.img" "$U/img/mine.img"
    chown -R 65534:65534 "$U"
    restore_mode=""
    if ! setpriv --reuid=65534 --regid=65534 --clear-groups test -w /dev/fuse; then
        if [ "${CI:-}" = true ]; then
            # Debian's udev rule makes /dev/fuse 0666; containers often do not.
            restore_mode=$(stat -c %a /dev/fuse)
            chmod 666 /dev/fuse
        else
            note "(/dev/fuse is not usable by other users here; not tested)"
        fi
    fi
    if setpriv --reuid=65534 --regid=65534 --clear-groups test -w /dev/fuse; then
        setpriv --reuid=65534 --regid=65534 --clear-groups sh -e -c '
            "$1" "$2/img" "$2/mnt"
            cmp "$2/img/mine.img" "$2/mnt/mine.img"
            fusermount3 -u "$2/mnt"
        ' sh "$VDISKFS" "$U" || { [ -z "$restore_mode" ] || chmod "$restore_mode" /dev/fuse; fail "user mount"; }
    fi
    [ -z "$restore_mode" ] || chmod "$restore_mode" /dev/fuse
fi
echo PASS
