#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Command lines: help, version, every refusal says why and mounts nothing.
. "$TESTLIB"
require_fuse

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
truncate -s 1M "$D/a.img"

"$VDISKFS" --help >"$T/help" 2>&1 || fail "--help exits non-zero"
grep -q "IMAGEDIR MOUNTPOINT" "$T/help" || fail "--help lacks the usage line"
grep -q "raw_ext" "$T/help" || fail "--help lacks raw_ext"
"$VDISKFS" --version | grep -q "^vdiskfs " || fail "--version"
"$VDISK" --version | grep -q "^vdisk [0-9]" || fail "vdisk --version"

note "every -o option --help prints is in vdiskfs(1), and the other way round"
man1=$(dirname "$TESTLIB")/../../man/vdiskfs.1
grep -o -- '-o [a-z_]*' "$T/help" | sed 's/-o //' | sort -u >"$T/help.opts"
grep -o '^\.B[IR]* "*\\-o [a-z_]*' "$man1" | sed 's/.*o //' | sort -u >"$T/man.opts"
[ -s "$T/help.opts" ] || fail "no options found in --help"
diff "$T/help.opts" "$T/man.opts" >"$T/opts.diff" ||
    fail "--help and vdiskfs(1) list different options (< help, > man): $(cat "$T/opts.diff")"

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
# Values are range-checked, the limit in the message, never wrapped or clamped.
expect_refusal "negative idle_timeout" "idle_timeout=-1: .*0 to 31536000" -o idle_timeout=-1 "$D" "$M"
expect_refusal "negative read_ahead" "read_ahead=-5" -o read_ahead=-5 "$D" "$M"
expect_refusal "read_ahead past the FUSE limit" "read_ahead=4096: .*to 1024" -o read_ahead=4096 "$D" "$M"
expect_refusal "negative attr_timeout" "attr_timeout=-3" -o attr_timeout=-3 "$D" "$M"
expect_refusal "attr_timeout not a number" "attr_timeout=nan" -o attr_timeout=nan "$D" "$M"
expect_refusal "cache_size not a size" "cache_size=abc: not a size" -o cache_size=abc "$D" "$M"
expect_refusal "kdf_max_iterations=0" "kdf_max_iterations=0" -o kdf_max_iterations=0 "$D" "$M"
expect_refusal "no arguments" "usage"
mkdir -p "$T/full"
touch "$T/full/file"
expect_refusal "non-empty mountpoint" "not empty" "$D" "$T/full"
mount_vdiskfs "$D" "$M"
if "$VDISKFS" "$D" "$M" 2>"$T/err"; then fail "a second mount on the same mountpoint succeeded"; fi
grep -q "already a mount point" "$T/err" || fail "mounting twice: $(cat "$T/err")"
[ "$(grep -c " $M " /proc/self/mountinfo)" = 1 ] || fail "mounting twice stacked a second mount"
unmount_vdiskfs "$M"
mount_vdiskfs "$D" "$T/full" -o nonempty
[ -f "$T/full/a.img" ] || fail "-o nonempty: the mount is not there"
unmount_vdiskfs "$T/full"
[ -f "$T/full/file" ] || fail "-o nonempty: the file underneath is gone"
expect_refusal "missing key file" "keyfile $T/nokeys: No such file" -o keyfile="$T/nokeys" "$D" "$M"
expect_refusal "key file that is a directory" "not a regular file" -o keyfile="$T" "$D" "$M"
printf 'passphrase hunter2-secret\n' >"$T/junk-keys"
chmod 600 "$T/junk-keys"
expect_refusal "not a key file" "not a key file" -o keyfile="$T/junk-keys" "$D" "$M"
! grep -q hunter2 "$T/err" || fail "the key file's content is echoed in the error: $(cat "$T/err")"
chmod 644 "$D/a.img"
printf '[a.img]\npassphrase=x\n' >"$T/keys"
chmod 644 "$T/keys"
expect_refusal "keyfile readable by others" "readable by group or others" -o keyfile="$T/keys" "$D" "$M"

note "bash completion offers every option and command"
comp=$(dirname "$TESTLIB")/../../contrib/bash-completion/vdiskfs
if command -v bash >/dev/null; then
    # complete WORDS...: what the completion function offers for the last word.
    complete_words() {
        local fn=$1
        shift
        bash -c '. "$1"; fn=$2; shift 2; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); compopt() { :; }; $fn; printf "%s\n" "${COMPREPLY[@]}"' \
            _ "$comp" "$fn" "$@"
    }
    while read -r opt; do
        complete_words _vdiskfs vdiskfs -o "$opt" | grep -q "^$opt" || fail "completion lacks -o $opt"
    done <"$T/help.opts"
    complete_words _vdiskfs vdiskfs -o ro,idle | grep -qx "ro,idle_timeout=" ||
        fail "completion of the last of several options: $(complete_words _vdiskfs vdiskfs -o ro,idle)"
    mkdir -p "$T/key dir"
    touch "$T/key dir/keys.ini"
    complete_words _vdiskfs vdiskfs -o "keyfile=$T/key d" | grep -qx "keyfile=$T/key dir" ||
        fail "keyfile= does not complete paths with spaces"
    for c in info map snapshots check partitions cat formats; do
        complete_words _vdisk vdisk "${c%??}" | grep -qx "$c" || fail "completion lacks vdisk $c"
    done
    complete_words _vdisk "$VDISK" info -f qc | grep -qx qcow2 || fail "vdisk -f does not complete formats"
fi

note "raw_ext decides which signature-less files are images"
truncate -s 1M "$D/disk.dsk"
mount_vdiskfs "$D" "$M" -o raw_ext=dsk
[ -f "$M/disk.dsk" ] || fail "raw_ext=dsk: disk.dsk not shown"
[ ! -e "$M/a.img" ] || fail "raw_ext=dsk: a.img still shown"
unmount_vdiskfs "$M"

note "vdisk info and map"
"$VDISK" info "$D/a.img" | grep -q "file format: raw" || fail "vdisk info"
"$VDISK" info --json "$D/a.img" >"$T/info.json"
python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["virtual-size"] != 1048576)' "$T/info.json" ||
    fail "vdisk info --json: $(cat "$T/info.json")"
dd if=/dev/urandom of="$D/a.img" bs=64k count=1 seek=2 conv=notrunc status=none
"$VDISK" map --json "$D/a.img" >"$T/map.json"
grep -q '"start":131072,"length":65536,"depth":0,"present":true,"zero":false,"data":true' "$T/map.json" ||
    fail "vdisk map --json: $(cat "$T/map.json")"
if "$VDISK" info "$T/nope.img" 2>"$T/err"; then fail "vdisk info on a missing file"; fi
grep -q "nope.img" "$T/err" || fail "vdisk error does not name the file"
note "vdiskfs-formats(7) names the drivers vdisk formats prints and -f accepts, in 80 columns"
man7=$(dirname "$TESTLIB")/../../man/vdiskfs-formats.7
"$VDISK" formats | awk '{ print $1 }' | sort >"$T/drivers"
[ -s "$T/drivers" ] || fail "vdisk formats printed nothing"
sed -n '/^\.TS/,/^\.TE/p' "$man7" | grep ';' | sed -n '3,$p' | cut -d';' -f1 | sort >"$T/man.drivers"
diff "$T/drivers" "$T/man.drivers" >"$T/drivers.diff" ||
    fail "the format table's drivers differ from vdisk formats (< vdisk, > man): $(cat "$T/drivers.diff")"
while read -r d; do
    grep -qE "^\.BR? $d( |\$)" "$man7" || fail "vdiskfs-formats(7) has no section for $d"
done <"$T/drivers"
if command -v man >/dev/null; then
    w=$(MANWIDTH=80 man --warnings -l "$man7" 2>&1 >/dev/null)
    [ -z "$w" ] || fail "vdiskfs-formats(7) at 80 columns: $w"
fi
note "man pages render without warnings"
for page in "$(dirname "$TESTLIB")"/../../man/*.[0-9]; do
    out=$(groff -t -man -ww -z "$page" 2>&1) || fail "groff failed on $page"
    [ -z "$out" ] || fail "$page: $out"
done
echo PASS
