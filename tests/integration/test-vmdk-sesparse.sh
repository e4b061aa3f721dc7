#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# seSparse extents through a real mount. qemu-img cannot make them, so
# mkvmdk writes them with the unit tests' generator, with the raw disk they
# hold. One extent lies alone (its descriptor lost): it is a disk of its
# own. A copy is named by a descriptor: it is hidden as that image's
# member. Both read as the generator's disk, holes included; neither is
# ever written; vdisk info names the subformat; a hostile header (the fuzz
# regression input) is listed, refused, and says why.
. "$TESTLIB"
require_fuse

MKVMDK=${MKVMDK:-$(dirname "$VDISK")/tests/integration/mkvmdk}
REGRESS=$(dirname "$TESTLIB")/../fuzz/regress/vmdk
D=$T/images M=$T/mnt
mkdir -p "$D" "$M"

note "make: a bare seSparse extent, a copy under a descriptor, a hostile one"
"$MKVMDK" sesparse "$D/lone.vmdk" "$T/expect.raw" || fail "mkvmdk sesparse"
cp "$D/lone.vmdk" "$D/snap-sesparse.vmdk"
cat >"$D/snap.vmdk" <<EOF
# Disk DescriptorFile
version=3
CID=00000001
parentCID=ffffffff
createType="seSparse"
RW 131072 SESPARSE "snap-sesparse.vmdk"
EOF
cp "$REGRESS/sesparse-capacity-past-directory" "$D/bad-capacity.vmdk"
cp "$REGRESS/sesparse-tables-past-eof" "$D/bad-tables.vmdk"
size=67108864
# Data grains 0, 3, 4095-4096, 8000 and 12287 (see mkvmdk.c); the rest are
# zero, unmapped or without a table: holes.
printf '%s\n' "0 4096" "12288 4096" "16773120 8192" "32768000 4096" "50327552 4096" >"$T/want.map"
"$VDTEST" zeromap "$T/expect.raw" 4096 >"$T/expect.map"
diff "$T/want.map" "$T/expect.map" >/dev/null ||
    fail "mkvmdk's disk is not the layout this test expects: $(cat "$T/expect.map")"

touch -d '1 minute ago' "$T/stamp"
find "$D" -type f -exec touch -d '2 minutes ago' {} +
mount_vdiskfs "$D" "$M" -o rw

note "listing: the bare extent and the descriptor, the member hidden"
ls "$M" >"$T/ls"
printf '%s\n' bad-capacity.vmdk bad-tables.vmdk lone.vmdk snap.vmdk >"$T/want.ls"
diff "$T/want.ls" "$T/ls" >/dev/null || fail "listing: $(cat "$T/ls"), expected $(cat "$T/want.ls")"
[ ! -e "$M/snap-sesparse.vmdk" ] || fail "lookup of the descriptor's member succeeds"

note "content and holes: the generator's disk, either way in"
for n in lone snap; do
    [ "$(stat -c %s "$M/$n.vmdk")" = $size ] || fail "$n.vmdk: size $(stat -c %s "$M/$n.vmdk"), expected $size"
    same_bytes "$T/expect.raw" "$M/$n.vmdk" "$n.vmdk"
    seek_map "$M/$n.vmdk" >"$T/$n.map"
    diff "$T/want.map" "$T/$n.map" >"$T/mapdiff" ||
        fail "$n.vmdk: data map differs (< expected, > vdiskfs): $(cat "$T/mapdiff")"
done
cmp "$M/lone.vmdk" "$M/snap.vmdk" || fail "the bare extent and the descriptor's image differ"
"$VDTEST" parread "$M/lone.vmdk" "$T/expect.raw" 4 20 || fail "parallel readers of lone.vmdk"

note "read-only, as seSparse is, on a read-write mount"
case $(stat -c %A "$M/lone.vmdk") in
*w*) fail "lone.vmdk has write bits: $(stat -c %A "$M/lone.vmdk")" ;;
esac
if printf x | dd of="$M/lone.vmdk" conv=notrunc status=none 2>"$T/dd.err"; then
    fail "a write to lone.vmdk succeeded"
fi
grep -q "Read-only file system" "$T/dd.err" || fail "the write failed otherwise: $(cat "$T/dd.err")"

note "attributes, st_blocks and vdisk info"
getfattr -n user.vdiskfs.format --only-values "$M/lone.vmdk" | grep -qx vmdk || fail "xattr format"
getfattr -n user.vdiskfs.cluster_size --only-values "$M/lone.vmdk" | grep -qx 4096 ||
    fail "xattr cluster_size"
[ "$(stat -c %b "$M/lone.vmdk")" = "$(stat -c %b "$D/lone.vmdk")" ] || fail "lone.vmdk: st_blocks"
host=$(stat -c %b "$D/snap.vmdk" "$D/snap-sesparse.vmdk" | awk '{ s += $1 } END { print s }')
[ "$(stat -c %b "$M/snap.vmdk")" = "$host" ] || fail "snap.vmdk: st_blocks is not the descriptor's and extent's $host"
"$VDISK" info "$D/lone.vmdk" >"$T/info" || fail "vdisk info lone.vmdk"
for want in "file format: vmdk" "virtual size: 64 MiB ($size bytes)" "create type: seSparse" \
    "create_type: seSparse" "extents: RW 131072 SESPARSE \"lone.vmdk\"" "grain_size: 4096"; do
    grep -qF "$want" "$T/info" || fail "vdisk info lacks '$want': $(cat "$T/info")"
done
grep -q "backing" "$T/info" && fail "a bare extent has a backing file: $(cat "$T/info")"

note "hostile headers: listed, refused with the reason"
for n in bad-capacity bad-tables; do
    if cat "$M/$n.vmdk" >/dev/null 2>&1; then
        fail "$n.vmdk was readable"
    fi
done
getfattr -n user.vdiskfs.error --only-values "$M/bad-capacity.vmdk" >"$T/err" 2>&1 || true
grep -q "capacity of 32768000 sectors .* needs 1000 grain directory entries" "$T/err" ||
    fail "bad-capacity.vmdk: error $(cat "$T/err")"
getfattr -n user.vdiskfs.error --only-values "$M/bad-tables.vmdk" >"$T/err" 2>&1 || true
grep -q "grain tables of .* beyond the end of the file" "$T/err" || fail "bad-tables.vmdk: error $(cat "$T/err")"
if "$VDISK" info "$D/bad-capacity.vmdk" >"$T/out" 2>&1; then
    fail "vdisk info opened bad-capacity.vmdk"
fi
grep -q "capacity" "$T/out" || fail "vdisk does not name the capacity: $(cat "$T/out")"
unmount_vdiskfs "$M"

note "nothing was written"
find "$D" -type f -newer "$T/stamp" >"$T/changed"
[ ! -s "$T/changed" ] || fail "files changed: $(cat "$T/changed")"
echo PASS
