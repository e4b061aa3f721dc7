#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The daemon's threads at work, briefly, for ThreadSanitizer above all
# (contrib/run-tests.sh runs it under TSan): parallel readers of a
# compressed qcow2 (decode pool, decode cache, read-ahead) and of a
# 4 KiB-cluster qcow2 under a tiny metadata cache (the L2 cache's
# big-reader lock and LRU stamps), while writers allocate and overwrite
# their own quarters of another image and one handle rewrites the
# compressed one as it reads it in order (read-ahead invalidation). Then
# every image
# reads back as qemu-img says and passes qemu-img check.
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D"
MiB=1048576
# Half text (compresses), half noise (does not).
{
    yes "vdiskfs threads: the same line again and again" | head -c $((4 * MiB))
    head -c $((4 * MiB)) /dev/urandom
} >"$T/src.raw"
qemu-img convert -q -f raw -O qcow2 -c "$T/src.raw" "$D/comp.qcow2"
qemu-img convert -q -f raw -O qcow2 -o cluster_size=4096 "$T/src.raw" "$D/small.qcow2"
qemu-img create -q -f qcow2 "$D/rw.qcow2" $((8 * MiB))
cp "$T/src.raw" "$T/comp.expect"
qemu-img create -q -f raw "$T/rw.expect" $((8 * MiB))

mount_vdiskfs "$D" "$M" -o rw,cache_size=64K

# writer IMAGE EXPECT QUARTER BYTE: 2 MiB of BYTE in 64 KiB writes, twice
# (allocating, then overwriting allocated clusters), into the mount and
# into the expected raw file alike.
writer() {
    for pass in 1 2; do
        for f in "$1" "$2"; do
            "$VDTEST" pattern $(($4 + pass)) $((2 * MiB)) |
                dd of="$f" bs=65536 seek=$(($3 * 32)) conv=notrunc status=none ||
                { echo "writer $3 pass $pass: dd of=$f failed"; return 1; }
        done
    done
}

pids=""
for q in 0 1 2 3; do
    writer "$M/rw.qcow2" "$T/rw.expect" $q $((q * 10 + 1)) >"$T/w$q.log" 2>&1 &
    pids="$pids $!"
done
# The compressed image read in order by one handle that writes each next
# chunk before reading it (read-ahead must drop what it read), while the
# other image is read in order too.
"$VDTEST" rwseq "$T/comp.expect" 262144 || fail "rwseq on the expected raw file"
"$VDTEST" rwseq "$M/comp.qcow2" 262144 >"$T/rwseq.log" 2>&1 &
pids="$pids $!"
(for i in 1 2 3; do dd if="$M/rw.qcow2" of=/dev/null bs=$MiB status=none; done) >"$T/seq.log" 2>&1 &
pids="$pids $!"
"$VDTEST" parread "$M/small.qcow2" "$T/src.raw" 8 20 || fail "parallel readers of small.qcow2"
for p in $pids; do
    wait "$p" || fail "a writer or reader failed: $(cat "$T"/w*.log "$T/rwseq.log" "$T/seq.log")"
done
"$VDTEST" parread "$M/comp.qcow2" "$T/comp.expect" 8 20 || fail "parallel readers of comp.qcow2"
"$VDTEST" parread "$M/rw.qcow2" "$T/rw.expect" 8 20 || fail "parallel readers of rw.qcow2"
unmount_vdiskfs "$M"
for img in comp small rw; do
    qemu-img check -q "$D/$img.qcow2" || fail "qemu-img check $img.qcow2"
done
qemu-img convert -f qcow2 -O raw "$D/rw.qcow2" "$T/rw.got"
same_bytes "$T/rw.expect" "$T/rw.got" "rw.qcow2"
qemu-img convert -f qcow2 -O raw "$D/comp.qcow2" "$T/comp.got"
same_bytes "$T/comp.expect" "$T/comp.got" "comp.qcow2"
echo PASS
