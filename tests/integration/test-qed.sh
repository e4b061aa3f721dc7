#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# QED through a real mount: every qemu-img create option (cluster and
# table sizes, preallocation, backing files with and without a backing
# format), zero clusters, the need-check flag (read-only: read as the
# check would leave it; read-write: repaired like QEMU's check -r all),
# random writes, discard/zeroing and growing through -o rw (then
# qemu-img check clean and qemu-img compare against a model), and a
# daemon killed with SIGKILL in the middle of writes.
. "$TESTLIB"
require_fuse
require_qemu
. "$(dirname "$TESTLIB")/test-vhd-common.sh" # random_writes

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"

vsize() {
    qemu-img info -f qed --output=json "$1" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'
}

# check_clean IMAGE: qemu-img check finds nothing at all (no leaks either).
check_clean() {
    qemu-img check -f qed "$1" >"$T/check.out" 2>&1 ||
        fail "$(basename "$1"): qemu-img check: $(cat "$T/check.out")"
}

# features IMAGE: the header's feature bits, in decimal.
features() {
    od -An -tu8 -j16 -N8 "$1" | tr -d ' '
}

# set_need_check IMAGE: set QED_F_NEED_CHECK (0x2) in the header.
set_need_check() {
    f=$(($(features "$1") | 2))
    printf "$(printf '\\%03o' $f)" | dd of="$1" bs=1 seek=16 conv=notrunc status=none
}

note "images in every create option"
# name size options (- for none)
cat >"$T/imagelist" <<'EOF'
default 20M -
c4k 6M cluster_size=4096
c1m 40M cluster_size=1M
c2m-t2 40M cluster_size=2M,table_size=2
t16 20M table_size=16
c4k-t2 64M cluster_size=4096,table_size=2
odd 7654400 -
falloc 8M preallocation=falloc
full 8M preallocation=full
EOF
while read -r name size opts; do
    if [ "$opts" = - ]; then
        qemu-img create -q -f qed "$D/$name.qed" "$size"
    else
        qemu-img create -q -f qed -o "$opts" "$D/$name.qed" "$size"
    fi
    vs=$(vsize "$D/$name.qed")
    qemu-io -f qed -c "write -P 0x5a 0 4k" -c "write -P 0x6b 3M 1500k" -c "write -z 2M 512k" \
        -c "write -P 0x7c $((vs - 8192)) 8k" "$D/$name.qed" >/dev/null || fail "qemu-io $name"
    check_clean "$D/$name.qed"
done <"$T/imagelist"
qemu-img create -q -f qed "$D/empty.qed" 1G

note "backing files: raw (no probe), qcow, qed"
# The bases live outside IMAGEDIR (mounted with backing=any): on a rw
# mount, the directory scan opens every image it lists read-write, and a
# base opened that way cannot also be a read-only backing file (QEMU's
# locks), so which of the two opens wins would depend on the scan order.
B=$T/bases
mkdir -p "$D/chain" "$B"
head -c 6M /dev/urandom >"$B/base.raw"
qemu-img create -q -f qcow "$B/base.qcow" 6M
qemu-io -f qcow -c "write -P 0x21 0 2M" -c "write -P 0x22 5M 1M" "$B/base.qcow" >/dev/null
qemu-img create -q -f qed "$B/base.qed" 6M
qemu-io -f qed -c "write -P 0x31 1M 3M" "$B/base.qed" >/dev/null
for b in raw qcow qed; do
    qemu-img create -q -f qed -b "../../bases/base.$b" -F $b "$D/chain/over-$b.qed" 8M
    # Data, a zero cluster hiding the backing file, a partial cluster.
    qemu-io -f qed -c "write -P 0x41 64k 64k" -c "write -z 1M 128k" -c "write -P 0x42 4100k 3000" \
        "$D/chain/over-$b.qed" >/dev/null || fail "qemu-io over-$b"
    check_clean "$D/chain/over-$b.qed"
done
[ $(($(features "$D/chain/over-raw.qed") & 4)) = 4 ] || fail "QEMU did not set BACKING_FORMAT_NO_PROBE"
[ $(($(features "$D/chain/over-qcow.qed") & 4)) = 0 ] || fail "NO_PROBE set for a qcow backing file"
mkdir -p "$T/elsewhere/x"
qemu-img create -q -f qed -b "../gone.qed" -F qed -u "$T/elsewhere/x/orphan.qed" 8M
mkdir -p "$D/orphan"
cp "$T/elsewhere/x/orphan.qed" "$D/orphan/"

note "need-check: a reference past the end of the file"
mkdir -p "$D/nc"
qemu-img create -q -f qed "$D/nc/crashed.qed" 4M
qemu-io -f qed -c "write -P 0x51 0 64k" -c "write -P 0x52 1M 64k" "$D/nc/crashed.qed" >/dev/null
# The L2 table follows the first data cluster; the second one is last:
# cut it off, as a crash would, and mark the image as needing a check.
truncate -s $(($(stat -c %s "$D/nc/crashed.qed") - 65536)) "$D/nc/crashed.qed"
set_need_check "$D/nc/crashed.qed"
if qemu-img check -f qed "$D/nc/crashed.qed" >/dev/null 2>&1; then
    fail "qemu-img check accepts the crafted image: the test premise is wrong"
fi
cp "$D/nc/crashed.qed" "$T/crashed.qemu"
qemu-img check -q -r all -f qed "$T/crashed.qemu" >/dev/null 2>&1 || true
check_clean "$T/crashed.qemu"
qemu-img convert -f qed -O raw "$T/crashed.qemu" "$T/crashed.expect"
cp "$D/nc/crashed.qed" "$T/crashed.orig"

mount_vdiskfs "$D" "$M" -o backing=any

note "contents and data maps equal qemu-img's"
while read -r name size opts; do
    compare_to_qemu "$D/$name.qed" "$M/$name.qed"
done <"$T/imagelist"
compare_to_qemu "$D/empty.qed" "$M/empty.qed"
[ -z "$(seek_map "$M/empty.qed")" ] || fail "empty.qed shows data: $(seek_map "$M/empty.qed")"
for b in raw qcow qed; do
    compare_to_qemu "$D/chain/over-$b.qed" "$M/chain/over-$b.qed"
done
getfattr --absolute-names -n user.vdiskfs.cluster_size --only-values "$M/c1m.qed" | grep -qx 1048576 ||
    fail "cluster_size xattr"
getfattr --absolute-names -n user.vdiskfs.backing --only-values "$M/chain/over-raw.qed" |
    grep -qx ../../bases/base.raw || fail "backing xattr"
"$VDISK" info "$D/t16.qed" | grep -q "table_size: 16" || fail "vdisk info table_size: $("$VDISK" info "$D/t16.qed")"
"$VDISK" info "$D/chain/over-raw.qed" >"$T/info"
grep -q "backing_format: raw" "$T/info" || fail "vdisk info backing_format: $(cat "$T/info")"
grep -q "features: backing_file, backing_format_no_probe" "$T/info" || fail "vdisk info features: $(cat "$T/info")"
qemu-img convert -f qed -O raw "$D/c4k-t2.qed" "$T/c4k-t2.raw"
"$VDTEST" parread "$M/c4k-t2.qed" "$T/c4k-t2.raw" 8 40 || fail "parallel readers got wrong data"

note "a child without its backing file is listed and refused"
[ -f "$M/orphan/orphan.qed" ] || fail "orphan not listed"
if cat "$M/orphan/orphan.qed" >/dev/null 2>&1; then
    fail "a child without its backing file was readable"
fi
getfattr --absolute-names -n user.vdiskfs.error --only-values "$M/orphan/orphan.qed" >"$T/err" 2>&1 || true
grep -q "gone.qed" "$T/err" || fail "error does not name the missing backing file: $(cat "$T/err")"

note "need-check, read-only: read as the check leaves it, the file untouched"
same_bytes "$T/crashed.expect" "$M/nc/crashed.qed" "nc/crashed.qed (read-only)"
same_bytes "$T/crashed.orig" "$D/nc/crashed.qed" "nc/crashed.qed file after a read-only mount"
"$VDISK" info "$D/nc/crashed.qed" | grep -q "need_check: set; read-only" || fail "vdisk info need_check"
unmount_vdiskfs "$M"

note "need-check, read-write: repaired when opened for writing, like qemu-img check -r all"
mount_vdiskfs "$D/nc" "$M" -o rw
same_bytes "$T/crashed.expect" "$M/crashed.qed" "nc/crashed.qed (read-only open)"
# A rw mount opens an image read-write on the first open for writing.
exec 3<>"$M/crashed.qed"
exec 3>&-
same_bytes "$T/crashed.expect" "$M/crashed.qed" "nc/crashed.qed (read-write)"
unmount_vdiskfs "$M"
[ $(($(features "$D/nc/crashed.qed") & 2)) = 0 ] || fail "NEED_CHECK still set after the repair"
check_clean "$D/nc/crashed.qed"
qemu-img compare -q -f qed -F qed "$D/nc/crashed.qed" "$T/crashed.qemu" ||
    fail "our repair and QEMU's differ: $(qemu-img compare -f qed -F qed "$D/nc/crashed.qed" "$T/crashed.qemu" 2>&1)"

note "rw: random writes against a model, then qemu-img check and compare"
RW="default c4k c2m-t2 t16 odd full empty"
for f in $RW; do
    qemu-img convert -f qed -O raw "$D/$f.qed" "$T/$f.model"
done
for b in raw qcow qed; do
    qemu-img convert -f qed -O raw "$D/chain/over-$b.qed" "$T/over-$b.model"
    cp "$B/base.$b" "$T/base-$b.before"
done
mount_vdiskfs "$D" "$M" -o rw,backing=any
seed=1
for f in $RW; do
    random_writes "$M/$f.qed" "$T/$f.model" "$(stat -c %s "$T/$f.model")" $seed
    seed=$((seed + 1))
    same_bytes "$T/$f.model" "$M/$f.qed" "$f.qed after writes"
done
for b in raw qcow qed; do
    random_writes "$M/chain/over-$b.qed" "$T/over-$b.model" "$(stat -c %s "$T/over-$b.model")" $seed
    seed=$((seed + 1))
    same_bytes "$T/over-$b.model" "$M/chain/over-$b.qed" "over-$b.qed after writes"
done

note "rw: punch and zero ranges, whole and partial clusters, over data and over a backing file"
for f in default over-raw; do
    case $f in over-*) img=$M/chain/$f.qed ;; *) img=$M/$f.qed ;; esac
    for r in "punch 0 131072" "zero 200000 300000" "punch 3100000 70000" "zero 3145728 65536" \
        "punch 4194304 1048576"; do
        set -- $r
        [ "$("$VDTEST" errno "$img" "$1" "$2" "$3")" = OK ] || fail "$f: $r failed"
        dd if=/dev/zero of="$T/$f.model" bs=65536 count="$3" iflag=count_bytes seek="$2" \
            oflag=seek_bytes conv=notrunc status=none
    done
    same_bytes "$T/$f.model" "$img" "$f.qed after punch/zero"
done

note "rw: growing"
truncate -s 30M "$M/default.qed" || fail "truncate grow"
truncate -s 30M "$T/default.model"
[ "$(stat -c %s "$M/default.qed")" = 31457280 ] || fail "size after grow: $(stat -c %s "$M/default.qed")"
dd if=/dev/urandom of="$T/tail" bs=64k count=3 status=none
dd if="$T/tail" of="$M/default.qed" bs=64k seek=470 conv=notrunc status=none
dd if="$T/tail" of="$T/default.model" bs=64k seek=470 conv=notrunc status=none
same_bytes "$T/default.model" "$M/default.qed" "default.qed after growing"
[ "$("$VDTEST" errno "$M/default.qed" truncate 1000)" = EINVAL ] || fail "shrinking was not refused"
unmount_vdiskfs "$M"

for f in $RW; do
    check_clean "$D/$f.qed"
    qemu-img compare -q -f qed -F raw "$D/$f.qed" "$T/$f.model" ||
        fail "$f.qed: qemu-img compare with the model: $(qemu-img compare -f qed -F raw "$D/$f.qed" "$T/$f.model" 2>&1)"
    [ $(($(features "$D/$f.qed") & 2)) = 0 ] || fail "$f.qed: NEED_CHECK left set after unmount"
done
for b in raw qcow qed; do
    check_clean "$D/chain/over-$b.qed"
    qemu-img compare -q -f qed -F raw "$D/chain/over-$b.qed" "$T/over-$b.model" ||
        fail "over-$b.qed: qemu-img compare: $(qemu-img compare -f qed -F raw "$D/chain/over-$b.qed" "$T/over-$b.model" 2>&1)"
    same_bytes "$T/base-$b.before" "$B/base.$b" "base.$b after writes to its child"
done
[ "$(vsize "$D/default.qed")" = 31457280 ] || fail "qemu-img sees size $(vsize "$D/default.qed") after growing"
mount_vdiskfs "$D" "$M" -o backing=any
for f in default c4k; do
    compare_to_qemu "$D/$f.qed" "$M/$f.qed"
done
compare_to_qemu "$D/chain/over-raw.qed" "$M/chain/over-raw.qed"
unmount_vdiskfs "$M"

note "SIGKILL during writes: fsynced data survives, qemu-img check finds no errors"
K=$T/kill
mkdir -p "$K" "$T/kmnt"
qemu-img create -q -f qed -o cluster_size=65536 "$K/kill.qed" 256M
mount_vdiskfs "$K" "$T/kmnt" -o rw
head -c 3M /dev/urandom >"$T/synced"
dd if="$T/synced" of="$T/kmnt/kill.qed" bs=1M seek=200 conv=notrunc,fsync status=none ||
    fail "fsynced write"
dd if=/dev/urandom of="$T/kmnt/kill.qed" bs=64k count=3000 conv=notrunc status=none 2>/dev/null &
writer=$!
sleep 0.7
pid=$(pgrep -f "vdiskfs.* $T/kmnt\$" | head -n 1)
[ -n "$pid" ] || fail "no daemon to kill"
kill -KILL "$pid"
wait_gone "$pid"
wait "$writer" 2>/dev/null || true
fusermount3 -uz "$T/kmnt" 2>/dev/null || umount -l "$T/kmnt" 2>/dev/null || true
note "features after SIGKILL: $(features "$K/kill.qed")"
rc=0
qemu-img check -f qed "$K/kill.qed" >"$T/kcheck" 2>&1 || rc=$?
# 0: clean; 3: leaked clusters only (allowed after a crash); else errors.
[ $rc = 0 ] || [ $rc = 3 ] || fail "qemu-img check after SIGKILL (exit $rc): $(cat "$T/kcheck")"
qemu-img convert -f qed -O raw "$K/kill.qed" "$T/kill.qemu"
cmp -s -n 3145728 -i 209715200:0 "$T/kill.qemu" "$T/synced" || fail "fsynced data lost after SIGKILL"
mount_vdiskfs "$K" "$T/kmnt"
same_bytes "$T/kill.qemu" "$T/kmnt/kill.qed" "kill.qed read-only after SIGKILL"
unmount_vdiskfs "$T/kmnt"
mount_vdiskfs "$K" "$T/kmnt" -o rw
exec 3<>"$T/kmnt/kill.qed" # the first open for writing opens it read-write: the repair
exec 3>&-
same_bytes "$T/kill.qemu" "$T/kmnt/kill.qed" "kill.qed after the repair"
unmount_vdiskfs "$T/kmnt"
rc=0
qemu-img check -f qed "$K/kill.qed" >"$T/kcheck" 2>&1 || rc=$?
[ $rc = 0 ] || [ $rc = 3 ] || fail "qemu-img check after our repair (exit $rc): $(cat "$T/kcheck")"
[ $(($(features "$K/kill.qed") & 2)) = 0 ] || fail "NEED_CHECK still set after a read-write mount"
echo PASS
