#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Big directories: N qcow2 images in one directory (1,000, 10,000 and
# 100,000 by default; BIGDIR_COUNTS to choose, BIGDIR_RUNS runs each).
# For each: the mount, the first `ls -l` of a fresh mount with the host's
# page cache warm, the same after dropping every cache (cold), a second
# `ls -l` of the same mount, and the daemon's RSS after them. Medians and
# the spread (min-max) over the runs. Needs root (drop_caches).
set -eu
VDISKFS=${VDISKFS:?set VDISKFS to the vdiskfs binary}
W=${BENCH_DIR:-${TMPDIR:-/tmp}/vdiskfs-bigdir}
COUNTS=${BIGDIR_COUNTS:-1000 10000 100000}
RUNS=${BIGDIR_RUNS:-3}
mkdir -p "$W/mnt"
M=$W/mnt

ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

# median and spread of the numbers on stdin: "MED (MIN-MAX)"
summary() { sort -n | awk '{v[NR]=$1} END {printf "%s (%s-%s)", v[int((NR+1)/2)], v[1], v[NR]}'; }

make_dir() {
    local d=$1 n=$2
    [ -f "$d/.complete-$n" ] && return 0
    rm -rf "$d"
    mkdir -p "$d"
    qemu-img create -q -f qcow2 -o cluster_size=4096 "$W/one.qcow2" 1G
    # tee writes one image to a thousand names per process.
    (cd "$d" && seq -f 'img%06g.qcow2' 1 "$n" | xargs -n 1000 sh -c 'tee "$@" <"$0" >/dev/null' "$W/one.qcow2")
    : >"$d/.complete-$n"
}

cleanup() { umount "$M" 2>/dev/null || true; }
trap cleanup EXIT

echo "| images | mount (ms) | ls -l, fresh mount (ms) | ls -l, cold (ms) | ls -l, again (ms) | RSS (MiB) |"
echo "|---|---|---|---|---|---|"
for n in $COUNTS; do
    d=$W/dir-$n
    make_dir "$d" "$n"
    : >"$W/mount" ; : >"$W/fresh" ; : >"$W/cold" ; : >"$W/again" ; : >"$W/rss"
    for _ in $(seq "$RUNS"); do
        cat "$d"/* >/dev/null 2>&1 || find "$d" -type f -exec cat {} + >/dev/null
        t=$(date +%s%N); "$VDISKFS" "$d" "$M"; ms_since "$t" >>"$W/mount"
        t=$(date +%s%N); ls -l "$M" >/dev/null; ms_since "$t" >>"$W/fresh"
        t=$(date +%s%N); ls -l "$M" >/dev/null; ms_since "$t" >>"$W/again"
        pid=$(pgrep -f "vdiskfs $d $M" | head -n1)
        echo "scale=1; $(awk '/VmRSS/ {print $2}' "/proc/$pid/status") / 1024" | bc >>"$W/rss"
        umount "$M"
        while pgrep -f "vdiskfs $d $M" >/dev/null; do sleep 0.05; done
        sync
        echo 3 >/proc/sys/vm/drop_caches
        "$VDISKFS" "$d" "$M"
        t=$(date +%s%N); ls -l "$M" >/dev/null; ms_since "$t" >>"$W/cold"
        umount "$M"
        while pgrep -f "vdiskfs $d $M" >/dev/null; do sleep 0.05; done
    done
    echo "| $n | $(summary <"$W/mount") | $(summary <"$W/fresh") | $(summary <"$W/cold") | $(summary <"$W/again") | $(summary <"$W/rss") |"
done
