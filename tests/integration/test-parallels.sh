#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Parallels through a real mount: .hds images made by qemu-img (cluster
# sizes) compared with qemu-img convert/map; the Parallels Desktop bundles
# from $TESTDATA shown as one raw file each; bundles built here with two
# storages and with a snapshot layer (.snapshots/); random writes checked
# against models and by qemu-img check and compare; parallel readers.
# (SIGKILL: test-vdi-parallels-kill.sh.)
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
MiB=1048576
BASE_GUID="{5fbaabe3-6958-40ff-92a7-860e329aab41}"
DELTA_GUID="{11111111-2222-3333-4444-555555555555}"

qio() {
    local img=$1
    shift
    for c in "$@"; do
        qemu-io -f parallels -c "$c" "$img" >/dev/null || fail "qemu-io $c $img"
    done
}

# random_writes MOUNTED MODEL SIZE COUNT SEED: the same random data into both.
random_writes() {
    local got=$1 model=$2 size=$3 count=$4 seed=$5
    awk -v size="$size" -v n="$count" -v seed="$seed" 'BEGIN { srand(seed); for (i = 0; i < n; i++) {
            len = (i % 3 == 0) ? int(rand() * 1572864) + 1 : int(rand() * 70000) + 1;
            if (len > size) len = size;
            off = int(rand() * (size - len));
            if (i % 5 == 0) off -= off % 4096;
            print off, len } }' >"$T/writes"
    while read -r off len; do
        head -c "$len" /dev/urandom >"$T/chunk"
        dd if="$T/chunk" of="$got" bs=65536 oflag=seek_bytes seek="$off" conv=notrunc status=none ||
            fail "write $len bytes at $off into $got"
        dd if="$T/chunk" of="$model" bs=65536 oflag=seek_bytes seek="$off" conv=notrunc status=none
    done <"$T/writes"
}

# check_hds FILE WHAT: qemu-img check finds no errors (and no leaks).
check_hds() {
    qemu-img check -f parallels "$1" >"$T/check.out" 2>&1 || fail "qemu-img check $2: $(cat "$T/check.out")"
}

# descriptor NAME DISK_SECTORS STORAGES SNAPSHOTS: a DiskDescriptor.xml.
descriptor() {
    cat <<XML
<?xml version='1.0' encoding='UTF-8'?>
<Parallels_disk_image Version="1.0">
    <Disk_Parameters>
        <Disk_size>$2</Disk_size>
        <Cylinders>400</Cylinders>
        <PhysicalSectorSize>4096</PhysicalSectorSize>
        <LogicSectorSize>512</LogicSectorSize>
        <Heads>16</Heads>
        <Sectors>32</Sectors>
        <Padding>0</Padding>
        <Encryption>
            <Engine>{00000000-0000-0000-0000-000000000000}</Engine>
            <Data></Data>
            <Salt></Salt>
        </Encryption>
        <UID>{0610bb35-447e-4aae-aa79-f1571d969081}</UID>
        <Name>$1</Name>
    </Disk_Parameters>
    <StorageData>
$3
    </StorageData>
    <Snapshots>
$4
    </Snapshots>
</Parallels_disk_image>
XML
}

note "images made by qemu-img, default and other cluster sizes"
qemu-img create -q -f parallels "$D/empty.hds" 3M
qemu-img create -q -f parallels "$D/big.hds" 12M
qio "$D/big.hds" "write -P 0x11 0 4k" "write -P 0x22 1536k 1M" "write -P 0x33 5M 512" \
    "write -P 0x44 12287k 1k"
qemu-img create -q -f parallels -o cluster_size=64k "$D/c64k.hds" 5M
qio "$D/c64k.hds" "write -P 0x55 100k 200k" "write -P 0x66 4M 64k"
qemu-img create -q -f parallels -o cluster_size=4k "$D/c4k.hds" 2M
qio "$D/c4k.hds" "write -P 0x77 0 1" "write -P 0x78 1000k 20k"

note "the expected content of the Parallels Desktop bundles: MiB i filled with byte i"
truncate -s 100M "$T/e100"
i=1
while [ $i -lt 100 ]; do
    echo "write -P $i ${i}M 1M"
    i=$((i + 1))
done | qemu-io -f raw "$T/e100" >/dev/null || fail "qemu-io writing the expected bundle content"
[ "$(od -An -tu1 -j $((99 * MiB + 5)) -N 1 "$T/e100" | tr -d ' ')" = 99 ] || fail "expected content"

HAVE_REAL=false
if [ -d "$TESTDATA/expanding.hdd" ] && [ -d "$TESTDATA/plain.hdd" ]; then
    HAVE_REAL=true
    for b in expanding plain; do
        cp -r "$TESTDATA/$b.hdd" "$D/"
        chmod -R u+w "$D/$b.hdd"
        for gz in "$D/$b.hdd"/*.gz; do
            gunzip "$gz"
        done
    done
    EXP_HDS="$D/expanding.hdd/expanding.hdd.0.$BASE_GUID.hds"
    [ -f "$EXP_HDS" ] || fail "no $EXP_HDS in the test data"
    # The bundle's .hds alone: an old-magic ("WithoutFreeSpace") image.
    cp "$EXP_HDS" "$D/old-magic.hds"

    note "a bundle with two storages: 40 MiB expanding, 60 MiB plain"
    mkdir "$D/split.hdd"
    head -c $((40 * MiB)) "$T/e100" >"$T/piece0"
    qemu-img convert -f raw -O parallels "$T/piece0" "$D/split.hdd/split.hdd.0.$BASE_GUID.hds"
    tail -c $((60 * MiB)) "$T/e100" >"$D/split.hdd/split.hdd.1.$BASE_GUID.hds"
    descriptor split 204800 "
        <Storage><Start>0</Start><End>81920</End><Blocksize>2048</Blocksize>
            <Image><GUID>$BASE_GUID</GUID><Type>Compressed</Type><File>split.hdd.0.$BASE_GUID.hds</File></Image>
        </Storage>
        <Storage><Start>81920</Start><End>204800</End><Blocksize>2048</Blocksize>
            <Image><GUID>$BASE_GUID</GUID><Type>Plain</Type><File>split.hdd.1.$BASE_GUID.hds</File></Image>
        </Storage>" "
        <Shot><GUID>$BASE_GUID</GUID><ParentGUID>{00000000-0000-0000-0000-000000000000}</ParentGUID></Shot>" \
        >"$D/split.hdd/DiskDescriptor.xml"

    note "a bundle with a snapshot: the real image as base, a qemu-img delta on top"
    mkdir "$D/snap.hdd"
    cp "$EXP_HDS" "$D/snap.hdd/snap.hdd.0.$BASE_GUID.hds"
    DELTA="$D/snap.hdd/snap.hdd.0.$DELTA_GUID.hds"
    qemu-img create -q -f parallels "$DELTA" 100M
    qio "$DELTA" "write -P 0xee 3076k 8k" "write -P 0xdd 50M 1M" "write -P 0xcc 101888k 512k"
    descriptor snap 204800 "
        <Storage><Start>0</Start><End>204800</End><Blocksize>2048</Blocksize>
            <Image><GUID>$BASE_GUID</GUID><Type>Compressed</Type><File>snap.hdd.0.$BASE_GUID.hds</File></Image>
            <Image><GUID>$DELTA_GUID</GUID><Type>Compressed</Type><File>snap.hdd.0.$DELTA_GUID.hds</File></Image>
        </Storage>" "
        <TopGUID>$DELTA_GUID</TopGUID>
        <Shot><GUID>$BASE_GUID</GUID><ParentGUID>{00000000-0000-0000-0000-000000000000}</ParentGUID></Shot>
        <Shot><GUID>$DELTA_GUID</GUID><ParentGUID>$BASE_GUID</ParentGUID></Shot>" \
        >"$D/snap.hdd/DiskDescriptor.xml"
    # Expected: the base with the delta's allocated clusters (whole clusters) on top.
    cp "$T/e100" "$T/snap.expect"
    qemu-img convert -O raw "$DELTA" "$T/delta.raw"
    qemu_data_map "$DELTA" >"$T/delta.map"
    while read -r off len; do
        dd if="$T/delta.raw" of="$T/snap.expect" bs=65536 iflag=skip_bytes,count_bytes \
            oflag=seek_bytes skip="$off" seek="$off" count="$len" conv=notrunc status=none
    done <"$T/delta.map"
    [ "$(wc -l <"$T/delta.map")" -ge 3 ] || fail "delta map: $(cat "$T/delta.map")"
    cp "$D/snap.hdd/snap.hdd.0.$BASE_GUID.hds" "$T/base.orig"
else
    note "no Parallels bundles in \$TESTDATA: bundle tests use qemu-img images only"
    mkdir "$D/q.hdd"
    qemu-img convert -f raw -O parallels "$T/e100" "$D/q.hdd/q.hds"
    descriptor q 204800 "
        <Storage><Start>0</Start><End>204800</End>
            <Image><GUID>$BASE_GUID</GUID><Type>Compressed</Type><File>q.hds</File></Image>
        </Storage>" "" >"$D/q.hdd/DiskDescriptor.xml"
fi

mount_vdiskfs "$D" "$M"

note "read-only: .hds images equal qemu-img's view"
for n in empty big c64k c4k; do
    compare_to_qemu "$D/$n.hds" "$M/$n.hds"
done
[ -z "$(seek_map "$M/empty.hds")" ] || fail "empty.hds has data: $(seek_map "$M/empty.hds")"
getfattr --absolute-names -n user.vdiskfs.format --only-values "$M/big.hds" | grep -qx parallels ||
    fail "xattr format of big.hds"

if $HAVE_REAL; then
    compare_to_qemu "$D/old-magic.hds" "$M/old-magic.hds"
    note "bundles are shown as one raw file, with the content the README gives"
    for b in expanding plain split snap; do
        [ -f "$M/$b.hdd" ] || fail "$b.hdd is not shown as a regular file: $(ls -la "$M")"
        [ "$(stat -c %s "$M/$b.hdd")" = $((100 * MiB)) ] || fail "$b.hdd size $(stat -c %s "$M/$b.hdd")"
        getfattr --absolute-names -n user.vdiskfs.format --only-values "$M/$b.hdd" |
            grep -qx parallels-bundle || fail "xattr format of $b.hdd"
    done
    for b in expanding plain split; do
        same_bytes "$T/e100" "$M/$b.hdd" "$b.hdd"
    done
    # The expanding image leaves MiB 0 (zeros) unallocated, like qemu-img map of its .hds.
    qemu_data_map "$EXP_HDS" >"$T/qmap"
    seek_map "$M/expanding.hdd" >"$T/vmap"
    diff "$T/qmap" "$T/vmap" >/dev/null || fail "expanding.hdd map: $(cat "$T/vmap") vs qemu $(cat "$T/qmap")"
    [ "$(seek_map "$M/plain.hdd")" = "0 $((100 * MiB))" ] || fail "plain.hdd map: $(seek_map "$M/plain.hdd")"
    [ "$(seek_map "$M/split.hdd")" = "$MiB $((99 * MiB))" ] || fail "split.hdd map: $(seek_map "$M/split.hdd")"
    [ "$(du -k "$M/plain.hdd" | cut -f1)" -ge 100000 ] || fail "plain.hdd du: $(du -k "$M/plain.hdd")"

    note "the snapshot bundle: current state and .snapshots/"
    same_bytes "$T/snap.expect" "$M/snap.hdd" "snap.hdd (current state)"
    "$VDTEST" parread "$M/snap.hdd" "$T/snap.expect" 8 40 || fail "parallel readers of snap.hdd got wrong data"
    [ "$(seek_map "$M/snap.hdd")" = "$MiB $((99 * MiB))" ] || fail "snap.hdd map: $(seek_map "$M/snap.hdd")"
    ls "$M/.snapshots/snap.hdd/" >"$T/snaps" || fail "no .snapshots/snap.hdd"
    [ "$(cat "$T/snaps")" = "$BASE_GUID" ] || fail "snapshots of snap.hdd: $(cat "$T/snaps")"
    same_bytes "$T/e100" "$M/.snapshots/snap.hdd/$BASE_GUID" "snapshot $BASE_GUID of snap.hdd"
    [ ! -e "$M/.snapshots/expanding.hdd" ] || fail "expanding.hdd has snapshots"
    "$VDISK" info "$D/snap.hdd" >"$T/info" || fail "vdisk info snap.hdd"
    grep -q "layers: 2" "$T/info" || fail "vdisk info snap.hdd: $(cat "$T/info")"
else
    same_bytes "$T/e100" "$M/q.hdd" "q.hdd"
fi
unmount_vdiskfs "$M"

note "rw: random writes against models"
for n in big c64k c4k; do
    qemu-img convert -O raw "$D/$n.hds" "$T/$n.model"
done
BUNDLES=""
if $HAVE_REAL; then
    BUNDLES="expanding plain split snap"
    cp "$T/e100" "$T/expanding.model"
    cp "$T/e100" "$T/plain.model"
    cp "$T/e100" "$T/split.model"
    cp "$T/snap.expect" "$T/snap.model"
fi
mount_vdiskfs "$D" "$M" -o rw
# Readers run all along: block status and reads race with allocation. (An
# image turns read-write at its first open for writing, which needs no
# other handles: do that first.)
for f in "$M/big.hds" "$M/c4k.hds" $(for b in $BUNDLES; do echo "$M/$b.hdd"; done); do
    dd if=/dev/null of="$f" conv=notrunc status=none || fail "open $f for writing"
done
touch "$T/readers.run"
for r in 1 2; do
    (while [ -e "$T/readers.run" ]; do cat "$M/big.hds" "$M/c4k.hds" $(for b in $BUNDLES; do echo "$M/$b.hdd"; done) >/dev/null || exit 1; done) &
    eval "reader$r=\$!"
done
seed=1
for n in big c64k c4k; do
    random_writes "$M/$n.hds" "$T/$n.model" "$(stat -c %s "$M/$n.hds")" 40 $seed
    seed=$((seed + 1))
done
for b in $BUNDLES; do
    random_writes "$M/$b.hdd" "$T/$b.model" $((100 * MiB)) 30 $seed
    seed=$((seed + 1))
done
rm -f "$T/readers.run"
for r in "$reader1" "$reader2"; do
    wait "$r" || fail "a reader failed while the images were written"
done
if $HAVE_REAL; then
    # Across the boundary of split.hdd's storages, and zeroing over the snapshot's base.
    head -c 300000 /dev/urandom >"$T/chunk"
    dd if="$T/chunk" of="$M/split.hdd" bs=65536 oflag=seek_bytes seek=$((40 * MiB - 150000)) conv=notrunc status=none
    dd if="$T/chunk" of="$T/split.model" bs=65536 oflag=seek_bytes seek=$((40 * MiB - 150000)) conv=notrunc status=none
    "$VDTEST" errno "$M/snap.hdd" zero $((20 * MiB)) $((2 * MiB)) | grep -qx OK || fail "zero range on snap.hdd"
    dd if=/dev/zero of="$T/snap.model" bs=$MiB seek=20 count=2 conv=notrunc status=none
fi
"$VDTEST" errno "$M/big.hds" punch $((5 * MiB)) $MiB | grep -qx OK || fail "punch on big.hds"
dd if=/dev/zero of="$T/big.model" bs=$MiB seek=5 count=1 conv=notrunc status=none
for n in big c64k c4k; do
    same_bytes "$T/$n.model" "$M/$n.hds" "$n.hds through the rw mount"
done
for b in $BUNDLES; do
    same_bytes "$T/$b.model" "$M/$b.hdd" "$b.hdd through the rw mount"
done
if $HAVE_REAL; then
    # The open bundle holds QEMU's locks on its layers: QEMU keeps out.
    if qemu-io -f parallels -c "write 0 512" "$DELTA" >"$T/qio.out" 2>&1; then
        fail "qemu-io wrote to snap.hdd's top layer while vdiskfs had it open"
    fi
    grep -qi "lock" "$T/qio.out" || fail "qemu-io failed, but not on a lock: $(cat "$T/qio.out")"
fi
unmount_vdiskfs "$M"

note "after the writes: qemu-img check and compare"
for n in big c64k c4k; do
    check_hds "$D/$n.hds" "$n.hds"
    qemu-img compare -f raw -F parallels "$T/$n.model" "$D/$n.hds" >"$T/cmp.out" 2>&1 ||
        fail "qemu-img compare $n.hds: $(cat "$T/cmp.out")"
done
if $HAVE_REAL; then
    check_hds "$EXP_HDS" "expanding.hdd's .hds"
    qemu-img compare -f raw -F parallels "$T/expanding.model" "$EXP_HDS" >"$T/cmp.out" 2>&1 ||
        fail "qemu-img compare expanding.hdd's .hds: $(cat "$T/cmp.out")"
    cmp "$T/plain.model" "$D/plain.hdd/plain.hdd.0.$BASE_GUID.hds" || fail "plain.hdd's .hds differs from the model"
    check_hds "$D/split.hdd/split.hdd.0.$BASE_GUID.hds" "split.hdd's first storage"
    check_hds "$DELTA" "snap.hdd's delta"
    same_bytes "$T/base.orig" "$D/snap.hdd/snap.hdd.0.$BASE_GUID.hds" "snap.hdd's base after writes"
    mount_vdiskfs "$D" "$M"
    for b in $BUNDLES; do
        same_bytes "$T/$b.model" "$M/$b.hdd" "$b.hdd after remount"
    done
    same_bytes "$T/e100" "$M/.snapshots/snap.hdd/$BASE_GUID" "snapshot of snap.hdd after writes"
    compare_to_qemu "$D/big.hds" "$M/big.hds"
    unmount_vdiskfs "$M"
fi

echo PASS
