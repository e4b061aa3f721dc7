#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# FUSE over io_uring: where the kernel offers it (fuse.enable_uring=1,
# which the test turns on as root), the mount serves requests through its
# ring entries: reads of every size equal the image's raw bytes, writes
# reach the image (qemu-img check and compare agree), readdir, stat and
# xattrs work, many readers at once are served, and a killed daemon leaves
# a mount that unmounts. Each entry's thread runs on its queue's CPU, and
# the threads it starts (the decode pool) wherever the process may. The
# default is the ring of 4 entries where the kernel has it on; -o uring=off
# serves /dev/fuse only. Without the kernel's support the mount works over
# /dev/fuse.
. "$TESTLIB"
require_fuse
require_qemu

P=/sys/module/fuse/parameters/enable_uring
D=$T/img M=$T/mnt
mkdir -p "$D" "$M"
if [ -e $P ] && [ "$(cat $P)" != Y ] && [ "$(id -u)" = 0 ]; then
    # Left on: turning it off would strand the requests of other mounts'
    # entries (the kernel refuses their commits then).
    echo Y >$P || fail "cannot enable fuse.enable_uring"
fi
have_uring=false
[ -e $P ] && [ "$(cat $P)" = Y ] && have_uring=true

head -c 24M /dev/urandom >"$T/rand"
cp "$T/rand" "$D/disk.raw"
qemu-img convert -q -f raw -O qcow2 "$T/rand" "$D/disk.qcow2"
# Compressed clusters: their reads fan out on the decode pool.
{ base64 -w 4096 "$T/rand" || true; } | head -c 16M >"$T/text"
qemu-img convert -q -c -f raw -O qcow2 "$T/text" "$D/text.qcow2"

# start_fg LOG [OPTIONS...]: the daemon in the foreground with -d, its log
# in LOG.
start_fg() {
    local log=$1
    shift
    "$VDISKFS" -f -d "$@" "$D" "$M" 2>"$log" &
    DPID=$!
    MOUNTS="$MOUNTS $M"
    local i=0
    until mountpoint -q "$M"; do
        i=$((i + 1))
        [ $i -lt 200 ] || fail "vdiskfs $* did not mount: $(tail -5 "$log")"
        sleep 0.05
    done
    ls "$M" >/dev/null
}
stop_fg() {
    fusermount3 -u "$M" || fail "cannot unmount $M"
    wait $DPID || fail "vdiskfs exited with $?"
}

note "rw mount: reads and writes through the ring"
start_fg "$T/log" -o rw,uring=4
if $have_uring; then
    # The ring is set up after the mount answers (the line can come after
    # the first listing, under ThreadSanitizer above all): wait for it.
    i=0
    until grep -q "io_uring: [0-9]* queues of 4 entries" "$T/log"; do
        i=$((i + 1))
        [ $i -lt 200 ] || fail "the ring was not set up: $(grep -i uring "$T/log")"
        sleep 0.05
    done
fi
if $have_uring; then
    # One thread per entry, each allowed only its queue's CPU, every CPU
    # this process may use covered. Each thread names and pins itself as
    # it starts, so the check is retried for a while after the mount.
    ring_threads_pinned() {
        threads=0 cpus=""
        for st in /proc/$DPID/task/*/status; do
            grep -q "^Name:[[:space:]]*vdiskfs-uring" "$st" 2>/dev/null || continue
            threads=$((threads + 1))
            c=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "$st")
            case $c in *[-,]*) why="a ring thread may run on CPUs $c, not one"; return 1 ;; esac
            cpus="$cpus $c"
        done
        q=$(sed -n 's/.*io_uring: \([0-9]*\) queues of 4 entries.*/\1/p' "$T/log")
        [ "$threads" -eq $((4 * q)) ] || { why="$threads ring threads for $q queues of 4"; return 1; }
        n=$(grep -c "^processor" /proc/cpuinfo)
        for c in $(seq 0 $((n - 1))); do
            [ "$(echo "$cpus" | tr ' ' '\n' | grep -cx "$c")" -eq 4 ] ||
                { why="CPU $c does not have its 4 ring threads (pinned:$cpus)"; return 1; }
        done
    }
    i=0
    until ring_threads_pinned; do
        i=$((i + 1))
        [ $i -lt 100 ] || fail "$why"
        sleep 0.05
    done
fi
cmp "$T/rand" "$M/disk.raw" || fail "disk.raw read through the mount differs"
cmp "$T/rand" "$M/disk.qcow2" || fail "disk.qcow2 read through the mount differs"
for bs in 512 4096 65536 1048576; do
    dd if="$M/disk.qcow2" of="$T/piece" bs=$bs skip=3 count=2 iflag=direct status=none ||
        fail "O_DIRECT read of $bs bytes"
    dd if="$T/rand" of="$T/want" bs=$bs skip=3 count=2 status=none
    cmp "$T/want" "$T/piece" || fail "O_DIRECT read of $bs bytes differs"
done
note "eight readers at once"
pids=""
for i in 1 2 3 4 5 6 7 8; do
    dd if="$M/disk.qcow2" of="$T/part$i" bs=64k skip=$((i * 16)) count=16 iflag=direct status=none &
    pids="$pids $!"
done
for p in $pids; do
    wait "$p" || fail "a reader failed"
done
for i in 1 2 3 4 5 6 7 8; do
    dd if="$T/rand" of="$T/want" bs=64k skip=$((i * 16)) count=16 status=none
    cmp "$T/want" "$T/part$i" || fail "reader $i read wrong bytes"
done
note "compressed reads through the ring decode on every CPU, not the ring thread's"
dd if="$M/text.qcow2" of="$T/piece" bs=1M iflag=direct status=none || fail "reading text.qcow2"
cmp "$T/text" "$T/piece" || fail "text.qcow2 read through the ring differs"
if $have_uring; then
    # A thread inherits its creator's affinity: the decode pool started by
    # a ring thread pinned to one CPU must not stay there.
    all=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/$DPID/status)
    workers=0
    for st in /proc/$DPID/task/*/status; do
        grep -q "^Name:[[:space:]]*vdiskfs-uring" "$st" 2>/dev/null && continue
        c=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' "$st" 2>/dev/null) || continue
        [ -n "$c" ] || continue
        workers=$((workers + 1))
        [ "$c" = "$all" ] ||
            fail "thread $(sed -n 's/^Name:[[:space:]]*//p' "$st") may run on CPUs $c only, not $all"
    done
    [ "$workers" -gt 1 ] || fail "no worker threads seen"
    # A bzip2 file's first stat decodes its blocks on helper threads and
    # on the asking thread, here a ring thread: which must stay pinned.
    bzip2 -1 -c "$T/text" >"$T/text.img.bz2"
    mv "$T/text.img.bz2" "$D/"
    i=0
    until [ -e "$M/text.img" ]; do
        i=$((i + 1))
        [ $i -lt 100 ] || fail "text.img.bz2 is not listed as text.img"
        sleep 0.05
    done
    cmp "$T/text" "$M/text.img" || fail "text.img read through the ring differs"
    ring_threads_pinned || fail "after a bzip2 index pass: $why"
fi

note "writes: small, unaligned and 1 MiB"
head -c 3M /dev/urandom >"$T/w"
dd if="$T/w" of="$M/disk.qcow2" bs=1M seek=5 conv=notrunc,fsync status=none || fail "1 MiB writes"
dd if="$T/w" of="$M/disk.qcow2" bs=777 count=3 seek=100 oflag=seek_bytes conv=notrunc,fsync status=none ||
    fail "unaligned write"
dd if="$T/w" of="$T/rand" bs=1M seek=5 conv=notrunc status=none
dd if="$T/w" of="$T/rand" bs=777 count=3 seek=100 oflag=seek_bytes conv=notrunc status=none
cmp "$T/rand" "$M/disk.qcow2" || fail "disk.qcow2 does not read back its writes"
getfattr -n user.vdiskfs.format --only-values "$M/disk.qcow2" | grep -qx qcow2 || fail "xattr through the ring"
[ "$(stat -c %s "$M/disk.qcow2")" = $((24 << 20)) ] || fail "stat through the ring"
[ "$(ls "$M" | grep -c disk)" = 2 ] || fail "readdir through the ring: $(ls "$M")"
stop_fg
if $have_uring; then
    n=$(sed -n 's/.*io_uring: \([0-9]*\) requests served.*/\1/p' "$T/log")
    [ "${n:-0}" -gt 50 ] || fail "the ring served ${n:-no} requests"
fi
qemu-img check -q "$D/disk.qcow2" || fail "qemu-img check after writes through the ring"
qemu-img compare -q -f qcow2 -F raw "$D/disk.qcow2" "$T/rand" || fail "qemu-img compare after writes"

note "-o uring=off: /dev/fuse only; the default: the ring where the kernel has it on"
start_fg "$T/log.off" -o uring=off
cmp "$T/rand" "$M/disk.qcow2" || fail "uring=off: disk.qcow2 differs"
stop_fg
! grep -q "io_uring: [0-9]* queues" "$T/log.off" || fail "uring=off set up a ring"
start_fg "$T/log.default"
cmp "$T/rand" "$M/disk.qcow2" || fail "default: disk.qcow2 differs"
stop_fg
if $have_uring; then
    grep -q "io_uring: [0-9]* queues of 4 entries" "$T/log.default" ||
        fail "the default did not set up a ring of 4: $(grep -i uring "$T/log.default")"
else
    ! grep -q "io_uring: [0-9]* queues" "$T/log.default" || fail "a ring without the kernel's"
fi

note "a killed daemon leaves a mount that unmounts"
start_fg "$T/log.kill" -o uring=2
dd if="$M/disk.qcow2" of=/dev/null bs=1M count=4 iflag=direct status=none
kill -9 $DPID
wait $DPID 2>/dev/null || true
dd if="$M/disk.qcow2" of=/dev/null bs=4k count=1 iflag=direct status=none 2>/dev/null &&
    fail "a read after the daemon died succeeded"
fusermount3 -u "$M" || umount "$M" || fail "cannot unmount after the daemon died"
! mountpoint -q "$M" || fail "still mounted"
