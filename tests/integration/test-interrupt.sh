#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Long decodes stop when nobody waits for them any more (src/vd-interrupt.h).
# - A stat that makes the first pass over a gzip of 16 GiB of zeros (64
#   members, 16 MB) stops at SIGINT: the stat returns at once, the daemon
#   stops decoding (no CPU time after), and nothing is held against the
#   image: the next stat gets the size, user.vdiskfs.error stays empty.
# - An O_DIRECT read at the end of a single-frame zstd of 1 TiB of RLE
#   blocks (32 MB; about 40 s to decode here) keeps its reader unkillable until answered (the kernel
#   sends no INTERRUPT for it): SIGTERM to the daemon ends both within
#   seconds, not after the whole decode.
# - A buffered reader of that file killed and the mount unmounted: the
#   daemon exits within seconds instead of finishing the decode.
. "$TESTLIB"
require_fuse
for t in gzip zstd python3; do
    command -v $t >/dev/null || fail "$t is missing (contrib/install-deps.sh)"
done

D=$T/images M=$T/mnt
mkdir -p "$D"
head -c 256M /dev/zero | gzip -1 >"$T/one.gz"
for i in $(seq 64); do cat "$T/one.gz"; done >"$D/z.img.gz"
# One zstd frame of 2^23 RLE blocks of 128 KiB (no seek table, so one
# stream from the start), its size in the header.
python3 - "$D/rle.img.zst" <<'PY'
import struct, sys
blk, n = 128 << 10, 1 << 23
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<IBBQ", 0xFD2FB528, 0xC0, 0x38, blk * n))
    b = struct.pack("<I", (1 << 1) | (blk << 3))[:3] + b"\0"
    f.write(b * (n - 1))
    f.write(struct.pack("<I", 1 | (1 << 1) | (blk << 3))[:3] + b"\0")
PY
RLE_SIZE=$((1 << 40))
last=$((RLE_SIZE / 4096 - 1))

daemon_of() {
    pgrep -f "vdiskfs.* $1\$" | head -n1
}

# gone_within TENTHS PID: fail unless PID exits within TENTHS tenths of a second.
gone_within() {
    local i=0
    while kill -0 "$2" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le "$1" ] || fail "process $2 still runs after $(($1 / 10)) s"
        sleep 0.1
    done
}

# 1. The gzip's first pass, for a stat, interrupted.
mount_vdiskfs "$D" "$M"
pid=$(daemon_of "$M")
[ -n "$pid" ] || fail "no vdiskfs process for $M"
ls "$M" >/dev/null
start=$(date +%s%N)
RC=0
timeout -s INT 1 stat -c %s "$M/z.img" >"$T/size" 2>/dev/null || RC=$?
took=$((($(date +%s%N) - start) / 1000000))
[ "$RC" != 0 ] || fail "the stat of z.img finished before its SIGINT (in $took ms): is the gzip too small for this machine?"
[ $took -lt 2500 ] || fail "an interrupted stat took $took ms: the first pass did not stop"
sleep 0.3
t0=$(cpu_ticks "$pid")
sleep 1
t1=$(cpu_ticks "$pid")
[ $((t1 - t0)) -le 20 ] || fail "the daemon used $((t1 - t0)) ticks in the second after the stat gave up"
size=$(stat -c %s "$M/z.img")
[ "$size" = $((16 << 30)) ] || fail "z.img after the interrupted stat: size $size, want $((16 << 30))"
err=$(getfattr --only-values -n user.vdiskfs.error "$M/z.img" 2>/dev/null || true)
[ -z "$err" ] || fail "an interrupt left an error on z.img: $err"
note "gzip first pass: stopped after $took ms; a stat after it gets $size"

# 2. An unkillable O_DIRECT reader, freed by stopping the daemon.
[ "$(stat -c %s "$M/rle.img")" = $RLE_SIZE ] || fail "rle.img is not $RLE_SIZE bytes"
dd if="$M/rle.img" of=/dev/null bs=4k skip=$last count=1 iflag=direct 2>/dev/null &
dd=$!
sleep 1
kill -0 $dd 2>/dev/null || fail "the read at the end of rle.img finished in 1 s: too little to decode"
kill -TERM "$pid"
gone_within 100 "$pid"
gone_within 100 $dd
wait $dd 2>/dev/null && fail "the O_DIRECT read succeeded while the daemon was stopped"
umount -l "$M" 2>/dev/null || true
note "O_DIRECT reader and daemon gone after SIGTERM"

# 3. A killed buffered reader, then an unmount: the daemon leaves at once.
mount_vdiskfs "$D" "$M"
pid=$(daemon_of "$M")
dd if="$M/rle.img" of=/dev/null bs=4k skip=$last count=1 2>/dev/null &
dd=$!
sleep 1
kill -0 $dd 2>/dev/null || fail "the buffered read at the end of rle.img finished in 1 s"
kill -9 $dd
gone_within 50 $dd
wait $dd 2>/dev/null || true
fusermount3 -u "$M" || fail "cannot unmount $M"
gone_within 100 "$pid"
note "daemon gone after the unmount, its reader killed"
echo "PASS"
