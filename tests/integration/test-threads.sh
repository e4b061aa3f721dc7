#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The daemon's threads at work, briefly, for ThreadSanitizer above all
# (contrib/run-tests.sh runs it under TSan): parallel readers of a
# compressed qcow2 (decode pool, decode cache, read-ahead) and of a
# 4 KiB-cluster qcow2 under a tiny metadata cache (the L2 cache's
# big-reader lock and LRU stamps), while writers allocate and overwrite
# their own quarters of another image and one handle rewrites the
# compressed one as it reads it in order (read-ahead invalidation). The
# same for the drivers on the block layer's table cache (QED, qcow v1,
# VHDX's BAT, qcow2's L2 tables and refcount blocks, VMDK's grain
# tables):
# many more tables than the tiny cache holds, written at scattered
# offsets by parallel writers while others read them. Then every image
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
# 64 steps of 4 MiB: 32 QED tables of 16 KiB (8 MiB each; the cache
# holds 4), 64 qcow tables of 4 KiB (2 MiB each; it holds 16). qemu-img
# cannot open QED images of table_size=1. qcow2 with 512-byte clusters
# and 64-bit refcounts: 512 L2 tables of 32 KiB of disk each (two per
# write; the cache holds 128) and a refcount block per 64 host clusters
# (the 16 MiB written need 512 of them; the cache holds 64).
SPARSE=$((256 * MiB))
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 "$D/tc.qcow2" $SPARSE
qemu-img create -q -f raw "$T/tc.qcow2.expect" $SPARSE
qemu-img create -q -f qed -o cluster_size=4096,table_size=4 "$D/tc.qed" $SPARSE
qemu-img create -q -f qcow "$D/tc.qcow" $SPARSE
qemu-img create -q -f raw "$T/tc.qed.expect" $SPARSE
qemu-img create -q -f raw "$T/tc.qcow.expect" $SPARSE
qemu-img create -q -f raw "$T/rw.expect" $((8 * MiB))
# VHDX: 1 MiB blocks over 64 GiB, a BAT of 8 chunks of 64 KiB (8 GiB of
# disk each; the cache holds 4), written at 1 GiB steps.
qemu-img create -q -f vhdx -o block_size=1M "$D/tc.vhdx" 64G
qemu-img create -q -f raw "$T/tc.vhdx.expect" 64G
# VMDK: 64 KiB grains, 512 per grain table (32 MiB of disk, 2 KiB of
# table). monolithicSparse over 2 GiB: 64 tables, written at 32 MiB
# steps (the cache holds 32); twoGbMaxExtentSparse over 4 GiB: two
# extents of 64 tables, written at 64 MiB steps (each extent's cache
# holds 16).
qemu-img create -q -f vmdk -o subformat=monolithicSparse "$D/tc.vmdk" 2G
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse "$D/tc2.vmdk" 4G
qemu-img create -q -f raw "$T/tc.vmdk.expect" 2G
qemu-img create -q -f raw "$T/tc2.vmdk.expect" 4G

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

# scatter IMAGE EXPECT Q [STEP]: 64 KiB writes at every STEP (in 64 KiB
# units; 4 MiB by default), shifted by Q quarters of it, twice, so that the four writers share every table; each write is
# read back at once with O_DIRECT (past the page cache: through the
# driver's tables, most likely still cached, as the write left them).
scatter() {
    p=$T/pat-${1##*/}-$3 g=$T/got-${1##*/}-$3
    for pass in 1 2; do
        "$VDTEST" pattern $(($3 + pass * 4)) 65536 >"$p"
        i=0
        while [ $i -lt 64 ]; do
            at=$((i * ${4:-64} + $3 * ${4:-64} / 4))
            for f in "$1" "$2"; do
                dd if="$p" of="$f" bs=65536 seek=$at conv=notrunc status=none ||
                    { echo "scatter $3 pass $pass: dd of=$f failed at $i"; return 1; }
            done
            dd if="$1" bs=65536 skip=$at count=1 iflag=direct status=none >"$g"
            cmp -s "$g" "$p" ||
                { echo "scatter $3 pass $pass: $1 at $((at * 65536)) does not read back"; return 1; }
            i=$((i + 1))
        done
    done
}

# Held open for writing throughout: readers then share the writable
# image instead of keeping the writers' reopen busy.
exec 7<>"$M/tc.qed" 8<>"$M/tc.qcow" 9<>"$M/tc.vhdx" 6<>"$M/tc.qcow2" 5<>"$M/tc.vmdk" 4<>"$M/tc2.vmdk"
pids=""
for img in tc.qed tc.qcow tc.vhdx tc.qcow2 tc.vmdk tc2.vmdk; do
    step=64 count=
    case $img in
    tc.vhdx) step=16384 ;;
    tc.vmdk) step=512 count=512 ;;
    tc2.vmdk) step=1024 count=512 ;;
    esac
    for q in 0 1 2 3; do
        scatter "$M/$img" "$T/$img.expect" $q $step >"$T/s$img$q.log" 2>&1 &
        pids="$pids $!"
    done
    [ $img = tc.vhdx ] && continue # 64 GiB: read back by qemu-img compare below
    # The VMDK ones: their first 512 MiB (16 and 8 tables), read in order.
    (for i in 1 2; do dd if="$M/$img" of=/dev/null bs=$MiB ${count:+count=$count} status=none; done) >"$T/seq$img.log" 2>&1 &
    pids="$pids $!"
done
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
    wait "$p" || fail "a writer or reader failed: $(cat "$T"/w*.log "$T"/s*.log "$T/rwseq.log" "$T"/seq*.log)"
done
"$VDTEST" parread "$M/comp.qcow2" "$T/comp.expect" 8 20 || fail "parallel readers of comp.qcow2"
"$VDTEST" parread "$M/rw.qcow2" "$T/rw.expect" 8 20 || fail "parallel readers of rw.qcow2"
exec 7>&- 8>&- 9>&- 6>&- 5>&- 4>&-
for img in tc.qed tc.qcow tc.qcow2 tc.vmdk tc2.vmdk; do
    "$VDTEST" parread "$M/$img" "$T/$img.expect" 8 4 || fail "parallel readers of $img"
done
unmount_vdiskfs "$M"
# qemu-img check reports one leaked cluster for this layout (exit 3) even
# when qemu-io itself writes it: a miscount of QEMU's, since a walk of
# the file finds every cluster used exactly once. So QEMU's check must
# find no corruption, and vdiskfs's own walk (which counts leaks too)
# none at all.
rc=0
qemu-img check "$D/tc.qed" >"$T/check" 2>&1 || rc=$?
[ $rc = 0 ] || [ $rc = 3 ] || fail "qemu-img check tc.qed: exit $rc: $(cat "$T/check")"
"$VDISK" check "$D/tc.qed" >"$T/vcheck" 2>&1 || fail "vdisk check tc.qed: $(cat "$T/vcheck")"
grep -qi "leak" "$T/vcheck" && fail "vdisk check tc.qed finds leaks: $(cat "$T/vcheck")"
# The qcow2 image really outgrew both caches (see above): its host file
# spans far more than 64 refcount blocks' worth (2 MiB).
qemu-img check -q "$D/tc.qcow2" || fail "qemu-img check tc.qcow2"
end=$(qemu-img check --output=json "$D/tc.qcow2" | sed -n 's/.*"image-end-offset": *\([0-9]*\).*/\1/p')
[ "${end:-0}" -gt $((8 * MiB)) ] || fail "tc.qcow2 ends at ${end:-?}: fewer tables than meant"
for img in tc.qed tc.qcow tc.qcow2; do
    qemu-img convert -O raw "$D/$img" "$T/$img.got"
    same_bytes "$T/$img.expect" "$T/$img.got" "$img"
done
for img in comp small rw; do
    qemu-img check -q "$D/$img.qcow2" || fail "qemu-img check $img.qcow2"
done
qemu-img check -q "$D/tc.vhdx" || fail "qemu-img check tc.vhdx"
# VMDK: the tables the tiny caches evicted and loaded again hold every
# write; qemu-img compares through block status (the holes cost nothing).
for img in tc.vmdk tc2.vmdk; do
    qemu-img check -q "$D/$img" || fail "qemu-img check $img"
    qemu-img compare -q -f vmdk -F raw "$D/$img" "$T/$img.expect" >"$T/cmp-$img" 2>&1 ||
        fail "$img does not hold what was written: $(qemu-img compare -f vmdk -F raw "$D/$img" "$T/$img.expect" 2>&1 | head -n 3)"
done
[ -e "$D/tc2-s002.vmdk" ] || fail "tc2.vmdk has no second extent: $(ls "$D")"
# 64 GiB, which qemu-img would read whole to compare (QEMU's VHDX gives
# no block status): QEMU reads back every write's last pattern instead,
# and zeros between two of them.
: >"$T/vhdx.cmds"
for q in 0 1 2 3; do
    i=0
    while [ $i -lt 64 ]; do
        at=$(((i * 16384 + q * 4096) * 65536))
        echo "read -q -P $((q + 8)) $at 65536" >>"$T/vhdx.cmds"
        echo "read -q -P 0 $((at + 65536)) 65536" >>"$T/vhdx.cmds"
        i=$((i + 1))
    done
done
qemu-io -f vhdx -r "$D/tc.vhdx" <"$T/vhdx.cmds" 2>&1 | sed 's/qemu-io> //g' | grep . >"$T/vhdx.out" || true
[ ! -s "$T/vhdx.out" ] || fail "tc.vhdx does not hold what was written: $(head -n 5 "$T/vhdx.out")"
qemu-img convert -f qcow2 -O raw "$D/rw.qcow2" "$T/rw.got"
same_bytes "$T/rw.expect" "$T/rw.got" "rw.qcow2"
qemu-img convert -f qcow2 -O raw "$D/comp.qcow2" "$T/comp.got"
same_bytes "$T/comp.expect" "$T/comp.got" "comp.qcow2"
echo PASS
