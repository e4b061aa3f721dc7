#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# A guest ext4 loop-mounted from a -o rw mount, the daemon and the writer
# in one memory-limited cgroup, heavy writes. The loop device's writeback
# is served by the daemon: a FUSE worker that waits in memcg reclaim for
# writeback (cgroup v1 does) may wait for the very WRITE it serves, and the
# mount hangs, unless the daemon is an I/O flusher (PR_SET_IO_FLUSHER,
# cmd/vdiskfs.c). That needs CAP_SYS_RESOURCE: where even root lacks it
# (some containers), the daemon cannot be protected, and the test runs
# what vdiskfs(1) advises then: only the writer in the limited cgroup
# (MEMCG_FORCE_DAEMON=1 puts the daemon in anyway, to show the hang).
# A watchdog aborts the FUSE connection (/sys/fs/fuse/connections/N/abort)
# so that a hang fails instead of hanging CI. Then the guest must fsck
# clean and the image pass qemu-img check.
. "$TESTLIB"
require_fuse
require_qemu
[ "$(id -u)" = 0 ] || skip "needs root (loop devices, cgroups)"
for c in mkfs.ext4 e2fsck losetup; do
    command -v $c >/dev/null || fail "$c is missing (apt-get install e2fsprogs mount)"
done

LIMIT_MB=${MEMCG_LIMIT_MB:-64}
ROUNDS=${MEMCG_ROUNDS:-3}
# A sanitizer build's daemon needs far more memory than the writer, and
# is there for memory errors, which one round shows.
if ldd "$VDISKFS" 2>/dev/null | grep -Eq 'lib(asan|tsan)'; then
    LIMIT_MB=${MEMCG_LIMIT_MB:-384}
    ROUNDS=${MEMCG_ROUNDS:-1}
fi
TIME_LIMIT=${MEMCG_TIME_LIMIT:-120} # seconds before the watchdog aborts
D=$T/images M=$T/mnt G=$T/guest
mkdir -p "$D" "$M" "$G"
CG="" CGV="" GUEST_MOUNTED=0 CONN=""

test_cleanup() {
    [ -n "$CONN" ] && [ -n "${HUNG:-}" ] && echo 1 >"/sys/fs/fuse/connections/$CONN/abort" 2>/dev/null
    [ $GUEST_MOUNTED = 1 ] && { umount "$G" 2>/dev/null || umount -l "$G" 2>/dev/null; }
    # An aborted connection fails mountpoint(1), which lib.sh's cleanup asks.
    grep -q " $M " /proc/self/mountinfo && umount -l "$M" 2>/dev/null
    if [ -n "$CG" ] && [ -d "$CG" ]; then
        # Whatever is left in it goes back to the cgroup the test came from.
        for p in $(cat "$CG/cgroup.procs" 2>/dev/null); do
            echo "$p" >"$CG_HOME/cgroup.procs" 2>/dev/null
        done
        rmdir "$CG" 2>/dev/null
    fi
    cleanup
}
trap test_cleanup EXIT

# A child of this process's own memory cgroup (v1), or a memory cgroup of
# the unified hierarchy (v2): LIMIT_MB in it.
make_cgroup() {
    v1=/sys/fs/cgroup/memory
    if [ -f $v1/memory.limit_in_bytes ]; then
        CG_HOME=$v1$(awk -F: '$2 == "memory" { print $3 }' /proc/self/cgroup)
        [ -d "$CG_HOME" ] || CG_HOME=$v1
        CG=${CG_HOME%/}/vdiskfs-test-$$
        mkdir "$CG" && echo $((LIMIT_MB * 1024 * 1024)) >"$CG/memory.limit_in_bytes" &&
            CGV=1 && return 0
    fi
    for root in /sys/fs/cgroup /sys/fs/cgroup/unified; do
        grep -qw memory "$root/cgroup.controllers" 2>/dev/null || continue
        grep -qw memory "$root/cgroup.subtree_control" ||
            echo +memory >"$root/cgroup.subtree_control" || continue
        CG_HOME=$root$(awk -F: '$1 == "0" { print $3 }' /proc/self/cgroup)
        [ -d "$CG_HOME" ] || CG_HOME=$root
        CG=$root/vdiskfs-test-$$
        mkdir "$CG" && echo $((LIMIT_MB * 1024 * 1024)) >"$CG/memory.max" && CGV=2 && return 0
    done
    return 1
}
make_cgroup || skip "no usable memory cgroup controller (v1 or v2)"
note "cgroup v$CGV, $LIMIT_MB MiB: $CG"

mountpoint -q /sys/fs/fuse/connections || mount -t fusectl none /sys/fs/fuse/connections ||
    fail "cannot mount fusectl (the watchdog needs /sys/fs/fuse/connections)"

img=$D/guest.qcow2
qemu-img create -q -f qcow2 "$img" 2G
"$VDISKFS" -f -o rw,idle_timeout=0 "$D" "$M" 2>"$T/daemon.log" &
VP=$!
MOUNTS="$MOUNTS $M"
i=0
while ! mountpoint -q "$M" && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
mountpoint -q "$M" || fail "vdiskfs did not mount: $(cat "$T/daemon.log")"
# The connection number is the mount's device minor; read from mountinfo,
# since a stat of a hung mount would hang too.
CONN=$(awk -v m="$M" '$5 == m { split($3, d, ":"); print d[2] }' /proc/self/mountinfo | tail -n1)
[ -n "$CONN" ] && [ -d "/sys/fs/fuse/connections/$CONN" ] || fail "no fusectl connection for $M"

mkfs.ext4 -q -F "$M/guest.qcow2" || fail "mkfs.ext4 on the mounted image"
mount -o loop "$M/guest.qcow2" "$G" || fail "loop mount of the mounted image"
GUEST_MOUNTED=1

# PF_MEMALLOC_NOIO (0x80000) in the flags of /proc/PID/stat: an I/O flusher.
flags=$(awk '{ print $9 }' "/proc/$VP/stat")
capeff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
if [ $((flags & 0x80000)) != 0 ]; then
    note "the daemon is an I/O flusher: it shares the writer's cgroup"
    echo "$VP" >"$CG/cgroup.procs" || fail "cannot move the daemon into $CG"
elif [ "${MEMCG_FORCE_DAEMON:-0}" = 1 ]; then
    note "the daemon is no I/O flusher, in the writer's cgroup all the same"
    echo "$VP" >"$CG/cgroup.procs" || fail "cannot move the daemon into $CG"
elif [ $(((0x$capeff >> 24) & 1)) = 1 ]; then
    fail "root with CAP_SYS_RESOURCE, yet the daemon is no I/O flusher (flags $flags)"
else
    note "no CAP_SYS_RESOURCE here (CapEff $capeff): the daemon cannot be an I/O flusher," \
        "so only the writer is memory-limited, as vdiskfs(1) advises"
fi
SRC=""
for s in /usr/share/locale /usr/share/man /usr/share/doc; do [ -d $s ] && SRC="$SRC ${s#/usr/share/}"; done
# Many small files (metadata, journal) and big sequential ones, ROUNDS
# rounds, each removed again: far more than the cgroup holds.
# shellcheck disable=SC2016
sh -c 'echo $$ >"$1/cgroup.procs" || exit 1
    G=$2 SRC=$3
    for r in $(seq "$4"); do
        tar -C /usr/share -cf - $SRC 2>/dev/null | tar -C "$G" -xf - || echo "round $r: tar failed"
        dd if=/dev/zero of="$G/big$r" bs=1M count=300 status=none || echo "round $r: dd failed"
        rm -rf "${G:?}"/*
        sync -f "$G/." || echo "round $r: sync failed"
        echo "round $r done"
    done' sh "$CG" "$G" "$SRC" "$ROUNDS" >"$T/writer.log" 2>&1 &
WP=$!

# The watchdog: a daemon thread stuck in folio_wait_writeback under memcg
# reclaim for 5 s, or no end within TIME_LIMIT, is a hang.
start=$(date +%s) stuck=0 HUNG=""
while kill -0 $WP 2>/dev/null; do
    sleep 1
    now=$(date +%s)
    waiting=""
    for t in /proc/"$VP"/task/*; do
        if grep -q folio_wait_writeback "$t/stack" 2>/dev/null &&
            grep -q try_charge_memcg "$t/stack" 2>/dev/null; then
            waiting=$t
        fi
    done
    if [ -n "$waiting" ]; then stuck=$((stuck + 1)); else stuck=0; fi
    if [ $stuck -ge 5 ] || [ $((now - start)) -ge "$TIME_LIMIT" ]; then
        HUNG="after $((now - start)) s"
        [ -n "$waiting" ] && HUNG="$HUNG: thread $(basename "$waiting") waits for writeback in memcg reclaim: $(head -n 12 "$waiting/stack" | tr '\n' ' ')"
        echo 1 >"/sys/fs/fuse/connections/$CONN/abort"
        kill $WP 2>/dev/null
        break
    fi
done
wait $WP || true
elapsed=$(($(date +%s) - start))
[ -z "$HUNG" ] || fail "hung $HUNG; writer: $(cat "$T/writer.log")"
note "writer done in $elapsed s: $(tr '\n' ' ' <"$T/writer.log")"
grep -q "round $ROUNDS done" "$T/writer.log" || fail "the writer did not finish: $(cat "$T/writer.log")"
grep -q failed "$T/writer.log" && fail "the writer saw errors: $(cat "$T/writer.log")"
[ "$CGV" = 1 ] && note "memcg failcnt $(cat "$CG/memory.failcnt"), max usage $(cat "$CG/memory.max_usage_in_bytes")"

umount "$G" || fail "cannot unmount the guest"
GUEST_MOUNTED=0
e2fsck -fn "$M/guest.qcow2" >"$T/fsck" 2>&1 || fail "guest fsck: $(cat "$T/fsck")"
unmount_vdiskfs "$M"
wait
qemu-img check -q "$img" || fail "qemu-img check $img"
echo PASS
