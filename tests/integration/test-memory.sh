#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Hostile headers cannot make a directory of images exhaust the host: a
# listing reads headers only, and the tables of the images that are opened
# stay within -o mem_budget (idle images close to make room; one that still
# does not fit fails to open, with the reason). Repro 06: tiny sparse qcow2
# files whose headers ask for 32 MiB L1 tables; a budget of 224 MiB holds
# seven of those. Two xz streams whose dictionaries do not both fit: a
# read closes the idle image that holds the other.
. "$TESTLIB"
require_fuse
require_qemu
command -v python3 >/dev/null || fail "python3 is missing"

D=$T/images M=$T/mnt
N=${MEMORY_TEST_IMAGES:-2000}
mkdir -p "$D" "$M"
qemu-img create -q -f qcow2 "$T/tpl.qcow2" 64M
python3 - "$T/tpl.qcow2" "$D" "$N" <<'EOF'
import os, struct, sys
tpl, d, n_img = sys.argv[1], sys.argv[2], int(sys.argv[3])
b = bytearray(open(tpl, 'rb').read())
n = 4 << 20                                   # L1 entries: 32 MiB
struct.pack_into('>I', b, 36, n)
struct.pack_into('>Q', b, 24, n << 29)        # 2 PiB virtual
l1 = struct.unpack_from('>Q', b, 40)[0]
for i in range(n_img):
    p = '%s/d%05d.qcow2' % (d, i)
    open(p, 'wb').write(b)
    os.truncate(p, l1 + n * 8 + 65536)        # sparse: the L1 is a hole
EOF
# ASan keeps freed blocks in a quarantine (256 MiB by default), which
# would count freed tables as held ones.
if ldd "$VDISKFS" 2>/dev/null | grep -q 'libasan'; then
    ASAN_OPTIONS="${ASAN_OPTIONS:-}:quarantine_size_mb=4"
    export ASAN_OPTIONS
fi
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

note "ls -l of $N hostile images: headers only, RSS bounded"
mount_vdiskfs "$D" "$M" -o mem_budget=224M,idle_timeout=0
pid=$(pgrep -f "vdiskfs.* $M\$" | head -n 1)
start=$(date +%s%N)
[ "$(ls -l "$M" | grep -c qcow2)" = "$N" ] || fail "not all $N images are listed"
ms=$((($(date +%s%N) - start) / 1000000))
kb=$(rss "$pid")
note "listing took $ms ms, RSS $kb KiB"
[ "$kb" -lt $((256 * 1024)) ] || fail "RSS after listing $N images: $kb KiB"
[ "$(stat -c %s "$M/d00000.qcow2")" = $((4 << 49)) ] || fail "the virtual size is not the header's"

note "opening 40 of them in turn: tables within the budget, idle ones closed to make room"
i=0
while [ $i -lt 40 ]; do
    f=$(printf '%s/d%05d.qcow2' "$M" $i)
    head -c 4096 "$f" >/dev/null || fail "reading image $i"
    i=$((i + 1))
done
kb=$(rss "$pid")
note "after 40 opens RSS $kb KiB"
[ "$kb" -lt $((384 * 1024)) ] || fail "RSS after opening 40 images with 32 MiB tables: $kb KiB"

note "more open at once than the budget holds: the one that does not fit fails, with the reason"
exec 3<"$M/d00001.qcow2" 4<"$M/d00002.qcow2" 5<"$M/d00003.qcow2" 6<"$M/d00004.qcow2" \
    7<"$M/d00005.qcow2" 8<"$M/d00006.qcow2" 9<"$M/d00007.qcow2"
r=$("$VDTEST" errno "$M/d00100.qcow2" read)
[ "$r" = EIO ] || fail "an eighth 32 MiB table under a 224 MiB budget: $r, expected EIO"
getfattr -n user.vdiskfs.error --only-values "$M/d00100.qcow2" 2>/dev/null | grep -q "memory budget" ||
    fail "no reason given for the refused open"
exec 3<&- 4<&- 5<&- 6<&- 7<&- 8<&- 9<&-
sleep 1.2 # the kernel's RELEASE of those handles is asynchronous
r=$("$VDTEST" errno "$M/d00100.qcow2" read)
[ "$r" = OK ] || fail "after the others closed, image 100 still does not open: $r"
unmount_vdiskfs "$M"

note "xz streams over the budget: a read makes room by closing the images nobody uses"
command -v xz >/dev/null || fail "xz is missing (contrib/install-deps.sh)"
X=$T/xz
mkdir -p "$X"
# 80 MiB in one xz block (above what is cached whole: read as a stream),
# with a 64 MiB dictionary, charged to the budget while the stream lives:
# a 100 MiB budget holds one such stream, not two.
python3 - "$T/stamped" <<'EOF'
import struct, sys
with open(sys.argv[1], "wb") as f:
    for off in range(0, 80 << 20, 4096):
        f.write(struct.pack("<Q", off) + bytes(4088))
EOF
for n in a b; do
    xz -0 -T1 --lzma2=dict=64MiB -c "$T/stamped" >"$X/$n.img.xz"
done
mount_vdiskfs "$X" "$M" -o mem_budget=100M
cmp "$M/a.img" "$T/stamped" || fail "a.img differs from what was compressed"
sleep 1.2 # the RELEASE of a.img's handle is asynchronous
# a.img stays open (idle_timeout) with its stream: b.img's stream fits
# only once a.img is closed.
cmp "$M/b.img" "$T/stamped" || fail "b.img does not read while idle a.img holds the budget"
unmount_vdiskfs "$M"
echo PASS
