#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# VHDX: the daemon killed with SIGKILL again and again while a writer
# makes 4 KiB writes at random offsets, each allocating a block (a BAT
# update), each followed by fsync. After every kill qemu-img check must
# accept the image as it is, read-only and without -r: a metadata log left
# live by the kill makes QEMU refuse to open it (repro 09). And every
# write whose fsync returned must read back through QEMU.
. "$TESTLIB"
require_fuse
require_qemu

ROUNDS=${VHDX_KILL_ROUNDS:-10}
D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
SIZE=$((64 * 1024 * 1024 * 1024))
img=$D/kill.vhdx
# 1 MiB blocks over 64 GiB: every random write allocates a block.
qemu-img create -q -f vhdx -o block_size=1M "$img" $SIZE
: >"$T/log"

# check_fsynced ROUND: every write whose fsync returned reads back through
# QEMU (qemu-io, read-only): its value, or that of a later write to the
# same place that was in flight at a kill.
check_fsynced() {
    "$VDTEST" fsyncexpect "$T/log" >"$T/expect"
    awk 'NF == 2 { printf "read -P %d %s 4096\n", $2, $1 }' "$T/expect" >"$T/cmds"
    qemu-io -r -f vhdx "$img" <"$T/cmds" >"$T/io.out" 2>&1 ||
        fail "round $1: fsynced data lost: $(grep -m 3 -i 'fail' "$T/io.out")"
    awk 'NF > 2' "$T/expect" | while read -r off vals; do
        ok=no
        for v in $vals; do
            if qemu-io -r -f vhdx -c "read -P $v $off 4096" "$img" 2>&1 | grep -q -i fail; then
                continue
            fi
            ok=yes
            break
        done
        [ $ok = yes ] || fail "round $1: offset $off holds none of $vals"
    done || exit 1
}
round=0
while [ $round -lt "$ROUNDS" ]; do
    kill_while_writing "$D" "$M" $round \
        "$VDTEST" fsyncwriter "$M/kill.vhdx" $SIZE 4096 $((round + 1)) "$T/log"
    rc=0
    qemu-img check -f vhdx "$img" >"$T/check" 2>&1 || rc=$?
    # 0: clean; 3: leaked blocks only (allowed after a crash).
    [ $rc = 0 ] || [ $rc = 3 ] ||
        fail "round $round: qemu-img check (read-only) exit $rc: $(cat "$T/check")"
    check_fsynced $round
    note "round $round: check exit $rc, $(wc -l <"$T/expect") fsynced writes read back"
    round=$((round + 1))
done
n=$(grep -c "^done" "$T/log")
[ "$n" -ge $((ROUNDS * 5)) ] || fail "the writer hardly wrote ($n writes)"
note "$n fsynced writes in $ROUNDS rounds"
echo PASS
