#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# allow_other: the kernel applies each image's owner and mode to every user.
. "$TESTLIB"
require_fuse
require_qemu
[ "$(id -u)" = 0 ] || skip "needs root to act as another user"
command -v setpriv >/dev/null || fail "setpriv (util-linux) is missing"

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
chmod 755 "$D"
truncate -s 1M "$D/private.img" "$D/public.img"
chmod 600 "$D/private.img"
chmod 644 "$D/public.img"
# Snapshots carry their image's owner and mode too.
qemu-img create -q -f qcow2 "$D/private.qcow2" 1M
qemu-img snapshot -c s1 "$D/private.qcow2"
chmod 600 "$D/private.qcow2"
mount_vdiskfs "$D" "$M" -o allow_other

as_nobody() {
    setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
}
[ "$(as_nobody "$VDTEST" errno "$M/public.img" read)" = OK ] || fail "nobody cannot read a 0644 image"
[ "$(as_nobody "$VDTEST" errno "$M/private.img" open-ro)" = EACCES ] ||
    fail "nobody can open a 0600 root image"
[ "$("$VDTEST" errno "$M/private.img" read)" = OK ] || fail "root cannot read its own image"
[ "$("$VDTEST" errno "$M/.snapshots/private.qcow2/s1" read)" = OK ] || fail "root cannot read its snapshot"
r=$(as_nobody "$VDTEST" errno "$M/.snapshots/private.qcow2/s1" open-ro)
[ "$r" = EACCES ] || fail "nobody can open a snapshot of a 0600 root image: $r"
[ "$(stat -c %a "$M/.snapshots/private.qcow2/s1")" = 400 ] || fail "snapshot mode $(stat -c %a "$M/.snapshots/private.qcow2/s1")"
unmount_vdiskfs "$M"

note "without allow_other nobody else gets in at all"
mount_vdiskfs "$D" "$M"
r=$(as_nobody "$VDTEST" errno "$M/public.img" open-ro)
[ "$r" = EACCES ] || [ "$r" = EPERM ] || fail "another user entered a mount without allow_other: $r"
echo PASS
