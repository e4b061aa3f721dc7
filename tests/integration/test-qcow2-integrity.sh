#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# qcow2 writes on hostile images never cost data: an L2 entry that points
# at the L1 table (the write is refused with EIO, the L1 table survives,
# the image gets QEMU's corrupt bit, one log line says why), and a
# refcount table entry that points at the refcount table itself (the
# image is served read-only: no acknowledged write that is not there).
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"

# low56 FILE OFFSET: the big-endian 64-bit value there without its top
# byte (flags), in decimal.
low56() {
    printf '%d' "0x$(od -An -tx1 -j $(($2 + 1)) -N7 "$1" | tr -d ' \n')"
}

# put_be64 FILE OFFSET VALUE [TOPBYTE]: store VALUE (< 2^56) big-endian;
# TOPBYTE (hex, default 00) replaces its most significant byte.
put_be64() {
    local hex esc i
    hex=${4:-00}$(printf '%014x' "$3")
    esc=""
    for i in 0 2 4 6 8 10 12 14; do
        esc="$esc\\$(printf '%03o' "0x$(echo "$hex" | cut -c$((i + 1))-$((i + 2)))")"
    done
    # shellcheck disable=SC2059
    printf "$esc" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# start_daemon LOG [options]: a foreground daemon whose messages go to LOG.
start_daemon() {
    local log=$1 i=0
    shift
    "$VDISKFS" -f "$@" "$D" "$M" 2>"$log" &
    PID=$!
    MOUNTS="$MOUNTS $M"
    while ! mountpoint -q "$M" && [ $i -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    mountpoint -q "$M" || fail "vdiskfs -f $* did not mount"
}

stop_daemon() {
    fusermount3 -u "$M" || fail "cannot unmount $M"
    wait "$PID" || fail "vdiskfs exited with status $?"
}

# byte_at FILE OFFSET: the byte there, as two hex digits.
byte_at() {
    od -An -tx1 -j "$2" -N1 "$1" | tr -d ' \n'
}

note "an L2 entry (COPIED) that points at the L1 table: the write is refused"
qemu-img create -q -f qcow2 "$D/a.qcow2" 64M
qemu-io -f qcow2 -c "write -P 0x5a 0 64k" -c "write -P 0x6b 1M 64k" "$D/a.qcow2" >/dev/null
l1=$(low56 "$D/a.qcow2" 40)
l2=$(($(low56 "$D/a.qcow2" "$l1") & ~511))
put_be64 "$D/a.qcow2" $((l2 + 64 * 8)) "$l1" 80 # guest 4 MiB -> the L1 cluster
start_daemon "$T/log04" -o rw
got=$("$VDTEST" errno "$M/a.qcow2" pwrite $((4 << 20)) 65536 238)
[ "$got" = EIO ] || fail "write over the L1 table: expected EIO, got $got"
got=$("$VDTEST" errno "$M/a.qcow2" pwrite $((8 << 20)) 4096 238)
[ "$got" = EIO ] || fail "second write to the corrupt image: expected EIO, got $got"
stop_daemon
qemu-img convert -O raw "$D/a.qcow2" "$T/a.raw" || fail "qemu-img convert after the refused write"
[ "$(byte_at "$T/a.raw" 0)" = 5a ] || fail "guest 0: expected 5a, got $(byte_at "$T/a.raw" 0)"
[ "$(byte_at "$T/a.raw" 1048576)" = 6b ] ||
    fail "guest 1 MiB: expected 6b, got $(byte_at "$T/a.raw" 1048576)"
[ "$(byte_at "$T/a.raw" 4194304)" != ee ] || fail "the refused data reads back at guest 4 MiB"
qemu-img info "$D/a.qcow2" | grep -q "corrupt: true" ||
    fail "qemu-img info does not report corrupt: true: $(qemu-img info "$D/a.qcow2")"
n=$(grep -c "L1 table" "$T/log04" || true)
[ "$n" = 1 ] || fail "expected one log line naming the L1 table, got $n: $(cat "$T/log04")"
grep -q "corrupt" "$T/log04" || fail "the log line does not say the image is corrupt: $(cat "$T/log04")"
note "$(cat "$T/log04")"
start_daemon "$T/log04b" -o rw
got=$("$VDTEST" errno "$M/a.qcow2" open-rw)
[ "$got" = EROFS ] || fail "reopening the corrupt-flagged image for writing: expected EROFS, got $got"
stop_daemon

note "the same after a first write: the overwrite takes the fast path, and is refused there"
rm -f "$D"/*
qemu-img create -q -f qcow2 "$D/a.qcow2" 64M
qemu-io -f qcow2 -c "write -P 0x5a 0 64k" -c "write -P 0x6b 1M 64k" "$D/a.qcow2" >/dev/null
l1=$(low56 "$D/a.qcow2" 40)
l2=$(($(low56 "$D/a.qcow2" "$l1") & ~511))
put_be64 "$D/a.qcow2" $((l2 + 64 * 8)) "$l1" 80
start_daemon "$T/log04c" -o rw
exec 3<>"$M/a.qcow2" # keeps the image open read-write between the writes
got=$("$VDTEST" errno "$M/a.qcow2" pwrite 4096 4096 90)
[ "$got" = OK ] || fail "a sound overwrite at 4 KiB: $got"
got=$("$VDTEST" errno "$M/a.qcow2" pwrite $((4 << 20)) 4096 238)
[ "$got" = EIO ] || fail "fast write over the L1 table: expected EIO, got $got"
exec 3>&-
stop_daemon
qemu-img convert -O raw "$D/a.qcow2" "$T/a.raw" || fail "qemu-img convert after the refused fast write"
[ "$(byte_at "$T/a.raw" 0)" = 5a ] && [ "$(byte_at "$T/a.raw" 4096)" = 5a ] &&
    [ "$(byte_at "$T/a.raw" 1048576)" = 6b ] || fail "the L1 table did not survive the fast write"
[ "$(grep -c "L1 table" "$T/log04c")" = 1 ] || fail "log: $(cat "$T/log04c")"

note "a refcount table entry that points at the refcount table: read-only, nothing lost"
rm -f "$D"/*
qemu-img create -q -f qcow2 "$D/b.qcow2" 64M
qemu-io -f qcow2 -c "write -P 0x5a 0 64k" -c "write -P 0x6b 1M 64k" "$D/b.qcow2" >/dev/null
rt=$(low56 "$D/b.qcow2" 48)
put_be64 "$D/b.qcow2" "$rt" "$rt"
cp "$D/b.qcow2" "$T/b-crafted.qcow2"
qemu-img check "$T/b-crafted.qcow2" 2>&1 | grep -E "ERROR|Leaked" | sort >"$T/check-before"
start_daemon "$T/log05" -o rw
for spec in "0 161" "2097152 178" "8388608 195" "33554432 212"; do
    # shellcheck disable=SC2086
    set -- $spec
    got=$("$VDTEST" errno "$M/b.qcow2" writeback "$1" 65536 "$2")
    case $got in
    WRONG) fail "write at $1 was acknowledged but reads back other data" ;;
    OK | EROFS | EIO) ;;
    *) fail "write at $1: unexpected $got" ;;
    esac
done
stop_daemon
grep -q "refcount block at 0x$(printf '%x' "$rt") overlaps refcount table" "$T/log05" ||
    fail "the log does not say why the image is read-only: $(cat "$T/log05")"
grep -q "read-only" "$T/log05" || fail "the log does not say the image is read-only: $(cat "$T/log05")"
note "$(cat "$T/log05")"
qemu-img check "$D/b.qcow2" 2>&1 | grep -E "ERROR|Leaked" | sort >"$T/check-after"
diff "$T/check-before" "$T/check-after" >"$T/check.diff" ||
    fail "qemu-img check reports new problems (< before, > after): $(cat "$T/check.diff")"
cmp "$D/b.qcow2" "$T/b-crafted.qcow2" || fail "the read-only image was modified"
qemu-img convert -O raw "$D/b.qcow2" "$T/b.raw" || fail "qemu-img convert of b.qcow2"
[ "$(byte_at "$T/b.raw" 0)" = 5a ] && [ "$(byte_at "$T/b.raw" 1048576)" = 6b ] ||
    fail "b.qcow2 lost its data"
echo PASS
