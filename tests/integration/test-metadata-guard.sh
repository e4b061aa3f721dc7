#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Writes that would land on metadata, through a real read-write mount:
# VDI and VHD images made by qemu-img, then patched so that a guest block
# sits on the image's own metadata (VDI: the data area on the block map;
# VHD: block 1's BAT entry pointing at the BAT). The write must fail with
# EIO and leave every byte of the file as it was, later writes must fail
# too, reads must go on working, the reason must be logged once and be the
# image's user.vdiskfs.error. With the patch undone, qemu-img finds the
# original data intact (compare, check, convert).
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"

# put32 FILE OFFSET VALUE le|be
put32() {
    python3 - "$@" <<'PY'
import struct, sys
path, off, val, order = sys.argv[1], int(sys.argv[2]), int(sys.argv[3], 0), sys.argv[4]
with open(path, 'r+b') as f:
    f.seek(off)
    f.write(struct.pack('<I' if order == 'le' else '>I', val))
PY
}

# get32 FILE OFFSET le|be
get32() {
    python3 -c "
import struct, sys
b = open(sys.argv[1], 'rb').read()[int(sys.argv[2]):int(sys.argv[2]) + 4]
print(struct.unpack('<I' if sys.argv[3] == 'le' else '>I', b)[0])" "$@"
}

# guest_io FILE BAD GOOD READ: a write at BAD and one at GOOD must fail with
# EIO, READ must still read as 4 KiB of its 0x5a or 0x6b; prints the
# image's user.vdiskfs.error.
guest_io() {
    python3 - "$@" <<'PY'
import errno, os, sys
path, bad, good, rd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_RDWR)
def write(off, what):
    try:
        os.pwrite(fd, b'\xee' * 65536, off)
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EIO:
            sys.exit('%s: %s, expected EIO' % (what, e))
        return
    sys.exit('%s at %d succeeded' % (what, off))
write(bad, 'the write over metadata')
write(good, 'a later write elsewhere')
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
want = b'\x5a' if rd < (1 << 20) else b'\x6b'
if os.pread(fd, 4096, rd) != want * 4096:
    sys.exit('guest offset %d no longer reads as %r' % (rd, want))
try:
    print(os.getxattr(path, 'user.vdiskfs.error').decode())
except OSError as e:
    if e.errno != errno.ENODATA:
        raise
    print('(none)')
PY
}

# check_refused NAME BAD_OFFSET GOOD_OFFSET READ_OFFSET WHY
check_refused() {
    local name=$1 bad=$2 good=$3 rd=$4 why=$5
    cp "$D/$name" "$T/$name.patched"
    "$VDISKFS" -f -o rw "$D" "$M" 2>"$T/$name.log" &
    local pid=$!
    local i=0
    while ! mountpoint -q "$M" && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
    MOUNTS="$MOUNTS $M"
    guest_io "$M/$name" "$bad" "$good" "$rd" >"$T/$name.xattr" || fail "$name: guest I/O (log: $(cat "$T/$name.log"))"
    fusermount3 -u "$M"
    wait $pid || true
    grep -q "$why" "$T/$name.xattr" || fail "$name: user.vdiskfs.error is '$(cat "$T/$name.xattr")', not about $why"
    n=$(grep -c "$name" "$T/$name.log" || true)
    [ "$n" = 1 ] || fail "$name: $n log lines about the image, not one: $(cat "$T/$name.log")"
    grep "will not be written again" "$T/$name.log" | grep -q "$why" ||
        fail "$name: the log does not say $why: $(cat "$T/$name.log")"
    cmp "$T/$name.patched" "$D/$name" >"$T/cmp" 2>&1 || fail "$name: the file changed: $(cat "$T/cmp")"
}

note "VDI: data area moved onto the block map"
qemu-img create -q -f vdi "$D/a.vdi" 8M
qemu-io -f vdi -c "write -P 0x5a 0 1M" -c "write -P 0x6b 2M 1M" "$D/a.vdi" >/dev/null
cp "$D/a.vdi" "$T/a.vdi.orig"
off_blocks=$(get32 "$D/a.vdi" 340 le)   # 0x154
off_data=$(get32 "$D/a.vdi" 344 le)     # 0x158
put32 "$D/a.vdi" 344 "$off_blocks" le
# (guest 2 MiB + 4 KiB: data block 1, now 512 bytes lower, still 0x6b)
check_refused a.vdi 0 $((5 * 1048576)) $((2 * 1048576 + 4096)) "data area at 0x$(printf %x "$off_blocks") overlaps the block map"
put32 "$D/a.vdi" 344 "$off_data" le
qemu-img compare -q -f vdi -F vdi "$T/a.vdi.orig" "$D/a.vdi" || fail "a.vdi: data differs from before"
qemu-img check -q -f vdi "$D/a.vdi" || fail "a.vdi: qemu-img check"
qemu-img convert -f vdi -O raw "$D/a.vdi" "$T/a.raw"
python3 -c "
import sys; b = open(sys.argv[1], 'rb').read()
sys.exit(0 if b[:1 << 20] == b'\x5a' * (1 << 20) and b[2 << 20:3 << 20] == b'\x6b' * (1 << 20) else 1)" "$T/a.raw" ||
    fail "a.vdi: qemu-img convert does not show the data written before"

note "VHD: block 1's BAT entry pointing at the BAT"
qemu-img create -q -f vpc "$D/b.vhd" 8M
qemu-io -f vpc -c "write -P 0x5a 0 1M" -c "write -P 0x6b 2M 1M" "$D/b.vhd" >/dev/null
cp "$D/b.vhd" "$T/b.vhd.orig"
bat=$(python3 -c "
import struct, sys; b = open(sys.argv[1], 'rb').read(); print(struct.unpack('>Q', b[512 + 16:512 + 24])[0])" "$D/b.vhd")
entry1=$(get32 "$D/b.vhd" $((bat + 4)) be)
put32 "$D/b.vhd" $((bat + 4)) $((bat / 512)) be
check_refused b.vhd $((2 * 1048576)) $((6 * 1048576)) 0 "block 1 at 0x$(printf %x "$bat") overlaps the BAT"
put32 "$D/b.vhd" $((bat + 4)) "$entry1" be
qemu-img compare -q -f vpc -F vpc "$T/b.vhd.orig" "$D/b.vhd" || fail "b.vhd: data differs from before"
qemu-img convert -f vpc -O raw "$D/b.vhd" "$T/b.raw"
python3 -c "
import sys; b = open(sys.argv[1], 'rb').read()
sys.exit(0 if b[:1 << 20] == b'\x5a' * (1 << 20) and b[2 << 20:3 << 20] == b'\x6b' * (1 << 20) else 1)" "$T/b.raw" ||
    fail "b.vhd: qemu-img convert does not show the data written before"

note "sound images are still written: the same writes succeed on unpatched copies"
rm -f "$D"/*
cp "$T/a.vdi.orig" "$D/a.vdi"
cp "$T/b.vhd.orig" "$D/b.vhd"
mount_vdiskfs "$D" "$M" -o rw
for f in a.vdi b.vhd; do
    python3 -c "
import os, sys; fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b'\xee' * 65536, 2 << 20); os.fsync(fd)" "$M/$f" || fail "$f: write failed"
done
unmount_vdiskfs "$M"
qemu-img check -q -f vdi "$D/a.vdi" || fail "a.vdi: qemu-img check after a sound write"
for f in a.vdi:vdi b.vhd:vpc; do
    qemu-io -f "${f#*:}" -c "read -P 0xee 2M 64k" -c "read -P 0x5a 0 1M" "$D/${f%:*}" | grep -q "^read" ||
        fail "${f%:*}: data after a sound write"
done
echo "metadata guard: VDI and VHD writes over metadata refused, data intact"
