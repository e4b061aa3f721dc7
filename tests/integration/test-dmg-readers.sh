#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Concurrent readers of a DMG whose chunks decode to 64 MiB each (the
# largest allowed; 4 GiB of zeros in a 4 MB file). Chunks are decoded
# whole; the cache held two, so with more than two readers every 1 MiB
# read inflated a whole 64 MiB chunk again (8 readers: 49 s and 145 s of
# daemon CPU). The cache now holds one chunk per concurrent reader, within
# a memory bound, and readers of a chunk being decoded wait for that one
# decode: 8 readers take a small multiple of the time of 2, and the daemon
# decodes each chunk about once.
. "$TESTLIB"
require_fuse

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
"$(dirname "$VDISK")/tests/unit/test-dmg" bomb "$D" || fail "generator"
mount_vdiskfs "$D" "$M"
VP=$(pgrep -f "vdiskfs.* $M\$" | head -1)
[ -n "$VP" ] || fail "no vdiskfs process for $M"

# readers FIRST N TENTHS: N readers at once, reader i reading chunk i
# (64 MiB, 1 MiB O_DIRECT requests), all done within TENTHS tenths of a
# second. Sets MS (wall time) and TICKS (daemon CPU) of the round.
readers() {
    local first=$1 n=$2 limit=$3 pids="" i k=0 t0 c0
    t0=$(date +%s%N)
    c0=$(cpu_ticks "$VP")
    for i in $(seq "$first" $((first + n - 1))); do
        dd if="$M/bomb.dmg" of=/dev/null bs=1M skip=$((i * 64)) count=64 iflag=direct status=none &
        pids="$pids $!"
    done
    for p in $pids; do
        while kill -0 "$p" 2>/dev/null; do
            k=$((k + 1))
            if [ $k -gt "$limit" ]; then
                # shellcheck disable=SC2086
                kill $pids 2>/dev/null || true
                # shellcheck disable=SC2086
                wait $pids 2>/dev/null || true
                fail "$n readers not done after $((limit / 10)) s (daemon CPU $(($(cpu_ticks "$VP") - c0)) ticks)"
            fi
            sleep 0.1
        done
        wait "$p" || fail "a reader of $n failed"
    done
    MS=$((($(date +%s%N) - t0) / 1000000))
    TICKS=$(($(cpu_ticks "$VP") - c0))
}

readers 1 2 600
ms2=$MS
note "2 readers: $ms2 ms, daemon CPU $TICKS ticks"
# Chunks nobody read yet: each must be decoded now.
readers 3 8 $(((8 * ms2 + 15000) / 100))
note "8 readers: $MS ms, daemon CPU $TICKS ticks"
[ "$TICKS" -lt 3000 ] || fail "8 readers cost $TICKS ticks of daemon CPU (8 decodes of 64 MiB are about 2 s)"
hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$VP/status")
note "daemon peak RSS $((hwm / 1024)) MiB"
[ "$hwm" -lt $((1536 * 1024)) ] || fail "daemon peak RSS $((hwm / 1024)) MiB"

note "what was read under concurrency reads as zeros"
cmp -s -n $((1 << 20)) /dev/zero "$M/bomb.dmg" || fail "chunk 0 differs from zeros"
dd if="$M/bomb.dmg" bs=1M skip=$((5 * 64)) count=64 status=none | cmp -s -n $((64 << 20)) - /dev/zero ||
    fail "chunk 5 differs from zeros"
unmount_vdiskfs "$M"
