#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# EWF evidence files as ewfacquire (ewf-tools) writes them, in every format
# it offers and several compression levels, chunk and segment sizes: each
# set is one file named without .E01/.s01, its later segments hidden; its
# bytes equal the source disk and ewfverify agrees; zero chunks stored
# compressed are holes; the stored MD5/SHA1 and the case metadata are
# xattrs; damaged sets are listed with their reason and harm no other.
. "$TESTLIB"
require_fuse
for t in ewfacquire ewfverify sfdisk mkfs.ext4 debugfs qemu-io; do
    command -v $t >/dev/null || fail "$t is missing (apt-get install ewf-tools fdisk e2fsprogs)"
done

D=$T/images M=$T/mnt S=$T/src
mkdir -p "$D" "$M" "$S/files"

note "the source: a partition table, ext4, random data and zero runs, a partial last chunk"
SIZE=$((16 * 1048576 + 7 * 512))
truncate -s $SIZE "$S/disk.raw"
printf 'label: dos\nstart=2048,size=12288,type=83\n' | sfdisk -q "$S/disk.raw" >/dev/null
head -c 300000 /dev/urandom >"$S/files/blob"
echo "evidence" >"$S/files/note.txt"
mkfs.ext4 -q -F -d "$S/files" "$S/part.raw" 6M >/dev/null 2>&1 || fail "mkfs.ext4"
dd if="$S/part.raw" of="$S/disk.raw" bs=1M seek=1 conv=notrunc status=none
head -c 2M /dev/urandom | dd of="$S/disk.raw" bs=1M seek=8 conv=notrunc status=none
head -c 1M /dev/urandom | dd of="$S/disk.raw" bs=1M seek=14 conv=notrunc status=none
printf 'end of the disk' | dd of="$S/disk.raw" bs=1 seek=$((SIZE - 100)) conv=notrunc status=none
MD5=$(md5sum <"$S/disk.raw" | cut -d' ' -f1)
SHA1=$(sha1sum <"$S/disk.raw" | cut -d' ' -f1)

# acquire NAME ARGS...: the set NAME.E01... in $D, from the source.
acquire() {
    name=$1
    shift
    ewfacquire -u -q -C "case $name" -E "ev-7" -e "A. Examiner" -D "disk of $name" \
        -N "notes: seized 2024" "$@" -t "$D/$name" "$S/disk.raw" >"$T/acquire.log" 2>&1 ||
        fail "ewfacquire $* for $name: $(tail -3 "$T/acquire.log")"
}

# Every format, default compression (none), one segment.
FORMATS="ewf smart ftk encase2 encase3 encase4 encase5 encase6 encase7 encase7-v2 linen5 linen6
linen7 ewfx"
for f in $FORMATS; do
    acquire "$f" -f "$f" -c fast
done
# Compression levels, chunk sizes, segment sizes (the minimum is 1 MiB).
acquire none-seg -f encase6 -c none -S 1MiB
acquire empty-b16 -f encase5 -c empty-block -b 16
acquire best-sha1 -f encase6 -c best -b 128 -S 4MiB -d sha1
acquire fast-seg -f linen6 -c fast -S 2MiB -b 32
acquire smart-seg -f smart -c best -S 3MiB
acquire ewf-none -f ewf -c none
acquire ftk-empty -f ftk -c empty-block -S 5MiB
acquire e7-b256 -f encase7 -c none -b 256 -d sha1
VARIANTS="$FORMATS none-seg empty-b16 best-sha1 fast-seg smart-seg ewf-none ftk-empty e7-b256"
chunk_of() {
    case $1 in empty-b16) echo 8192 ;; best-sha1) echo 65536 ;; fast-seg) echo 16384 ;;
    e7-b256) echo 131072 ;; *) echo 32768 ;; esac
}
compressed() {
    case $1 in none-seg | ewf-none | e7-b256) return 1 ;; *) return 0 ;; esac
}
[ -f "$D/none-seg.E17" ] || fail "ewfacquire -S 1MiB wrote no 17th segment: $(ls "$D")"
for v in $VARIANTS; do
    first=$(ls "$D" | grep -E "^$v\.(E01|e01|s01)\$") || fail "no first segment for $v: $(ls "$D")"
    ewfverify -q "$D/$first" >"$T/verify.log" 2>&1 || fail "ewfverify $first: $(tail -3 "$T/verify.log")"
done

note "damaged sets beside them"
mkdir -p "$T/a" "$T/b"
ewfacquire -u -q -f encase6 -c none -S 1MiB -t "$T/a/set" "$S/disk.raw" >/dev/null 2>&1 ||
    fail "ewfacquire for the damaged sets"
# Another acquisition: libewf leaves the set identifier zero, so only a
# different geometry tells its segments apart.
ewfacquire -u -q -f encase6 -c none -S 1MiB -b 128 -t "$T/b/set" "$S/disk.raw" >/dev/null 2>&1 ||
    fail "ewfacquire for the damaged sets"
for e in E01 E02 E03; do cp "$T/a/set.$e" "$D/cut.$e"; done
for e in E04 E05 E06 E07 E08 E09 E10 E11 E12 E13 E14 E15 E16 E17; do
    ln "$T/a/set.$e" "$D/cut.$e"
done
truncate -s 500000 "$D/cut.E02"
for e in E01 E03 E04 E05 E06 E07 E08 E09 E10 E11 E12 E13 E14 E15 E16 E17; do
    ln "$T/a/set.$e" "$D/gap.$e" # no E02
done
for e in E01 E03 E04 E05 E06 E07 E08 E09 E10 E11 E12 E13 E14 E15 E16 E17; do
    ln "$T/a/set.$e" "$D/mixed.$e"
done
cp "$T/b/set.E02" "$D/mixed.E02" # another acquisition's segment 2
ewfacquire -u -q -f encase6 -c none -t "$D/flip" "$S/disk.raw" >/dev/null 2>&1
printf '\377' | dd of="$D/flip.E01" bs=1 seek=3000000 conv=notrunc status=none
ewfacquire -u -q -f encase6 -c none -t "$T/tbl" "$S/disk.raw" >/dev/null 2>&1
cp "$T/tbl.E01" "$D/table.E01"
# Both copies of the chunk table damaged: its entries fail their checksum.
for off in $(grep -obUa 'table' "$D/table.E01" | cut -d: -f1); do
    printf '\001\002\003\004' | dd of="$D/table.E01" bs=1 seek=$((off + 100)) conv=notrunc status=none
done
printf 'EVF2\r\n\201\000\002\001\001\000\001\000\000\000' >"$D/newer.Ex01"
head -c 4096 /dev/zero >>"$D/newer.Ex01"

mount_vdiskfs "$D" "$M"
ls "$M" >"$T/ls"

note "one file per evidence set, named without .E01, segments hidden"
for v in $VARIANTS cut gap mixed flip table newer; do
    grep -qx "$v" "$T/ls" || fail "$v is not listed: $(tr '\n' ' ' <"$T/ls")"
done
if grep -Eiq '\.(e[0-9a-z]{2}|s[0-9]{2}|ex01)$' "$T/ls"; then
    fail "segment files are listed: $(grep -Ei '\.(e|s)' "$T/ls" | tr '\n' ' ')"
fi

note "bytes equal the source; ewfverify agreed; holes are the zero chunks"
for v in $VARIANTS; do
    [ "$(stat -c %s "$M/$v")" = "$SIZE" ] || fail "$v: size $(stat -c %s "$M/$v"), expected $SIZE"
    same_bytes "$S/disk.raw" "$M/$v" "$v"
    seek_map "$M/$v" >"$T/got.map"
    if compressed "$v"; then
        "$VDTEST" zeromap "$S/disk.raw" "$(chunk_of "$v")" >"$T/want.map"
    else
        echo "0 $SIZE" >"$T/want.map" # stored as they are: data, not read to tell
    fi
    diff "$T/want.map" "$T/got.map" >"$T/map.diff" ||
        fail "$v: holes differ from the zero chunks (< expected, > got): $(cat "$T/map.diff")"
done
# Host space: all the segments.
want_kib=$(du -kc "$D"/none-seg.E* | tail -1 | cut -f1)
[ "$(du -k "$M/none-seg" | cut -f1)" = "$want_kib" ] ||
    fail "none-seg: du $(du -k "$M/none-seg" | cut -f1) KiB, its segments take $want_kib"
# Several readers at once, out of order.
"$VDTEST" parread "$M/best-sha1" "$S/disk.raw" 4 50 || fail "best-sha1: concurrent reads"
"$VDTEST" parread "$M/none-seg" "$S/disk.raw" 4 50 || fail "none-seg: concurrent reads"

note "the partition inside: the ext4 file system reads"
cmp "$M/.partitions/encase6/p1" "$S/part.raw" || fail "encase6: partition 1 differs"
debugfs -R "cat /note.txt" "$M/.partitions/linen7/p1" 2>/dev/null | grep -qx evidence ||
    fail "linen7: the file in its ext4 partition"

note "stored hashes and case metadata as xattrs"
xa() { getfattr -n "user.vdiskfs.ewf.$2" --only-values "$M/$1" 2>/dev/null; }
for v in $VARIANTS; do
    [ "$(xa "$v" md5)" = "$MD5" ] || fail "$v: user.vdiskfs.ewf.md5 is '$(xa "$v" md5)', md5sum $MD5"
    [ "$(xa "$v" case_number)" = "case $v" ] || fail "$v: case_number '$(xa "$v" case_number)'"
    [ "$(xa "$v" evidence_number)" = ev-7 ] || fail "$v: evidence_number '$(xa "$v" evidence_number)'"
    [ "$(xa "$v" examiner)" = "A. Examiner" ] || fail "$v: examiner '$(xa "$v" examiner)'"
    [ "$(xa "$v" description)" = "disk of $v" ] || fail "$v: description '$(xa "$v" description)'"
    [ "$(xa "$v" notes)" = "notes: seized 2024" ] || fail "$v: notes '$(xa "$v" notes)'"
    xa "$v" acquiry_date | grep -Eq '^20[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z?$' ||
        fail "$v: acquiry_date '$(xa "$v" acquiry_date)'"
    case $v in ewf | ewf-none) ;; # the original EWF header has no version
    *) [ -n "$(xa "$v" acquiry_software)" ] || fail "$v: no acquiry_software" ;;
    esac
done
for v in best-sha1 e7-b256; do
    [ "$(xa "$v" sha1)" = "$SHA1" ] || fail "$v: user.vdiskfs.ewf.sha1 '$(xa "$v" sha1)', sha1sum $SHA1"
done
[ "$(xa none-seg segments)" = 17 ] || fail "none-seg: segments '$(xa none-seg segments)'"

note "later segments are locked while the set is open (QEMU cannot write them)"
exec 3<"$M/none-seg"
if qemu-io -f raw -c "write 0 512" "$D/none-seg.E09" >"$T/qemu.log" 2>&1; then
    fail "qemu-io wrote a segment of an open set"
fi
grep -qi lock "$T/qemu.log" || fail "qemu-io failed otherwise: $(cat "$T/qemu.log")"
exec 3<&-

note "damaged sets: EIO, the reason in user.vdiskfs.error, the others unharmed"
reason() { getfattr -n user.vdiskfs.error --only-values "$M/$1" 2>/dev/null; }
expect_err() {
    r=$("$VDTEST" errno "$M/$1" read)
    [ "$r" = EIO ] || fail "$1: read gave $r, expected EIO"
    reason "$1" | grep -q "$2" || fail "$1: user.vdiskfs.error '$(reason "$1")' does not say '$2'"
}
expect_err cut "segment 2"
expect_err gap "gap.E02"
expect_err mixed "another evidence set"
expect_err newer "EWF2"
expect_err table "bad checksum"
# A damaged chunk: what lies before it reads, the chunk is an EIO.
dd if="$M/flip" bs=64k count=8 status=none | cmp -s -n 524288 - "$S/disk.raw" ||
    fail "flip: the chunks before the damaged one"
cat "$M/flip" >/dev/null 2>&1 && fail "flip: the damaged chunk read without error"
reason flip | grep -q "fails its checksum" || fail "flip: user.vdiskfs.error '$(reason flip)'"
same_bytes "$S/disk.raw" "$M/encase6" "encase6 after the damaged sets"
unmount_vdiskfs "$M"
echo PASS
