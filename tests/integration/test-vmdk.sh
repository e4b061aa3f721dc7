#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# VMDK through a real mount, against qemu-img: every subformat and create
# option qemu-img has, twoGbMaxExtent images over 4 GiB, backing chains and
# the CID check, extent files hidden, extents escaping IMAGEDIR refused.
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"


# qemu_ranges WHICH IMAGE: merged "start length" ranges from qemu-img map,
# WHICH = data (data: true) or nonzero (data: true and zero: false).
# Unlike lib.sh's qemu_data_map it compares and prints offsets past 2 GiB
# exactly (mawk turns large numbers into "%.6g" strings otherwise).
qemu_ranges() {
    qemu-img map --output=json "$2" | tr -d '[]' | awk -F'[:,]' -v which="$1" '
        {
            start = ""; len = ""; data = ""; zero = "";
            for (i = 1; i < NF; i++) {
                k = $i; gsub(/[ "{}]/, "", k); v = $(i + 1); gsub(/[ "{}]/, "", v);
                if (k == "start") start = v + 0;
                if (k == "length") len = v + 0;
                if (k == "data") data = v;
                if (k == "zero") zero = v;
            }
            if (start == "") next;
            if (data == "true" && (which == "data" || zero == "false")) {
                if (have && cs + cl == start) { cl += len }
                else { if (have) printf "%.0f %.0f\n", cs, cl; cs = start; cl = len; have = 1 }
            }
        }
        END { if (have) printf "%.0f %.0f\n", cs, cl }'
}

# vmdk_compare_to_qemu IMAGE MOUNTED [nonzero]: bytes equal qemu-img
# convert's, SEEK_DATA/SEEK_HOLE equal qemu-img map's data ranges.
#
# With "nonzero", for flat extents: qemu-img map calls all of a flat
# extent data (and marks the host file's holes "zero": true), while
# vdiskfs reports those holes as holes, as the raw driver does. So the
# mount's data ranges must equal qemu's ranges that are data and not zero:
# the same host SEEK_DATA information, seen through the extent offsets.
vmdk_compare_to_qemu() {
    local img=$1 got=$2 which=${3:-data} name
    name=$(basename "$img")
    qemu-img convert -O raw "$img" "$T/expect.raw" || fail "qemu-img convert $img"
    same_bytes "$T/expect.raw" "$got" "$name"
    qemu_ranges "$which" "$img" >"$T/qmap"
    seek_map "$got" >"$T/vmap"
    if ! diff "$T/qmap" "$T/vmap" >"$T/mapdiff"; then
        fail "$name: data map differs from qemu-img map's $which ranges (< qemu, > vdiskfs): $(cat "$T/mapdiff")"
    fi
}

# fill IMAGE: data at the start, across a grain boundary, zeros written
# over data, and a partial grain near the end (64 MiB images).
fill() {
    qemu-io -f vmdk \
        -c "write -P 0x11 0 100k" \
        -c "write -P 0x22 1000k 200k" \
        -c "write -z 1050k 10k" \
        -c "write -P 0x33 33M 4k" \
        -c "write -P 0x44 64511k 1k" \
        "$1" >/dev/null || fail "qemu-io writes to $1"
}

note "create: every subformat"
for s in monolithicSparse monolithicFlat twoGbMaxExtentSparse twoGbMaxExtentFlat; do
    qemu-img create -q -f vmdk -o subformat=$s "$D/$s.vmdk" 64M || fail "create $s"
    fill "$D/$s.vmdk"
done
qemu-img create -q -f raw "$T/src.raw" 64M
fill_raw() {
    qemu-io -f raw -c "write -P 0x55 0 300k" -c "write -P 0x66 40M 64k" -c "write -P 0x77 64511k 1k" "$1" >/dev/null
}
fill_raw "$T/src.raw"
qemu-img convert -O vmdk -o subformat=streamOptimized "$T/src.raw" "$D/streamOptimized.vmdk" ||
    fail "convert to streamOptimized"
qemu-img create -q -f vmdk -o subformat=streamOptimized "$D/stream-empty.vmdk" 64M

note "create: adapter types, hardware versions, compat6, tools version, zeroed grains, preallocation"
for a in ide lsilogic buslogic legacyESX; do
    qemu-img create -q -f vmdk -o adapter_type=$a "$D/adapter-$a.vmdk" 64M || fail "adapter_type=$a"
done
qemu-img create -q -f vmdk -o hwversion=6 "$D/hw6.vmdk" 64M
qemu-img create -q -f vmdk -o hwversion=7 "$D/hw7.vmdk" 64M
qemu-img create -q -f vmdk -o extent_size_hint=1M,nocow=on "$D/hints.vmdk" 64M
qemu-img create -q -f vmdk -o subformat=monolithicSparse,preallocation=full "$D/prealloc-sparse.vmdk" 64M
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentFlat,preallocation=falloc "$D/prealloc-split.vmdk" 8M
qemu-io -f vmdk -c "write -P 0x13 7M 1M" "$D/prealloc-split.vmdk" >/dev/null
qemu-img create -q -f vmdk -o compat6=on "$D/compat6.vmdk" 64M
qemu-img create -q -f vmdk -o toolsversion=10240 "$D/tools.vmdk" 64M
qemu-img create -q -f vmdk -o zeroed_grain=on "$D/zeroed.vmdk" 64M
qemu-io -f vmdk -c "write -P 0x5a 0 1M" -c "write -z 256k 512k" -c "write -z 10M 1M" \
    -c "write -P 0x5b 10M 4k" "$D/zeroed.vmdk" >/dev/null
for p in falloc full; do
    qemu-img create -q -f vmdk -o subformat=monolithicFlat,preallocation=$p "$D/prealloc-$p.vmdk" 8M
    qemu-io -f vmdk -c "write -P 0x12 1M 64k" "$D/prealloc-$p.vmdk" >/dev/null
done
for f in "$D"/adapter-*.vmdk "$D/hw6.vmdk" "$D/hw7.vmdk" "$D/compat6.vmdk" "$D/tools.vmdk" \
    "$D/hints.vmdk" "$D/prealloc-sparse.vmdk"; do
    qemu-io -f vmdk -c "write -P 0x42 5M 70k" "$f" >/dev/null
done

note "create: twoGbMaxExtent images over 4 GiB, data past 2 and 4 GiB"
for s in twoGbMaxExtentSparse twoGbMaxExtentFlat; do
    qemu-img create -q -f vmdk -o subformat=$s "$D/big-$s.vmdk" 4200M
    qemu-io -f vmdk -c "write -P 0x61 0 64k" -c "write -P 0x62 2047M 2M" \
        -c "write -P 0x63 4100M 3M" -c "write -P 0x64 4199M 1M" "$D/big-$s.vmdk" >/dev/null ||
        fail "writes to big-$s"
done
[ -f "$D/big-twoGbMaxExtentSparse-s003.vmdk" ] || fail "expected three extents"

note "create: backing chain base <- mid <- top, and a child whose parent changed"
qemu-img create -q -f vmdk "$D/base.vmdk" 64M
qemu-io -f vmdk -c "write -P 0x01 0 4M" -c "write -P 0x02 20M 1M" "$D/base.vmdk" >/dev/null
qemu-img create -q -f vmdk -b base.vmdk -F vmdk "$D/mid.vmdk"
qemu-io -f vmdk -c "write -P 0x03 1M 100k" -c "write -z 20M 64k" "$D/mid.vmdk" >/dev/null
qemu-img create -q -f vmdk -b mid.vmdk -F vmdk "$D/top.vmdk"
qemu-io -f vmdk -c "write -P 0x04 1030k 4k" -c "write -P 0x05 50M 64k" "$D/top.vmdk" >/dev/null
mkdir "$D/stale"
qemu-img create -q -f vmdk "$D/stale/parent.vmdk" 16M
qemu-img create -q -f vmdk -b parent.vmdk -F vmdk "$D/stale/child.vmdk"
qemu-io -f vmdk -c "write -P 0x09 0 64k" "$D/stale/parent.vmdk" >/dev/null # new CID

note "a descriptor whose extent escapes IMAGEDIR"
mkdir -p "$T/outside"
qemu-img create -q -f raw "$T/outside/secret.raw" 1M
cat >"$D/escape.vmdk" <<EOF
# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="monolithicFlat"
RW 2048 FLAT "../outside/secret.raw" 0
EOF

touch -d '1 minute ago' "$T/stamp"
find "$D" -type f -exec touch -d '2 minutes ago' {} +
mount_vdiskfs "$D" "$M"

note "listing: one file per image, extent files hidden"
ls "$M" >"$T/ls"
ls "$M/stale" >"$T/ls-stale"
for n in monolithicSparse.vmdk monolithicFlat.vmdk twoGbMaxExtentSparse.vmdk twoGbMaxExtentFlat.vmdk \
    streamOptimized.vmdk stream-empty.vmdk big-twoGbMaxExtentSparse.vmdk big-twoGbMaxExtentFlat.vmdk \
    base.vmdk mid.vmdk top.vmdk zeroed.vmdk escape.vmdk prealloc-full.vmdk; do
    grep -qx "$n" "$T/ls" || fail "$n missing from the listing: $(cat "$T/ls")"
done
if grep -E -- '-(s|f)[0-9]{3}\.vmdk$|-flat\.vmdk$' "$T/ls"; then
    fail "extent files are listed: $(cat "$T/ls")"
fi
[ ! -e "$M/big-twoGbMaxExtentSparse-s001.vmdk" ] || fail "lookup of an extent file succeeds"
[ ! -e "$M/monolithicFlat-flat.vmdk" ] || fail "lookup of a flat extent succeeds"
grep -qx child.vmdk "$T/ls-stale" || fail "stale/child.vmdk missing: $(cat "$T/ls-stale")"

note "content and data maps equal qemu-img's"
for n in monolithicSparse twoGbMaxExtentSparse streamOptimized stream-empty zeroed hw6 hw7 compat6 tools \
    hints prealloc-sparse \
    adapter-ide adapter-lsilogic adapter-buslogic adapter-legacyESX base mid top \
    big-twoGbMaxExtentSparse; do
    [ "$(stat -c %s "$M/$n.vmdk")" = "$(qemu-img info --output=json "$D/$n.vmdk" |
        sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p' | head -n 1)" ] || fail "$n: size differs from qemu-img info"
    vmdk_compare_to_qemu "$D/$n.vmdk" "$M/$n.vmdk"
done
for n in monolithicFlat twoGbMaxExtentFlat prealloc-falloc prealloc-full prealloc-split \
    big-twoGbMaxExtentFlat; do
    vmdk_compare_to_qemu "$D/$n.vmdk" "$M/$n.vmdk" nonzero
done
[ "$(seek_map "$M/zeroed.vmdk" | wc -l)" -ge 3 ] || fail "zeroed grains are not holes: $(seek_map "$M/zeroed.vmdk")"

note "8 parallel readers"
qemu-img convert -O raw "$D/top.vmdk" "$T/top.raw"
"$VDTEST" parread "$M/top.vmdk" "$T/top.raw" 8 40 || fail "parallel readers of top.vmdk"
qemu-img convert -O raw "$D/streamOptimized.vmdk" "$T/so.raw"
"$VDTEST" parread "$M/streamOptimized.vmdk" "$T/so.raw" 8 40 || fail "parallel readers of streamOptimized"

note "attributes and vdisk info"
getfattr -n user.vdiskfs.format --only-values "$M/twoGbMaxExtentSparse.vmdk" | grep -qx vmdk || fail "xattr format"
getfattr -n user.vdiskfs.cluster_size --only-values "$M/monolithicSparse.vmdk" | grep -qx 65536 ||
    fail "xattr cluster_size"
getfattr -n user.vdiskfs.backing --only-values "$M/top.vmdk" | grep -qx mid.vmdk || fail "xattr backing"
used=$(stat -c %b "$M/big-twoGbMaxExtentSparse.vmdk")
host=$(stat -c %b "$D"/big-twoGbMaxExtentSparse*.vmdk | awk '{ s += $1 } END { print s }')
[ "$used" = "$host" ] || fail "st_blocks $used is not the descriptor's and extents' $host"
"$VDISK" info "$D/adapter-lsilogic.vmdk" >"$T/info" || fail "vdisk info"
for want in "create_type: monolithicSparse" "adapter_type: lsilogic" "hardware_version: 4" \
    "grain_size: 65536" "cluster_size: 65536" "compression: none" "cid: "; do
    grep -q "$want" "$T/info" || fail "vdisk info lacks '$want': $(cat "$T/info")"
done
"$VDISK" info "$D/hw6.vmdk" | grep -q "hardware_version: 6" || fail "hwversion=6 not shown"
"$VDISK" info "$D/hw7.vmdk" | grep -q "hardware_version: 7" || fail "hwversion=7 not shown"
"$VDISK" info "$D/compat6.vmdk" | grep -q "hardware_version: 6" || fail "compat6 not shown"
"$VDISK" info "$D/tools.vmdk" | grep -q "tools_version: 10240" || fail "toolsversion not shown"
"$VDISK" info "$D/zeroed.vmdk" | grep -q "zeroed_grain: true" || fail "zeroed_grain not shown"
"$VDISK" info "$D/streamOptimized.vmdk" | grep -q "compression: deflate" || fail "compression not shown"
"$VDISK" info --json "$D/big-twoGbMaxExtentFlat.vmdk" >"$T/info.json"
python3 - "$T/info.json" <<'EOF' || fail "extent list or parent_cid: $(cat "$T/info.json")"
import json, sys
info = json.load(open(sys.argv[1]))
ext = info["vdiskfs"]["extents"]
assert "-f001.vmdk" in ext[0] and "-f003.vmdk" in ext[2], ext
assert "parent_cid" in info["vdiskfs"]
EOF
"$VDISK" info "$D/top.vmdk" | grep -q "parent_file_name_hint: mid.vmdk" || fail "parent hint not shown"

note "a child whose parent changed is refused with the reason"
if cat "$M/stale/child.vmdk" >/dev/null 2>&1; then
    fail "stale/child.vmdk was readable although its parent's CID changed"
fi
getfattr -n user.vdiskfs.error --only-values "$M/stale/child.vmdk" >"$T/err" 2>&1 || true
grep -q "CID" "$T/err" || fail "the error does not name the CID: $(cat "$T/err")"
if "$VDISK" info "$D/stale/child.vmdk" >"$T/out" 2>&1; then
    fail "vdisk info opened the stale child"
fi
grep -q "CID" "$T/out" || fail "vdisk does not name the CID: $(cat "$T/out")"

note "an extent outside IMAGEDIR is refused"
if cat "$M/escape.vmdk" >/dev/null 2>&1; then
    fail "escape.vmdk was readable"
fi
getfattr -n user.vdiskfs.error --only-values "$M/escape.vmdk" 2>&1 | grep -q "outside the image directory" ||
    fail "escape.vmdk error: $(getfattr -n user.vdiskfs.error --only-values "$M/escape.vmdk" 2>&1)"
unmount_vdiskfs "$M"

note "backing=any allows it"
mount_vdiskfs "$D" "$M" -o backing=any
cmp "$M/escape.vmdk" "$T/outside/secret.raw" || fail "escape.vmdk with backing=any"
unmount_vdiskfs "$M"

note "read-only mounts changed nothing"
find "$D" -type f -newer "$T/stamp" >"$T/changed"
[ ! -s "$T/changed" ] || fail "files changed under a read-only mount: $(cat "$T/changed")"
echo PASS
