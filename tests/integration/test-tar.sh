#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# tar and OVA archives: a single-disk OVA (descriptor, manifest with
# SHA256 lines as OVF tools write them, a streamOptimized VMDK), and tar's
# ustar, GNU (a long member name) and pax formats holding a qcow2, made by
# the real tar: each disk is shown under its member's name and reads as
# qemu-img convert -O raw reads the original; the .ovf and .mf are not
# shown, nor a tarball that holds no disk. An archive of two disks is a
# directory named like it, holding them: each counts its own share of the
# archive in st_blocks, vdisk opens ARCHIVE/MEMBER as the mount shows it,
# and two disks alike in name in different folders are both shown (the
# later one as FOLDER_NAME). A manifest that disagrees, an archive cut short and one with a
# corrupted header checksum are listed, fail with EIO and say why in
# user.vdiskfs.error, and the rest of the mount reads on.
. "$TESTLIB"
require_fuse
require_qemu
command -v tar >/dev/null || fail "tar is missing"

D=$T/images M=$T/mnt S=$T/src
mkdir -p "$D" "$M" "$S"
qemu-img create -q -f qcow2 "$T/disk.qcow2" 32M
for w in "0xaa 0 1M" "0x55 7M 3M" "0x11 20M 64K" "0x3c 31M 1M"; do
    set -- $w
    qemu-io -f qcow2 -c "write -P $1 $2 $3" "$T/disk.qcow2" >/dev/null
done
qemu-img convert -f qcow2 -O raw "$T/disk.qcow2" "$T/qcow2.raw"
qemu-img convert -f qcow2 -O vmdk -o subformat=streamOptimized "$T/disk.qcow2" "$S/disk1.vmdk"
qemu-io -f vmdk -c "read -P 0x55 7M 3M" "$S/disk1.vmdk" >/dev/null ||
    fail "qemu-io does not read the pattern back from the VMDK"
qemu-img convert -f vmdk -O raw "$S/disk1.vmdk" "$T/vmdk.raw"

# The OVA as ovftool lays it out: descriptor first, then manifest, disks.
cat >"$S/appliance.ovf" <<'OVF'
<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:href="disk1.vmdk" ovf:id="file1"/></References>
  <DiskSection><Disk ovf:capacity="33554432" ovf:diskId="vmdisk1" ovf:fileRef="file1"/></DiskSection>
</Envelope>
OVF
mf_line() { printf 'SHA256(%s)= %s\n' "$1" "$(sha256sum "$S/$1" | cut -d' ' -f1)"; }
{ mf_line appliance.ovf; mf_line disk1.vmdk; } >"$S/appliance.mf"
(cd "$S" && tar --format=ustar -cf "$D/appliance.ova" appliance.ovf appliance.mf disk1.vmdk)

# A manifest that disagrees with the disk.
mkdir -p "$S/w"
cp "$S/disk1.vmdk" "$S/w/wrong.vmdk"
cp "$S/appliance.ovf" "$S/w/wrong.ovf"
printf 'SHA256(wrong.vmdk)= %064d\n' 0 >"$S/w/wrong.mf"
(cd "$S/w" && tar --format=ustar -cf "$D/wrong.ova" wrong.ovf wrong.mf wrong.vmdk)

# GNU with a name past ustar's 100 bytes, and pax with a long path.
long=$(printf 'n%.0s' $(seq 1 150)).qcow2
mkdir -p "$S/g" "$S/p/$(printf 'd%.0s' $(seq 1 120))"
cp "$T/disk.qcow2" "$S/g/$long"
(cd "$S/g" && tar --format=gnu -cf "$D/gnu.tar" "$long")
cp "$T/disk.qcow2" "$S/p/$(printf 'd%.0s' $(seq 1 120))/pax.qcow2"
(cd "$S/p" && tar --format=pax -cf "$D/pax.tar" "$(printf 'd%.0s' $(seq 1 120))/pax.qcow2")
# A member name that is taken by the first OVA: shown under the archive's.
cp "$D/appliance.ova" "$D/copy.ova"

# Damaged: cut inside the disk, and the disk's header checksum corrupted.
head -c $(($(stat -c %s "$D/appliance.ova") / 2)) "$D/appliance.ova" >"$D/cut.ova"
cp "$D/appliance.ova" "$D/badsum.ova"
hdr=$(($(stat -c %s "$S/appliance.ovf" | awk '{print int(($1 + 511) / 512)}') * 512 + 512 +
    $(stat -c %s "$S/appliance.mf" | awk '{print int(($1 + 511) / 512)}') * 512 + 512))
printf 'X' | dd of="$D/badsum.ova" bs=1 seek=$((hdr + 101)) conv=notrunc status=none
tar -tf "$D/badsum.ova" >/dev/null 2>&1 && fail "tar still reads badsum.ova: not damaged"
# Two disks in one archive: a directory named like it. In multi.ova the
# manifest's digest of the second disk is wrong.
(cd "$S" && cp disk1.vmdk disk2.vmdk && tar --format=ustar -cf "$D/two.ova" disk1.vmdk disk2.vmdk)
mkdir -p "$S/x"
cp "$S/disk1.vmdk" "$S/x/disk1.vmdk"
cp "$T/disk.qcow2" "$S/x/disk2.qcow2"
cp "$S/appliance.ovf" "$S/x/multi.ovf"
{
    printf 'SHA256(disk1.vmdk)= %s\n' "$(sha256sum "$S/x/disk1.vmdk" | cut -d' ' -f1)"
    printf 'SHA256(disk2.qcow2)= %064d\n' 0
} >"$S/x/multi.mf"
(cd "$S/x" && tar --format=pax -cf "$D/multi.ova" multi.ovf multi.mf disk1.vmdk disk2.qcow2)
# Two disks with one base name, in two folders (different content).
mkdir -p "$S/dup/a" "$S/dup/b"
cp "$T/disk.qcow2" "$S/dup/a/disk.qcow2"
qemu-img create -q -f qcow2 "$S/dup/b/disk.qcow2" 16M
qemu-io -f qcow2 -c "write -P 0x77 3M 1M" "$S/dup/b/disk.qcow2" >/dev/null
qemu-img convert -f qcow2 -O raw "$S/dup/b/disk.qcow2" "$T/b.raw"
(cd "$S/dup" && tar --format=ustar -cf "$D/dup.tar" a/disk.qcow2 b/disk.qcow2)
# A disk beside other files, and a tarball of no disk (not an image).
mkdir -p "$S/m/vm" "$S/t"
cp "$T/disk.qcow2" "$S/m/vm/mixed.qcow2"
echo nvram >"$S/m/vm/mixed.nvram"
(cd "$S/m" && tar --format=gnu -cf "$D/mixed.tar" vm/mixed.nvram vm/mixed.qcow2)
echo 'int main;' >"$S/t/main.c" && echo 'all:' >"$S/t/Makefile"
(cd "$S" && tar -cf "$D/sources.tar" t)
# A plain image beside them.
cp "$T/disk.qcow2" "$D/plain.qcow2"
mount_vdiskfs "$D" "$M"

note "each disk shown under its member's name; descriptors and manifests not"
ls "$M" >"$T/ls"
for n in disk1.vmdk wrong.vmdk "$long" pax.qcow2 mixed.qcow2 cut.ova badsum.ova two.ova multi.ova plain.qcow2; do
    grep -qx "$n" "$T/ls" || fail "$n is not listed: $(cat "$T/ls")"
done
for n in wrong.ova gnu.tar pax.tar mixed.tar sources.tar main.c appliance.ovf appliance.mf wrong.mf; do
    grep -qx "$n" "$T/ls" && fail "$n is listed: $(cat "$T/ls")"
done
# The two archives holding disk1.vmdk: one shown so, the other by its own name.
taken=$(grep -cx -e appliance.ova -e copy.ova "$T/ls" || true)
[ "$taken" = 1 ] || fail "appliance.ova and copy.ova: $taken listed by their own name"
other=$(grep -x -e appliance.ova -e copy.ova "$T/ls")
[ "$(getfattr -n user.vdiskfs.format --only-values "$M/disk1.vmdk" 2>/dev/null)" = vmdk ] ||
    fail "disk1.vmdk is not read as vmdk"
[ "$(getfattr -n user.vdiskfs.container --only-values "$M/disk1.vmdk" 2>/dev/null)" = tar ] ||
    fail "disk1.vmdk: user.vdiskfs.container is not tar"
[ "$(getfattr -n user.vdiskfs.format --only-values "$M/pax.qcow2" 2>/dev/null)" = qcow2 ] ||
    fail "pax.qcow2 is not read as qcow2"
"$VDISK" info "$D/appliance.ova" >"$T/info"
grep -q 'container: tar' "$T/info" || fail "vdisk info does not say tar: $(cat "$T/info")"
grep -q 'tar.manifest: appliance.mf' "$T/info" || fail "vdisk info: manifest: $(cat "$T/info")"

note "an archive of several disks is a directory of them"
[ -d "$M/two.ova" ] && [ -d "$M/multi.ova" ] || fail "two.ova and multi.ova are not directories"
[ "$(ls "$M/two.ova" | tr '\n' ' ')" = "disk1.vmdk disk2.vmdk " ] ||
    fail "two.ova holds: $(ls "$M/two.ova")"
[ "$(ls "$M/multi.ova" | tr '\n' ' ')" = "disk1.vmdk disk2.qcow2 " ] ||
    fail "multi.ova holds: $(ls "$M/multi.ova")"
cmp "$T/vmdk.raw" "$M/two.ova/disk1.vmdk" || fail "two.ova/disk1.vmdk differs"
cmp "$T/vmdk.raw" "$M/two.ova/disk2.vmdk" || fail "two.ova/disk2.vmdk differs"
cmp "$T/vmdk.raw" "$M/multi.ova/disk1.vmdk" || fail "multi.ova/disk1.vmdk differs"
[ "$(stat -c %s "$M/multi.ova/disk2.qcow2")" = $((32 << 20)) ] ||
    fail "multi.ova/disk2.qcow2: size $(stat -c %s "$M/multi.ova/disk2.qcow2")"
[ "$(getfattr -n user.vdiskfs.format --only-values "$M/two.ova/disk2.vmdk" 2>/dev/null)" = vmdk ] ||
    fail "two.ova/disk2.vmdk is not read as vmdk"
r=$("$VDTEST" errno "$M/multi.ova/disk2.qcow2" read)
[ "$r" = EIO ] || fail "multi.ova/disk2.qcow2 with a wrong digest: $r, expected EIO"
getfattr -n user.vdiskfs.error --only-values "$M/multi.ova/disk2.qcow2" 2>/dev/null |
    grep -q 'disk2.qcow2 does not match its digest in multi.mf' ||
    fail "no mismatch reason for multi.ova/disk2.qcow2"
[ ! -e "$M/multi.ova/multi.mf" ] && [ ! -e "$M/multi.ova/multi.ovf" ] ||
    fail "multi.ova shows its descriptor or manifest"

note "each disk of an archive counts its own share of it, opened or not"
# share NAME SOURCE_FILE: the member's data in 512-byte blocks.
share() { echo $((($(stat -c %s "$1") + 511) / 512)); }
for round in listed opened; do
    for n in disk1.vmdk disk2.qcow2; do
        want=$(share "$S/x/$n")
        got=$(stat -c %b "$M/multi.ova/$n")
        [ "$got" = "$want" ] || fail "multi.ova/$n ($round): st_blocks $got, expected its share $want"
    done
    cat "$M/multi.ova/disk1.vmdk" >/dev/null
done
archive=$(stat -c %b "$D/multi.ova")
total=$(du -s --block-size=512 "$M/multi.ova" | cut -f1)
[ "$total" -le "$archive" ] || fail "du of multi.ova/ is $total blocks, more than the archive's $archive"
[ "$(stat -c %b "$M/disk1.vmdk")" = "$(stat -c %b "$D/appliance.ova")" ] ||
    fail "a single-disk archive's disk does not count the whole archive"

note "vdisk opens ARCHIVE/MEMBER of a multi-disk archive"
"$VDISK" info "$D/multi.ova/disk1.vmdk" >"$T/info" 2>&1 || fail "vdisk info multi.ova/disk1.vmdk: $(cat "$T/info")"
grep -q "file format: vmdk" "$T/info" || fail "vdisk info multi.ova/disk1.vmdk: $(cat "$T/info")"
grep -q "tar.member: disk1.vmdk" "$T/info" || fail "vdisk info: member: $(cat "$T/info")"
if "$VDISK" info "$D/multi.ova/disk2.qcow2" >"$T/out" 2>&1; then
    fail "vdisk info opened multi.ova/disk2.qcow2 despite its wrong digest"
fi
grep -q "disk2.qcow2 does not match its digest in multi.mf" "$T/out" ||
    fail "vdisk info multi.ova/disk2.qcow2: $(cat "$T/out")"
"$VDISK" info --json "$D/two.ova/disk2.vmdk" >"$T/info.json" || fail "vdisk info --json two.ova/disk2.vmdk"
grep -q "\"actual-size\" : $(($(share "$S/disk2.vmdk") * 512))," "$T/info.json" ||
    fail "vdisk info two.ova/disk2.vmdk: actual-size is not the member's: $(grep actual "$T/info.json")"
(cd "$D" && "$VDISK" map two.ova/disk1.vmdk) >"$T/map" 2>&1 || fail "vdisk map (relative path): $(cat "$T/map")"
if "$VDISK" info "$D/two.ova/disk3.vmdk" >"$T/out" 2>&1; then
    fail "vdisk info opened a member two.ova does not hold"
fi
grep -q "holds no member disk3.vmdk" "$T/out" || fail "vdisk info of a missing member: $(cat "$T/out")"

note "disks alike in name in two folders: both shown"
[ "$(ls "$M/dup.tar" | tr '\n' ' ')" = "b_disk.qcow2 disk.qcow2 " ] || fail "dup.tar holds: $(ls "$M/dup.tar")"
cmp "$T/qcow2.raw" "$M/dup.tar/disk.qcow2" || fail "dup.tar/disk.qcow2 is not a/disk.qcow2"
cmp "$T/b.raw" "$M/dup.tar/b_disk.qcow2" || fail "dup.tar/b_disk.qcow2 is not b/disk.qcow2"
[ "$(getfattr -n user.vdiskfs.tar.member --only-values "$M/dup.tar/b_disk.qcow2" 2>/dev/null)" = b/disk.qcow2 ] ||
    fail "dup.tar/b_disk.qcow2: user.vdiskfs.tar.member"
"$VDISK" info "$D/dup.tar/b_disk.qcow2" | grep -q "virtual size: 16 MiB" || fail "vdisk info dup.tar/b_disk.qcow2"

note "reads equal qemu-img's"
cmp "$T/vmdk.raw" "$M/disk1.vmdk" || fail "disk1.vmdk differs from qemu-img convert -O raw"
cmp "$T/vmdk.raw" "$M/$other" || fail "$other differs"
cmp "$T/qcow2.raw" "$M/$long" || fail "the GNU long-named member differs"
cmp "$T/qcow2.raw" "$M/pax.qcow2" || fail "pax.qcow2 differs"
cmp "$T/qcow2.raw" "$M/mixed.qcow2" || fail "mixed.qcow2 differs"
for o in 30 7 0 21 9; do
    dd if="$M/pax.qcow2" bs=256K skip=$((o * 4 + 1)) count=1 status=none >"$T/got"
    dd if="$T/qcow2.raw" bs=256K skip=$((o * 4 + 1)) count=1 status=none >"$T/want"
    cmp -s "$T/want" "$T/got" || fail "pax.qcow2 at MiB $o.25: $(cmp "$T/want" "$T/got")"
done

note "damaged archives: listed, EIO, a reason; the rest unharmed"
reason() { getfattr -n user.vdiskfs.error --only-values "$M/$1" 2>/dev/null || true; }
for n in wrong.vmdk cut.ova badsum.ova; do
    r=$("$VDTEST" errno "$M/$n" read)
    [ "$r" = EIO ] || fail "$n: $r, expected EIO"
done
reason wrong.vmdk | grep -q 'wrong.vmdk does not match its digest in wrong.mf' ||
    fail "no mismatch reason for wrong.vmdk: $(reason wrong.vmdk)"
reason cut.ova | grep -q 'past the end of the archive' ||
    fail "no reason for cut.ova: $(reason cut.ova)"
reason badsum.ova | grep -q "bad tar header checksum.*'disk1.vmdk'" ||
    fail "no reason for badsum.ova: $(reason badsum.ova)"
cmp "$T/vmdk.raw" "$M/disk1.vmdk" || fail "disk1.vmdk after the damaged ones"
cmp "$T/qcow2.raw" "$M/plain.qcow2" || fail "plain.qcow2 after the damaged ones"
unmount_vdiskfs "$M"
echo PASS
