#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# -o overlay=DIR: every image is writable, none is ever written. Writes go to
# DIR/<image>.qcow2, a qcow2 over the original that qemu-img opens as the
# chain it is, kept for the next mount, refused once the original changed.
. "$TESTLIB"
require_fuse
require_qemu
for c in python3 sfdisk mkfs.ext4 debugfs sha256sum; do
    command -v $c >/dev/null || fail "$c is missing"
done

D=$T/images M=$T/mnt O=$T/overlays
mkdir -p "$D" "$M" "$O" "$T/model"
head -c 4M /dev/urandom >"$T/seed"
for fmt in qcow2 vmdk vhdx vdi; do
    qemu-img convert -f raw -O $fmt "$T/seed" "$D/disk.$fmt"
done
cp "$T/seed" "$D/disk.img"
qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$T/seed" "$D/stream.vmdk"
UNIT=$(dirname "$VDISK")/tests/unit
mkdir -p "$T/dmg"
"$UNIT/test-dmg" gen "$T/dmg" >/dev/null || fail "DMG generator"
cp "$T/dmg/qemu.dmg" "$D/disk.dmg"
# A partitioned disk for writes through .partitions/.
truncate -s 16M "$D/parts.img"
printf 'label: dos\nstart=2048,size=8192,type=83\nstart=10240,size=8192,type=83\n' |
    sfdisk -q "$D/parts.img"
qemu-img convert -f raw -O qcow2 "$T/seed" "$D/snap.qcow2"
qemu-img snapshot -c before "$D/snap.qcow2"
qemu-io -f qcow2 -c "write -P 0x33 0 1M" "$D/snap.qcow2" >/dev/null
(cd "$D" && sha256sum -- * >"$T/sums")
IMAGES="disk.qcow2 disk.vmdk disk.vhdx disk.vdi disk.img stream.vmdk disk.dmg"

note "refused: an overlay directory inside IMAGEDIR, and overlay with rw"
if "$VDISKFS" -o overlay="$D/ov" "$D" "$M" 2>"$T/err"; then
    fusermount3 -u "$M"
    fail "an overlay directory inside IMAGEDIR was accepted"
fi
grep -q "inside the image directory" "$T/err" || fail "overlay inside IMAGEDIR: $(cat "$T/err")"
if "$VDISKFS" -o overlay="$O",rw "$D" "$M" 2>"$T/err"; then
    fusermount3 -u "$M"
    fail "-o overlay,rw was accepted"
fi
grep -q "exclude each other" "$T/err" || fail "overlay with rw: $(cat "$T/err")"

note "writes through the mount land in overlays, the originals stay as they were"
mount_vdiskfs "$D" "$M" -o overlay="$O"
for img in $IMAGES; do
    [ -w "$M/$img" ] || fail "$img is not writable under -o overlay"
    cp "$M/$img" "$T/model/$img"
    for off in 0 1 7; do
        "$VDTEST" pattern $((off + 65)) 65536 >"$T/pat"
        dd if="$T/pat" of="$M/$img" bs=64k seek=$off conv=notrunc,fsync status=none ||
            fail "$img: write at $off"
        dd if="$T/pat" of="$T/model/$img" bs=64k seek=$off conv=notrunc status=none
    done
    cmp "$M/$img" "$T/model/$img" || fail "$img does not read back its writes"
    getfattr -n user.vdiskfs.overlay --only-values "$M/$img" 2>/dev/null | grep -q "$O/$img.qcow2" ||
        fail "$img: user.vdiskfs.overlay does not name the overlay"
done
note "writes through a partition file go to the disk's overlay"
cp "$M/parts.img" "$T/model/parts.img"
"$VDTEST" pattern 90 4096 | dd of="$M/.partitions/parts.img/p2" bs=4096 seek=3 conv=notrunc status=none ||
    fail "writing p2"
"$VDTEST" pattern 90 4096 | dd of="$T/model/parts.img" bs=4096 seek=$((10240 * 512 / 4096 + 3)) \
    conv=notrunc status=none
cmp "$M/parts.img" "$T/model/parts.img" || fail "parts.img after a write through p2"
note "a write to an internal snapshot goes to a copy of it, the image keeps its snapshot"
cp "$M/.snapshots/snap.qcow2/before" "$T/model/before"
[ -w "$M/.snapshots/snap.qcow2/before" ] || fail "the snapshot is not writable under -o overlay"
"$VDTEST" pattern 66 65536 | dd of="$M/.snapshots/snap.qcow2/before" bs=64k seek=2 conv=notrunc status=none ||
    fail "writing the snapshot"
"$VDTEST" pattern 66 65536 | dd of="$T/model/before" bs=64k seek=2 conv=notrunc status=none
cmp "$M/.snapshots/snap.qcow2/before" "$T/model/before" || fail "the snapshot does not read its write"
cmp -n 65536 "$M/snap.qcow2" /dev/zero >/dev/null 2>&1 && fail "the live image changed"
unmount_vdiskfs "$M"
qemu-img check -q "$O/.snapshots/snap.qcow2/before.qcow2" || fail "check of the snapshot's overlay"
qemu-img compare -q -f qcow2 -F raw "$O/.snapshots/snap.qcow2/before.qcow2" "$T/model/before" ||
    fail "the snapshot's overlay differs from the model"
qemu-img convert -l before -O raw "$D/snap.qcow2" "$T/before.raw"
cmp -s "$T/before.raw" "$T/model/before" && fail "the model did not change"
(cd "$D" && sha256sum -c --quiet "$T/sums") || fail "an original image changed under -o overlay"
for img in $IMAGES parts.img; do
    ov="$O/$img.qcow2"
    [ -f "$ov" ] || fail "no overlay for $img"
    qemu-img check -q "$ov" || fail "qemu-img check of $img's overlay"
    qemu-img compare -q -f qcow2 -F raw "$ov" "$T/model/$img" || fail "$img's overlay differs from the model"
done

note "the overlays persist: a new mount shows the writes"
mount_vdiskfs "$D" "$M" -o overlay="$O"
for img in $IMAGES parts.img; do
    cmp "$M/$img" "$T/model/$img" || fail "$img after a remount"
done
cmp "$M/.snapshots/snap.qcow2/before" "$T/model/before" || fail "the snapshot after a remount"
unmount_vdiskfs "$M"

note "an original changed since its overlay was made: the overlay is refused"
touch -d '2001-01-01' "$D/disk.img"
mount_vdiskfs "$D" "$M" -o overlay="$O"
r=$("$VDTEST" errno "$M/disk.img" read)
[ "$r" = EIO ] || fail "an overlay over a changed original was applied ($r)"
getfattr -n user.vdiskfs.error --only-values "$M/disk.img" 2>/dev/null | grep -q "changed" ||
    fail "no reason given for the refused overlay"
cmp "$M/disk.qcow2" "$T/model/disk.qcow2" || fail "the other overlays must still apply"
unmount_vdiskfs "$M"

note "overlay_discard: the writes are gone after the unmount"
mkdir -p "$T/o2"
mount_vdiskfs "$D" "$M" -o overlay="$T/o2",overlay_discard
printf 'discard me' | dd of="$M/disk.vdi" conv=notrunc status=none
unmount_vdiskfs "$M"
[ -z "$(find "$T/o2" -type f)" ] || fail "overlay_discard left $(find "$T/o2" -type f)"

note "an ext4 with a journal to replay mounts with plain mount -o loop; the evidence is unchanged"
truncate -s 32M "$T/fs.raw"
mkfs.ext4 -q -F "$T/fs.raw"
debugfs -w -R "feature needs_recovery" "$T/fs.raw" >/dev/null 2>&1
mkdir -p "$T/ev" "$T/o3" "$T/guest"
qemu-img convert -f raw -O qcow2 "$T/fs.raw" "$T/ev/evidence.qcow2"
sum=$(sha256sum <"$T/ev/evidence.qcow2")
mount_vdiskfs "$T/ev" "$M"
if mount -o loop,ro "$M/evidence.qcow2" "$T/guest" 2>/dev/null; then
    umount "$T/guest"
    note "(this kernel mounts it read-only anyway)"
fi
unmount_vdiskfs "$M"
mount_vdiskfs "$T/ev" "$M" -o overlay="$T/o3"
mount -o loop "$M/evidence.qcow2" "$T/guest" || fail "mount -o loop through the overlay"
echo written >"$T/guest/file" || fail "writing into the guest filesystem"
umount "$T/guest"
unmount_vdiskfs "$M"
[ "$(sha256sum <"$T/ev/evidence.qcow2")" = "$sum" ] || fail "the evidence image changed"
qemu-img check -q "$T/o3/evidence.qcow2.qcow2" || fail "qemu-img check of the evidence overlay"

note "no space for the overlay: ENOSPC reaches the writer, what was synced stays"
mkdir -p "$T/small"
mount -t tmpfs -o size=1M tmpfs "$T/small" || fail "tmpfs"
MOUNTS="$T/small $MOUNTS"
mount_vdiskfs "$D" "$M" -o overlay="$T/small"
"$VDTEST" pattern 77 65536 | dd of="$M/disk.vmdk" bs=64k conv=notrunc,fsync status=none ||
    fail "the first write"
if dd if=/dev/urandom of="$M/disk.vmdk" bs=64k seek=16 count=64 conv=notrunc,fsync status=none \
    2>"$T/dd"; then
    fail "4 MiB into a 1 MiB overlay directory succeeded"
fi
grep -q "No space left" "$T/dd" || fail "expected ENOSPC: $(cat "$T/dd")"
"$VDTEST" pattern 77 65536 >"$T/pat"
cmp -n 65536 "$M/disk.vmdk" "$T/pat" || fail "the synced write is gone after ENOSPC"
unmount_vdiskfs "$M"
rc=0
qemu-img check -q "$T/small/disk.vmdk.qcow2" 2>"$T/chk" || rc=$?
[ $rc = 0 ] || [ $rc = 3 ] || fail "qemu-img check after ENOSPC: $(cat "$T/chk")"
umount "$T/small"

note "SIGKILL while writing to an overlay: qemu-img check accepts it, synced writes stay"
mkdir -p "$T/o4"
mount_vdiskfs "$D" "$M" -o overlay="$T/o4"
pid=$(pgrep -f "vdiskfs.* $M\$" | head -n 1)
i=0
while [ $i -lt 12 ]; do
    "$VDTEST" pattern $((i + 1)) 65536 | dd of="$M/disk.qcow2" bs=64k seek=$((i * 3)) \
        conv=notrunc,fsync status=none || fail "synced write $i"
    i=$((i + 1))
done
dd if=/dev/urandom of="$M/disk.qcow2" bs=64k seek=40 count=2000 conv=notrunc status=none 2>/dev/null &
w=$!
sleep 0.3
kill -KILL "$pid"
wait_gone "$pid"
wait $w 2>/dev/null || true
fusermount3 -uz "$M" 2>/dev/null || umount -l "$M" 2>/dev/null || true
rc=0
qemu-img check -q "$T/o4/disk.qcow2.qcow2" 2>"$T/chk" || rc=$?
[ $rc = 0 ] || [ $rc = 3 ] || fail "qemu-img check of the overlay after SIGKILL: $(cat "$T/chk")"
i=0
while [ $i -lt 12 ]; do
    qemu-io -f qcow2 -c "read -P $((i + 1)) $((i * 3 * 65536)) 64k" "$T/o4/disk.qcow2.qcow2" \
        >"$T/qio" 2>&1 && ! grep -q "fail" "$T/qio" || fail "synced write $i lost after SIGKILL"
    i=$((i + 1))
done
(cd "$D" && sha256sum -c --quiet "$T/sums") || fail "an original changed"
echo PASS
