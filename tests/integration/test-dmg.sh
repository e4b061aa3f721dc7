#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# DMG images through a real mount. Debian has no DMG creator, so the unit
# test's generator writes them from the format facts (test-dmg gen): raw,
# zero, ignore, zlib, bzip2, LZMA and ADC chunks, gaps, an XML plist or a
# classic resource fork, a data fork offset. Bytes are compared with the
# source data, and with qemu-img convert -f dmg where QEMU can read the
# chunk types (QEMU 7.2: raw, ignore, zlib; bzip2 only with its dmg-bz2
# module, which Debian does not ship). QEMU's dmg driver has no block
# status (qemu-img map calls everything data), so the hole map is compared
# with the generator's: zero, ignore and uncovered sectors are holes.
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
UNIT=$(dirname "$VDISK")/tests/unit
"$UNIT/test-dmg" gen "$D" || fail "generator"
mv "$D"/*.expect "$D"/*.map "$T/"

mount_vdiskfs "$D" "$M"
note "content equals the source, holes equal the zero chunks"
for f in qemu qemu-prefix qemu-rsrc bz2 all all-rsrc; do
    [ "$(stat -c %s "$M/$f.dmg")" = "$(stat -c %s "$T/$f.expect")" ] || fail "$f.dmg: size"
    same_bytes "$T/$f.expect" "$M/$f.dmg" "$f.dmg"
    seek_map "$M/$f.dmg" >"$T/vmap"
    diff "$T/$f.map" "$T/vmap" >"$T/mapdiff" ||
        fail "$f.dmg: data map (< chunks, > vdiskfs): $(cat "$T/mapdiff")"
done

note "content equals qemu-img convert -f dmg"
for f in qemu qemu-prefix qemu-rsrc; do
    qemu-img convert -f dmg -O raw "$D/$f.dmg" "$T/q.raw" 2>/dev/null || fail "qemu-img convert $f.dmg"
    same_bytes "$T/q.raw" "$M/$f.dmg" "$f.dmg (qemu)"
    want=$(qemu-img info -f dmg --output=json "$D/$f.dmg" 2>/dev/null | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
    [ "$(stat -c %s "$M/$f.dmg")" = "$want" ] || fail "$f.dmg: size differs from qemu-img's $want"
done
if qemu-img convert -f dmg -O raw "$D/bz2.dmg" "$T/q.raw" 2>"$T/qerr" && ! grep -q "dmg-bz2 not found" "$T/qerr"; then
    same_bytes "$T/q.raw" "$M/bz2.dmg" "bz2.dmg (qemu)"
else
    note "qemu-img has no bzip2 DMG support (module dmg-bz2 missing): bzip2 checked against the source only"
fi

note "LZFSE: that chunk fails, the rest reads"
dd if="$M/lzfse.dmg" of="$T/head" bs=512 count=8 status=none || fail "sectors before the LZFSE chunk"
cmp -s -n 4096 "$T/head" "$T/lzfse.expect" || fail "sectors before the LZFSE chunk differ"
dd if="$M/lzfse.dmg" of="$T/tail" bs=512 skip=24 count=8 status=none || fail "sectors after the LZFSE chunk"
if dd if="$M/lzfse.dmg" of=/dev/null bs=512 skip=8 count=1 status=none 2>/dev/null; then
    fail "the LZFSE chunk was readable"
fi
"$VDISK" cat "$D/lzfse.dmg" >/dev/null 2>"$T/err" && fail "vdisk cat of the LZFSE image succeeded"
grep -q "unsupported chunk type 0x80000007 (LZFSE)" "$T/err" || fail "LZFSE error: $(cat "$T/err")"

note "describe, xattrs, parallel readers"
getfattr --absolute-names -n user.vdiskfs.format --only-values "$M/all.dmg" | grep -qx dmg || fail "format xattr"
"$VDISK" info "$D/all.dmg" >"$T/info"
grep -q "chunk_types: .*LZMA: 1" "$T/info" || fail "vdisk info: $(cat "$T/info")"
grep -q "block_tables: XML property list" "$T/info" || fail "vdisk info: $(cat "$T/info")"
"$VDISK" info "$D/all-rsrc.dmg" | grep -q "block_tables: resource fork" || fail "vdisk info (resource fork)"
"$VDTEST" parread "$M/all.dmg" "$T/all.expect" 8 40 || fail "parallel readers"
unmount_vdiskfs "$M"
echo PASS
