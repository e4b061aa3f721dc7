#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# .partitions/: every partition of every image as a file of its own, numbered
# as Linux numbers them, equal to the slice of `qemu-img convert -O raw`,
# with sfdisk's view of the table as xattrs; usable by an ordinary user with
# fuse2fs and by mount -o loop without offsets; writable on rw mounts.
. "$TESTLIB"
require_fuse
require_qemu
for c in sfdisk python3 mkfs.ext4 fuse2fs; do
    command -v $c >/dev/null || fail "$c is missing (contrib/install-deps.sh installs it)"
done

D=$T/images M=$T/mnt R=$T/raw
mkdir -p "$D" "$M" "$R"

# mbr.raw: p1 (ext4, bootable), an extended partition holding p5 and p6, p3.
truncate -s 64M "$R/mbr.raw"
printf 'label: dos\nstart=2048,size=20480,type=83,bootable\nstart=22528,size=40960,type=5\nstart=63488,size=2048,type=82\nstart=24576,size=8192,type=83\nstart=34816,size=16384,type=7\n' |
    sfdisk -q "$R/mbr.raw" || fail "sfdisk (MBR)"
mkfs.ext4 -q -F -E offset=$((2048 * 512)) "$R/mbr.raw" 10M
# gpt.raw: named partitions, one of them ext4 holding a file.
truncate -s 64M "$R/gpt.raw"
printf 'label: gpt\nstart=2048,size=8192,name="EFI system",type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=10240,size=40960,name=root\nstart=51200,size=8192,name="caf\303\251"\n' |
    sfdisk -q "$R/gpt.raw" || fail "sfdisk (GPT)"
mkdir -p "$T/tree" && echo "hello from the guest" >"$T/tree/greeting"
mkfs.ext4 -q -F -d "$T/tree" -E offset=$((10240 * 512)) "$R/gpt.raw" 20M
truncate -s 16M "$R/bare.raw"
mkfs.ext4 -q -F "$R/bare.raw"

for fmt in qcow2 vmdk vhdx vdi; do
    qemu-img convert -O $fmt "$R/mbr.raw" "$D/mbr.$fmt"
    qemu-img convert -O $fmt "$R/gpt.raw" "$D/gpt.$fmt"
done
qemu-img convert -O qcow2 "$R/bare.raw" "$D/bare.qcow2"
qemu-img snapshot -c before "$D/gpt.qcow2"

note "vdisk partitions lists what sfdisk sees, numbered the same"
for img in mbr.vmdk gpt.qcow2; do
    "$VDISK" partitions "$D/$img" >"$T/vp.out" || fail "vdisk partitions $img failed"
    sfdisk -J "$R/${img%.*}.raw" | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
ss = t.get("sectorsize", 512)
for p in t["partitions"]:
    if t["label"] == "dos" and p["type"] in ("5", "f", "85"):
        continue  # the extended container is not shown
    n = int(p["node"][len(t["device"]):])
    print("p%d %d %d" % (n, p["start"] * ss, p["size"] * ss))
' | sort >"$T/sf.parts"
    awk '/^p[0-9]/ { print $1, $2, $3 }' "$T/vp.out" | sort >"$T/vp.parts"
    diff "$T/sf.parts" "$T/vp.parts" >"$T/parts.diff" ||
        fail "vdisk partitions $img differs from sfdisk (< sfdisk, > vdisk): $(cat "$T/parts.diff")"
done
grep -q "^p3 .*café$" "$T/vp.out" || fail "vdisk partitions: the GPT name café: $(cat "$T/vp.out")"
"$VDISK" partitions "$D/bare.qcow2" | grep -qx "No partition table." || fail "vdisk partitions of a bare filesystem"

mount_vdiskfs "$D" "$M" -o allow_other
[ -d "$M/.partitions" ] || fail ".partitions is missing"
# check_table IMAGE RAW: every pN against the raw slice and sfdisk --json.
check_table() {
    img=$1 raw=$2
    sfdisk --json "$raw" >"$T/json"
    python3 - "$T/json" "$M/.partitions/$img" "$raw" <<'EOF' || fail "$img: partitions differ from sfdisk"
import json, os, sys
t = json.load(open(sys.argv[1]))['partitiontable']
d, raw = sys.argv[2], open(sys.argv[3], 'rb')
ss = t.get('sectorsize', 512)
want = {}
for p in t['partitions']:
    n = int(p['node'][len(sys.argv[3]):])
    if t['label'] == 'dos' and p['type'] in ('5', 'f', '85'):
        continue  # the extended container is not shown
    want['p%d' % n] = p
got = sorted(os.listdir(d))
if got != sorted(want):
    sys.exit('%s: %s, expected %s' % (d, got, sorted(want)))
def x(f, k):
    return os.getxattr(os.path.join(d, f), 'user.vdiskfs.partition.' + k).decode()
for f, p in want.items():
    start, size = p['start'] * ss, p['size'] * ss
    path = os.path.join(d, f)
    if os.stat(path).st_size != size:
        sys.exit('%s: size %d, expected %d' % (f, os.stat(path).st_size, size))
    raw.seek(start)
    if open(path, 'rb').read() != raw.read(size):
        sys.exit('%s: content differs from the raw slice at %d' % (f, start))
    checks = [('table', 'gpt' if t['label'] == 'gpt' else 'mbr'), ('start', str(start)),
              ('length', str(size))]
    if t['label'] == 'gpt':
        checks += [('type', p['type'].lower()), ('uuid', p['uuid'].lower()),
                   ('name', p.get('name', ''))]
    else:
        checks += [('type', '0x%02x' % int(p['type'], 16)),
                   ('bootable', 'true' if p.get('bootable') else 'false')]
    for k, v in checks:
        if x(f, k) != v:
            sys.exit('%s: xattr %s is %r, sfdisk says %r' % (f, k, x(f, k), v))
EOF
}
for fmt in qcow2 vmdk vhdx vdi; do
    note "$fmt: MBR with logical partitions, GPT with names"
    check_table "mbr.$fmt" "$R/mbr.raw"
    check_table "gpt.$fmt" "$R/gpt.raw"
done

note "holes: a partition's SEEK_DATA map is the disk's, clipped to it"
"$VDTEST" seekmap "$M/gpt.qcow2" >"$T/whole"
"$VDTEST" seekmap "$M/.partitions/gpt.qcow2/p2" >"$T/part"
awk -v s=$((10240 * 512)) -v e=$((51200 * 512)) '{a = $1; b = $1 + $2; if (a < s) a = s; if (b > e) b = e;
    if (a < b) print a - s, b - a}' "$T/whole" >"$T/clipped"
cmp -s "$T/clipped" "$T/part" || fail "p2's data map differs from the disk's: $(head -5 "$T/part")"
[ "$(wc -l <"$T/part")" -ge 1 ] || fail "p2 shows no data"

note "a bare filesystem has no partition table: an empty directory"
[ -d "$M/.partitions/bare.qcow2" ] || fail "bare.qcow2 has no .partitions directory"
[ -z "$(ls "$M/.partitions/bare.qcow2")" ] || fail "bare.qcow2 lists partitions"

note "an ordinary user mounts a partition with fuse2fs, no root, no loop device"
id vdtestuser >/dev/null 2>&1 || useradd -M -s /bin/sh vdtestuser 2>/dev/null || fail "useradd"
require_user_fuse
mkdir -p "$T/guest" "$T/guest-snap"
chown vdtestuser "$T/guest" "$T/guest-snap"
runuser -u vdtestuser -- fuse2fs -o ro,fakeroot "$M/.partitions/gpt.qcow2/p2" "$T/guest" ||
    fail "fuse2fs as vdtestuser"
MOUNTS="$T/guest $MOUNTS"
[ "$(runuser -u vdtestuser -- cat "$T/guest/greeting")" = "hello from the guest" ] ||
    fail "the guest's file through fuse2fs"
fusermount3 -u "$T/guest"
runuser -u vdtestuser -- fuse2fs -o ro,fakeroot "$M/.partitions/.snapshots/gpt.qcow2/before/p2" \
    "$T/guest-snap" || fail "fuse2fs of a snapshot's partition"
MOUNTS="$T/guest-snap $MOUNTS"
runuser -u vdtestuser -- cat "$T/guest-snap/greeting" >/dev/null || fail "the snapshot's guest file"
fusermount3 -u "$T/guest-snap"

note "mount -o loop of a partition file, without offset="
mkdir -p "$T/loop"
mount -o loop,ro "$M/.partitions/mbr.vmdk/p1" "$T/loop" || fail "mount -o loop of p1"
[ -d "$T/loop/lost+found" ] || fail "no lost+found in the loop-mounted partition"
umount "$T/loop"
unmount_vdiskfs "$M"

note "rw: writes land in the image, never past the partition's end"
cp "$D/mbr.qcow2" "$T/before.qcow2"
mount_vdiskfs "$D" "$M" -o rw
"$VDTEST" pattern 165 4096 | dd of="$M/.partitions/mbr.qcow2/p5" bs=4096 seek=1 conv=notrunc status=none ||
    fail "writing p5"
size5=$(stat -c %s "$M/.partitions/mbr.qcow2/p5")
if "$VDTEST" pattern 1 512 | dd of="$M/.partitions/mbr.qcow2/p5" bs=512 seek=$((size5 / 512)) \
    conv=notrunc status=none 2>"$T/dd"; then
    fail "a write past the end of p5 succeeded"
fi
grep -q "No space left" "$T/dd" || fail "a write past the end of p5: $(cat "$T/dd")"
[ "$(stat -c %s "$M/.partitions/mbr.qcow2/p5")" = "$size5" ] || fail "p5 grew"
note "rw: a table rewritten through the whole disk shows on the next lookup"
printf 'label: dos\nstart=2048,size=20480,type=83\nstart=30000,size=4096,type=83\n' |
    sfdisk -q --no-reread --no-tell-kernel "$M/mbr.qcow2" || fail "sfdisk on the mounted raw view"
ls "$M/.partitions/mbr.qcow2" >"$T/after"
[ "$(tr '\n' ' ' <"$T/after")" = "p1 p2 " ] || fail "after the rewrite: $(cat "$T/after")"
unmount_vdiskfs "$M"
qemu-img check -q "$D/mbr.qcow2" || fail "qemu-img check after partition writes"
qemu-img convert -O raw "$D/mbr.qcow2" "$T/mbr-after.raw"
cmp -s -n 4096 -i $(((24576 * 512) + 4096)):0 "$T/mbr-after.raw" /dev/zero &&
    fail "the write through p5 is not in the image"
"$VDTEST" pattern 165 4096 >"$T/pat"
cmp -s -n 4096 -i $(((24576 * 512) + 4096)):0 "$T/mbr-after.raw" "$T/pat" ||
    fail "the write through p5 landed elsewhere"

note "a GPT whose primary header is damaged: the backup is used, and said"
cp "$R/gpt.raw" "$R/bad.raw"
printf 'X' | dd of="$R/bad.raw" bs=1 seek=$((512 + 60)) conv=notrunc status=none
qemu-img convert -O qcow2 "$R/bad.raw" "$D/badgpt.qcow2"
mount_vdiskfs "$D" "$M"
[ "$(ls "$M/.partitions/badgpt.qcow2" | tr '\n' ' ')" = "p1 p2 p3 " ] || fail "backup GPT not used"
getfattr -n user.vdiskfs.error --only-values "$M/.partitions/badgpt.qcow2" 2>/dev/null |
    grep -q backup || fail "no user.vdiskfs.error about the damaged primary GPT"
unmount_vdiskfs "$M"

note "4096-byte sectors: a GPT at LBA 1 of 4 KiB sectors"
truncate -s 64M "$R/4k.raw"
dev=$(losetup -b 4096 -f --show "$R/4k.raw" 2>/dev/null) || fail "losetup -b 4096"
printf 'label: gpt\nstart=256,size=2048,name=four\n' | sfdisk -q "$dev" || { losetup -d "$dev"; fail "sfdisk 4k"; }
losetup -d "$dev"
qemu-img convert -O qcow2 "$R/4k.raw" "$D/4k.qcow2"
mount_vdiskfs "$D" "$M"
[ "$(getfattr -n user.vdiskfs.partition.start --only-values "$M/.partitions/4k.qcow2/p1")" = $((256 * 4096)) ] ||
    fail "4Kn GPT: p1 does not start at 256 * 4096"
[ "$(stat -c %s "$M/.partitions/4k.qcow2/p1")" = $((2048 * 4096)) ] || fail "4Kn GPT: p1 size"
unmount_vdiskfs "$M"
echo PASS
