#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# A directory of many images is scanned by several threads at once: the
# listing must still be the whole truth - every image once, under the
# right name and size, every member file of another image hidden, archives
# as directories - and equal to what a small directory's one-thread scan
# shows for the same files. Names outside user.* are unsupported, so
# ls -l asks for ACLs and labels once, not once per file.
. "$TESTLIB"
require_fuse
require_qemu
command -v xz >/dev/null || fail "xz is missing (xz-utils)"

D=$T/images M=$T/mnt S=$T/small
mkdir -p "$D" "$M" "$S"
qemu-img create -q -f qcow2 "$T/one.qcow2" 3M
i=0
while [ $i -lt 300 ]; do
    i=$((i + 1))
    cp "$T/one.qcow2" "$D/q$i.qcow2"
done
# Descriptors naming extents: the extents are members, never listed.
for v in 1 2 3 4 5 6 7 8; do
    qemu-img create -q -f vmdk -o subformat=monolithicFlat "$D/flat$v.vmdk" ${v}M
done
head -c 1M /dev/urandom >"$T/data"
xz -T1 -c "$T/data" >"$D/packed.img.xz"
qemu-img create -q -f qcow2 "$T/a.qcow2" 5M
qemu-img create -q -f vmdk "$T/b.vmdk" 7M
tar -C "$T" -cf "$D/appliance.ova" a.qcow2 b.vmdk
: >"$D/notes.txt"
for f in q1.qcow2 flat3.vmdk flat3-flat.vmdk packed.img.xz appliance.ova notes.txt; do
    cp "$D/$f" "$S/$f"
done

mount_vdiskfs "$D" "$M"
ls "$M" >"$T/ls"
n=$(grep -c '^q[0-9]*\.qcow2$' "$T/ls")
[ "$n" = 300 ] || fail "$n of 300 qcow2 images listed"
n=$(grep -c '^flat[0-9]\.vmdk$' "$T/ls")
[ "$n" = 8 ] || fail "$n of 8 VMDK descriptors listed: $(grep flat "$T/ls" | tr '\n' ' ')"
! grep -q -- '-flat\.vmdk$' "$T/ls" || fail "extents listed: $(grep -- -flat "$T/ls" | tr '\n' ' ')"
grep -qx packed.img "$T/ls" || fail "the xz'd raw disk is not listed under its inner name"
grep -qx appliance.ova "$T/ls" || fail "the archive is not listed"
! grep -qx notes.txt "$T/ls" || fail "a text file is listed"
[ "$(wc -l <"$T/ls")" = 310 ] || fail "$(wc -l <"$T/ls") entries, expected 310: $(tr '\n' ' ' <"$T/ls")"
[ -d "$M/appliance.ova" ] || fail "the archive of two disks is not a directory"
[ "$(ls "$M/appliance.ova" | tr '\n' ' ')" = "a.qcow2 b.vmdk " ] ||
    fail "the archive holds '$(ls "$M/appliance.ova" | tr '\n' ' ')'"
for v in 1 5 8; do
    [ "$(stat -c %s "$M/flat$v.vmdk")" = $((v << 20)) ] || fail "flat$v.vmdk: wrong size"
done
[ "$(stat -c %s "$M/q250.qcow2")" = 3145728 ] || fail "q250.qcow2: wrong size"
cmp "$T/data" "$M/packed.img" || fail "packed.img differs"

note "the same files in a small directory (scanned on one thread) list alike"
mkdir -p "$T/m2"
mount_vdiskfs "$S" "$T/m2"
ls "$T/m2" >"$T/ls2"
for f in $(cat "$T/ls2"); do
    grep -qx "$f" "$T/ls" || fail "$f is listed in the small directory only"
done
[ "$(tr '\n' ' ' <"$T/ls2")" = "appliance.ova flat3.vmdk packed.img q1.qcow2 " ] ||
    fail "the small directory lists '$(tr '\n' ' ' <"$T/ls2")'"
unmount_vdiskfs "$T/m2"

note "only user.* attributes exist, and ls -l learns that from one file"
# EOPNOTSUPP (not ENODATA) for a name outside user.: ls(1) then stops
# asking every file for security.selinux and system.posix_acl_access.
for name in security.selinux system.posix_acl_access trusted.x; do
    getfattr -n "$name" "$M/q1.qcow2" >"$T/gf" 2>&1 && fail "$name: getfattr succeeded"
    grep -q "Operation not supported" "$T/gf" || fail "$name: $(cat "$T/gf")"
done
getfattr -n user.nosuch "$M/q1.qcow2" >"$T/gf" 2>&1 && fail "user.nosuch: getfattr succeeded"
grep -q "No such attribute" "$T/gf" || fail "user.nosuch: $(cat "$T/gf")"
getfattr --absolute-names -n user.vdiskfs.format --only-values "$M/q1.qcow2" >"$T/gf" 2>&1 || fail "user.vdiskfs.format: $(cat "$T/gf")"
[ "$(cat "$T/gf")" = qcow2 ] || fail "user.vdiskfs.format is '$(cat "$T/gf")'"
mkdir -p "$T/m4"
"$VDISKFS" -d "$D" "$T/m4" >"$T/debug" 2>&1 &
MOUNTS="$MOUNTS $T/m4"
i=0
while ! mountpoint -q "$T/m4" && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
mountpoint -q "$T/m4" || fail "the -d mount did not come up: $(tail -5 "$T/debug")"
ls -l "$T/m4" >/dev/null
n=$(grep -c 'opcode: GETXATTR' "$T/debug" || true)
[ "$n" -lt 20 ] || fail "ls -l of 310 entries sent $n GETXATTRs"
unmount_vdiskfs "$T/m4"

note "a rescan after a change keeps every verdict"
cp "$T/one.qcow2" "$D/new.qcow2"
rm "$D/q7.qcow2"
ls "$M" >"$T/ls3"
grep -qx new.qcow2 "$T/ls3" || fail "a new image is not listed after the rescan"
! grep -qx q7.qcow2 "$T/ls3" || fail "a removed image is still listed"
[ "$(wc -l <"$T/ls3")" = 310 ] || fail "$(wc -l <"$T/ls3") entries after the rescan"
! grep -q -- '-flat\.vmdk$' "$T/ls3" || fail "extents listed after the rescan"
unmount_vdiskfs "$M"
echo PASS
