#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Corruption met at read time is logged once and readable as
# user.vdiskfs.error; names read from images cannot forge log lines.
. "$TESTLIB"
require_fuse
require_qemu
command -v python3 >/dev/null || fail "python3 is missing"

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
qemu-img create -q -f qcow2 "$D/a.qcow2" 64M
qemu-io -f qcow2 -c "write -P 0x5a 0 64k" "$D/a.qcow2" >/dev/null
qemu-img create -q -f qcow2 "$D/b.qcow2" 64M
python3 - "$D" <<'EOF'
import struct, sys
d = sys.argv[1]
# a.qcow2: its first L1 entry points 1 TiB past the end of the file.
b = bytearray(open(d + '/a.qcow2', 'rb').read())
l1 = struct.unpack_from('>Q', b, 40)[0]
struct.pack_into('>Q', b, l1, (1 << 63) | (1 << 40))
open(d + '/a.qcow2', 'wb').write(b)
# b.qcow2: a backing file name with a newline and an escape sequence.
b = bytearray(open(d + '/b.qcow2', 'rb').read())
name = b'x.qcow2\nvdiskfs: info: all images verified OK\x1b[2J'
b[0x400:0x400 + len(name)] = name
struct.pack_into('>QI', b, 8, 0x400, len(name))
open(d + '/b.qcow2', 'wb').write(b)
EOF
"$VDISKFS" -f "$D" "$M" 2>"$T/log" &
pid=$!
MOUNTS="$M"
i=0
until mountpoint -q "$M"; do
    i=$((i + 1))
    [ $i -lt 100 ] || fail "vdiskfs did not mount"
    sleep 0.05
done
ls -l "$M" >/dev/null
for k in 1 2 3; do
    r=$("$VDTEST" errno "$M/a.qcow2" read)
    [ "$r" = EIO ] || fail "read of a cluster behind a bad L1 entry: $r, expected EIO"
done
err=$(getfattr -n user.vdiskfs.error --only-values "$M/a.qcow2" 2>/dev/null || true)
echo "$err" | grep -q "a.qcow2" || fail "user.vdiskfs.error of a.qcow2 is '$err'"
cat "$M/b.qcow2" >/dev/null 2>&1 || true # its backing file is missing: logged
fusermount3 -u "$M"
wait $pid || true
n=$(grep -c "a.qcow2" "$T/log" || true)
[ "$n" = 1 ] || fail "a.qcow2's read error logged $n times, expected once: $(cat "$T/log")"
grep -q '^vdiskfs: info: all images verified OK' "$T/log" && fail "a name in an image forged a log line"
grep -q "$(printf '\033')" "$T/log" && fail "an escape character reached the log"
grep -q 'x.qcow2\\x0avdiskfs' "$T/log" || fail "the escaped backing name is not in the log: $(cat "$T/log")"
echo PASS
