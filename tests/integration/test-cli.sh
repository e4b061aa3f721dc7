#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Command lines: help, version, every refusal says why and mounts nothing.
. "$TESTLIB"
require_fuse

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
truncate -s 1M "$D/a.img"

"$VDISKFS" --help >"$T/help" || fail "--help exits non-zero"
grep -q "IMAGEDIR MOUNTPOINT" "$T/help" || fail "--help lacks the usage line"
grep -q "raw_ext" "$T/help" || fail "--help lacks raw_ext"
"$VDISKFS" --version | grep -q "^vdiskfs " || fail "--version"

# expect_refusal WHAT PATTERN ARGS...: non-zero exit, one line naming the problem.
expect_refusal() {
    local what=$1 pattern=$2
    shift 2
    if "$VDISKFS" "$@" >"$T/out" 2>"$T/err"; then
        fail "$what: vdiskfs succeeded"
    fi
    grep -qiE -- "$pattern" "$T/err" || fail "$what: stderr does not say '$pattern': $(cat "$T/err")"
    [ "$(wc -l <"$T/err")" -le 2 ] || fail "$what: more than a line or two on stderr: $(cat "$T/err")"
    ! mountpoint -q "$M" || fail "$what: left something mounted"
}
expect_refusal "missing IMAGEDIR" "No such file" "$T/nope" "$M"
expect_refusal "IMAGEDIR not a directory" "not a directory" "$D/a.img" "$M"
expect_refusal "missing mountpoint" "mount.?point" "$D" "$T/nomnt"
expect_refusal "unknown option" "unknown option" -o frobnicate "$D" "$M"
expect_refusal "bad backing policy" "backing" -o backing=sometimes "$D" "$M"
expect_refusal "mountpoint inside IMAGEDIR" "inside" "$D" "$D"
expect_refusal "no arguments" "usage"
chmod 644 "$D/a.img"
printf '[a.img]\npassphrase=x\n' >"$T/keys"
chmod 644 "$T/keys"
expect_refusal "keyfile readable by others" "readable by group or others" -o keyfile="$T/keys" "$D" "$M"

note "raw_ext decides which signature-less files are images"
truncate -s 1M "$D/disk.dsk"
mount_vdiskfs "$D" "$M" -o raw_ext=dsk
[ -f "$M/disk.dsk" ] || fail "raw_ext=dsk: disk.dsk not shown"
[ ! -e "$M/a.img" ] || fail "raw_ext=dsk: a.img still shown"
unmount_vdiskfs "$M"

note "vdisk info and map"
"$VDISK" info "$D/a.img" | grep -q "file format: raw" || fail "vdisk info"
"$VDISK" info --json "$D/a.img" | grep -q '"virtual_size": 1048576' || fail "vdisk info --json"
dd if=/dev/urandom of="$D/a.img" bs=64k count=1 seek=2 conv=notrunc status=none
"$VDISK" map --json "$D/a.img" >"$T/map.json"
grep -q '"start": 131072, "length": 65536, "depth": 0, "present": true, "zero": false, "data": true' "$T/map.json" ||
    fail "vdisk map --json: $(cat "$T/map.json")"
if "$VDISK" info "$T/nope.img" 2>"$T/err"; then fail "vdisk info on a missing file"; fi
grep -q "nope.img" "$T/err" || fail "vdisk error does not name the file"
note "man pages render without warnings"
for page in "$(dirname "$TESTLIB")"/../../man/*.[0-9]; do
    out=$(groff -t -man -ww -z "$page" 2>&1) || fail "groff failed on $page"
    [ -z "$out" ] || fail "$page: $out"
done
echo PASS
