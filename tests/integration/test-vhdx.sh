#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# VHDX through a real mount: every qemu-img create option (dynamic, fixed,
# block sizes 1 MiB..256 MiB, log_size, block_state_zero), the Hyper-V
# images from $TESTDATA, a dirty log (replayed in memory read-only, and
# checked against QEMU's own replay), differencing disks (made by the unit
# test's generator: QEMU cannot create them), random writes through -o rw
# then qemu-img check and compare, and a daemon killed with SIGKILL in the
# middle of writes.
. "$TESTLIB"
require_fuse
require_qemu
. "$(dirname "$TESTLIB")/test-vhd-common.sh"

D=$T/images M=$T/mnt G=$T/gen
mkdir -p "$D" "$M" "$G"
UNIT=$(dirname "$VDISK")/tests/unit

vsize() {
    qemu-img info -f vhdx --output=json "$1" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p'
}

# blocks_map BLOCK SIZE "OFF LEN"...: merged block-aligned ranges covering
# the writes, clipped to SIZE, as seek_map prints them.
blocks_map() {
    local bs=$1 size=$2
    shift 2
    for w in "$@"; do echo "$w"; done | awk -v bs="$bs" -v size="$size" '
        { first = int($1 / bs); last = int(($1 + $2 - 1) / bs); for (b = first; b <= last; b++) used[b] = 1 }
        END {
            n = int((size + bs - 1) / bs); start = -1;
            for (b = 0; b <= n; b++) {
                if (b < n && (b in used)) { if (start < 0) start = b }
                else if (start >= 0) { end = b * bs; if (end > size) end = size; printf "%d %d\n", start * bs, end - start * bs; start = -1 }
            }
        }'
}

# compare_vhdx IMAGE MOUNTED EXPECTED_MAP_FILE: bytes and size equal
# qemu-img's; the data map equals the expected one. qemu-img map cannot be
# the oracle here: QEMU's vhdx driver has no block status and reports every
# block as data, so the expected map comes from the blocks the test wrote
# (qemu-img check confirms the image those blocks came from).
compare_vhdx() {
    local img=$1 got=$2 map=$3 name
    name=$(basename "$img")
    qemu-img convert -f vhdx -O raw "$img" "$T/expect.raw" || fail "qemu-img convert $img"
    [ "$(stat -c %s "$got")" = "$(vsize "$img")" ] || fail "$name: size differs from qemu-img info"
    same_bytes "$T/expect.raw" "$got" "$name"
    seek_map "$got" >"$T/vmap"
    diff "$map" "$T/vmap" >"$T/mapdiff" ||
        fail "$name: data map differs from the blocks written (< expected, > vdiskfs): $(cat "$T/mapdiff")"
}

note "images in every create option"
# name size options
cat >"$T/imagelist" <<'EOF'
default 64M -
bs1 24M block_size=1M
bs8 40M block_size=8M
bs32 100M block_size=32M
bs256 600M block_size=256M
log4 16M log_size=4M
log8-bs2 16M log_size=8M,block_size=2M
zero-off 16M block_state_zero=off
zero-off-bs4 24M block_state_zero=off,block_size=4M
fixed 16M subformat=fixed
fixed-bs1 10M subformat=fixed,block_size=1M
fixed-bs8 24M subformat=fixed,block_size=8M
fixed-full 16M subformat=fixed,block_state_zero=off
fixed-full-bs2 12M subformat=fixed,block_state_zero=off,block_size=2M
prealloc-full 16M preallocation=full
fixed-falloc 16M subformat=fixed,preallocation=falloc
EOF
while read -r name size opts; do
    if [ "$opts" = - ]; then
        qemu-img create -q -f vhdx "$D/$name.vhdx" "$size"
    else
        qemu-img create -q -f vhdx -o "$opts" "$D/$name.vhdx" "$size"
    fi
    end=$(($(vsize "$D/$name.vhdx") - 8192))
    qemu-io -f vhdx -c "write -P 0x5a 0 4k" -c "write -P 0x6b 3M 1500k" \
        -c "write -P 0x7c $end 8k" "$D/$name.vhdx" >/dev/null || fail "qemu-io $name"
    qemu-img check -q "$D/$name.vhdx" || fail "qemu-img check $name after qemu-io"
done <"$T/imagelist"
if [ -d "${TESTDATA:-}" ] && [ -f "$TESTDATA/dynamic.vhdx.gz" ]; then
    gunzip -c "$TESTDATA/dynamic.vhdx.gz" >"$D/hyperv-dynamic.vhdx"
    gunzip -c "$TESTDATA/fixed.vhdx.gz" >"$D/hyperv-fixed.vhdx"
else
    note "no \$TESTDATA: skipping the Hyper-V images"
fi
"$UNIT/test-vhdx" gen "$G" || fail "generator"
mkdir -p "$D/diff" "$D/orphan"
cp "$G/parent.vhdx" "$G/child.vhdx" "$D/diff/"
cp "$G/child.vhdx" "$D/orphan/"
cp "$G/dirty.vhdx" "$D/dirty.vhdx"
cp "$G/dirty.vhdx" "$T/dirty.orig"

mount_vdiskfs "$D" "$M"

note "contents equal qemu-img's; holes are the blocks never written"
while read -r name size opts; do
    img=$D/$name.vhdx
    vs=$(vsize "$img")
    bs=$("$VDISK" info --json "$img" | python3 -c 'import json, sys; print(json.load(sys.stdin)["vdiskfs"]["block_size"])')
    [ -n "$bs" ] || fail "$name: no block_size in vdisk info"
    # QEMU's fixed images keep their blocks in state ZERO unless
    # block_state_zero=off: only then is everything data.
    case $opts in
    *fixed*block_state_zero=off*) echo "0 $vs" >"$T/emap" ;;
    *)
        # shellcheck disable=SC2086
        blocks_map "$bs" "$vs" "0 4096" "3145728 1536000" "$((vs - 8192)) 8192" >"$T/emap"
        ;;
    esac
    compare_vhdx "$img" "$M/$name.vhdx" "$T/emap"
done <"$T/imagelist"
note "8 parallel readers"
qemu-img convert -f vhdx -O raw "$D/bs1.vhdx" "$T/bs1.raw"
"$VDTEST" parread "$M/bs1.vhdx" "$T/bs1.raw" 8 40 || fail "parallel readers got wrong data"
"$VDTEST" parread "$M/diff/child.vhdx" "$G/child.expect" 8 40 || fail "parallel readers (child)"
"$VDISK" info "$D/bs32.vhdx" | grep -q "cluster_size: 33554432" || fail "bs32 cluster_size"
"$VDISK" info "$D/fixed.vhdx" | grep -q "disk_type: fixed" || fail "fixed disk_type"
"$VDISK" info "$D/log4.vhdx" | grep -q "log_size: 4194304" || fail "log_size"
"$VDISK" info "$D/zero-off-bs4.vhdx" | grep -q "not_present" || fail "block_state_zero=off: no NOT_PRESENT blocks"
"$VDISK" info "$D/default.vhdx" | grep -q "zero: " || fail "block_state_zero=on: no ZERO blocks"
getfattr --absolute-names -n user.vdiskfs.cluster_size --only-values "$M/bs8.vhdx" | grep -qx 8388608 ||
    fail "cluster_size xattr"

if [ -f "$D/hyperv-dynamic.vhdx" ]; then
    note "Hyper-V images"
    for f in hyperv-dynamic hyperv-fixed; do
        echo "0 10485760" >"$T/emap"
        compare_vhdx "$D/$f.vhdx" "$M/$f.vhdx" "$T/emap"
        [ "$(od -An -tx1 -j510 -N2 "$M/$f.vhdx" | tr -d ' ')" = 55aa ] || fail "$f: no MBR signature"
        [ "$(od -An -tx1 -v -j$((0x200000)) -N512 "$M/$f.vhdx" | tr -d ' \n' | tr -d f)" = "" ] ||
            fail "$f: 512 bytes of 0xff expected at 0x200000"
    done
    "$VDISK" info "$D/hyperv-dynamic.vhdx" | grep -q "block_size: 33554432" || fail "Hyper-V block size"
    "$VDISK" info "$D/hyperv-fixed.vhdx" | grep -q "block_size: 2097152" || fail "Hyper-V block size"
fi

note "dirty log: replayed in memory on a read-only mount, the file untouched"
same_bytes "$G/dirty.expect" "$M/dirty.vhdx" "dirty.vhdx"
same_bytes "$T/dirty.orig" "$D/dirty.vhdx" "dirty.vhdx file after a read-only mount"
"$VDISK" info "$D/dirty.vhdx" | grep -q "log: replayed in memory" || fail "vdisk info: log state"
note "QEMU's replay of the same log gives the same disk"
cp "$G/dirty.vhdx" "$T/qemu-dirty.vhdx"
qemu-img check -q -r all "$T/qemu-dirty.vhdx" >/dev/null 2>&1 || true
qemu-img check -q "$T/qemu-dirty.vhdx" || fail "QEMU replay of the generated log"
qemu-img convert -f vhdx -O raw "$T/qemu-dirty.vhdx" "$T/qemu-dirty.raw"
same_bytes "$G/dirty.expect" "$T/qemu-dirty.raw" "QEMU's replay of dirty.vhdx"

note "differencing disk: every block state, parent by its locator and linkage"
same_bytes "$G/child.expect" "$M/diff/child.vhdx" "diff/child.vhdx"
getfattr --absolute-names -n user.vdiskfs.backing --only-values "$M/diff/child.vhdx" |
    grep -q parent.vhdx || fail "backing xattr of the child"
[ -f "$M/orphan/child.vhdx" ] || fail "orphan child not listed"
if cat "$M/orphan/child.vhdx" >/dev/null 2>&1; then
    fail "a child without its parent was readable"
fi
getfattr --absolute-names -n user.vdiskfs.error --only-values "$M/orphan/child.vhdx" >"$T/err" 2>&1 || true
grep -q "parent.vhdx" "$T/err" || fail "error does not name the missing parent: $(cat "$T/err")"
unmount_vdiskfs "$M"

note "rw: random writes against a model, then qemu-img check and compare"
RW="default bs1 bs8 zero-off fixed fixed-bs8 fixed-full log4"
[ -f "$D/hyperv-dynamic.vhdx" ] && RW="$RW hyperv-dynamic hyperv-fixed"
for f in $RW; do
    qemu-img convert -f vhdx -O raw "$D/$f.vhdx" "$T/$f.model"
done
cp "$G/dirty.expect" "$T/dirty.model"
cp "$G/child.expect" "$T/child.model"
cp "$D/diff/parent.vhdx" "$T/parent.before"
mount_vdiskfs "$D" "$M" -o rw
seed=1
for f in $RW dirty; do
    random_writes "$M/$f.vhdx" "$T/$f.model" "$(stat -c %s "$T/$f.model")" $seed
    seed=$((seed + 1))
    same_bytes "$T/$f.model" "$M/$f.vhdx" "$f.vhdx after writes"
done
random_writes "$M/diff/child.vhdx" "$T/child.model" "$(stat -c %s "$T/child.model")" 99
same_bytes "$T/child.model" "$M/diff/child.vhdx" "diff/child.vhdx after writes"
unmount_vdiskfs "$M"
for f in $RW dirty; do
    qemu-img check -q "$D/$f.vhdx" || fail "$f.vhdx: qemu-img check after writes: $(qemu-img check "$D/$f.vhdx" 2>&1)"
    qemu-img compare -q -f vhdx -F raw "$D/$f.vhdx" "$T/$f.model" ||
        fail "$f.vhdx: qemu-img compare with the model: $(qemu-img compare -f vhdx -F raw "$D/$f.vhdx" "$T/$f.model" 2>&1)"
done
same_bytes "$T/parent.before" "$D/diff/parent.vhdx" "the parent after writes to the child"
mount_vdiskfs "$D" "$M"
same_bytes "$T/child.model" "$M/diff/child.vhdx" "diff/child.vhdx remounted"
unmount_vdiskfs "$M"

note "SIGKILL of the daemon during writes leaves an image both we and QEMU read alike"
K=$T/kill
mkdir -p "$K" "$T/kmnt"
qemu-img create -q -f vhdx -o block_size=1M "$K/kill.vhdx" 256M
mount_vdiskfs "$K" "$T/kmnt" -o rw
dd if=/dev/urandom of="$T/kmnt/kill.vhdx" bs=64k count=4000 conv=notrunc status=none 2>/dev/null &
writer=$!
sleep 0.7
pid=$(pgrep -f "vdiskfs.* $T/kmnt\$" | head -n 1)
[ -n "$pid" ] || fail "no daemon to kill"
kill -KILL "$pid"
wait_gone "$pid"
wait "$writer" 2>/dev/null || true
fusermount3 -uz "$T/kmnt" 2>/dev/null || umount -l "$T/kmnt" 2>/dev/null || true
"$VDISK" info "$K/kill.vhdx" >"$T/kinfo" || fail "vdisk info after SIGKILL: $(cat "$T/kinfo")"
note "$(grep 'log:' "$T/kinfo")"
mount_vdiskfs "$K" "$T/kmnt"
cp "$T/kmnt/kill.vhdx" "$T/kill.ours"
unmount_vdiskfs "$T/kmnt"
qemu-img check -q -r all "$K/kill.vhdx" >/dev/null 2>&1 || true
qemu-img check "$K/kill.vhdx" >"$T/kcheck" 2>&1 || fail "qemu-img check after SIGKILL: $(cat "$T/kcheck")"
qemu-img convert -f vhdx -O raw "$K/kill.vhdx" "$T/kill.qemu"
same_bytes "$T/kill.qemu" "$T/kill.ours" "kill.vhdx: our read-only replay vs QEMU's"
echo PASS
