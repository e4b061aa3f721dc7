#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# EWF reads: vdiskfs against ewfmount (ewf-tools) and xmount --in ewf on
# the same E01, one at a time, alternating, the E01 in the host page cache
# for all. Sequential 1 MiB reads and random 4 KiB reads (QD1, and QD16
# over 2 jobs), with O_DIRECT so that every read reaches the daemon, on a
# zlib-compressed set (-c fast, text-like data) and an uncompressed one.
# Not part of make check: run `make bench-ewf` (BENCH_ARGS="--quick" for
# a smoke run). Needs root, fio, ewf-tools and xmount.
#
#   bench-ewf.sh [--quick] [--runs N] [--runtime SECS] [--size SIZE] [--workdir DIR]
set -euo pipefail

VDISKFS=${VDISKFS:?path to vdiskfs}
W=/var/tmp/vdiskfs-bench-ewf
RUNS=3
RUNTIME=10
SIZE=1G
while [ $# -gt 0 ]; do
    case $1 in
    --quick) RUNS=1 RUNTIME=3 SIZE=256M ;;
    --runs) RUNS=$2; shift ;;
    --runtime) RUNTIME=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --workdir) W=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
for t in fio ewfacquire ewfmount xmount; do
    command -v $t >/dev/null || { echo "$t is missing (fio, ewf-tools, xmount)" >&2; exit 1; }
done

log() { echo "[bench-ewf] $*" >&2; }

mkdir -p "$W/img" "$W/mnt-vd" "$W/mnt-ewf" "$W/mnt-xm"
RESULTS=$W/results.txt
: >"$RESULTS"

# One segment each: xmount 0.7.6 reads wrong bytes past a segment's end.
prepare() {
    [ -f "$W/img/ready-$SIZE" ] && return 0
    rm -f "$W"/img/*
    log "preparing $SIZE evidence sets (once; kept in $W)"
    # Text-like data that deflate shrinks to about three quarters, with
    # zero runs (base64 dies of SIGPIPE when head has enough: not an error).
    { base64 -w 4096 /dev/urandom || true; } | head -c "$SIZE" >"$W/src.raw"
    local mib=$(($(stat -c %s "$W/src.raw") >> 20))
    for i in $(seq 0 8 $((mib - 4))); do
        dd if=/dev/zero of="$W/src.raw" bs=1M seek=$((i + 4)) count=2 conv=notrunc status=none
    done
    ewfacquire -u -q -f encase6 -c fast -S 7GiB -t "$W/img/zlib" "$W/src.raw" >/dev/null
    ewfacquire -u -q -f encase6 -c none -S 7GiB -t "$W/img/plain" "$W/src.raw" >/dev/null
    rm -f "$W/src.raw"
    touch "$W/img/ready-$SIZE"
}

unmount_all() {
    for m in "$W/mnt-vd" "$W/mnt-ewf" "$W/mnt-xm"; do
        umount "$m" 2>/dev/null || true
    done
    while pgrep -f "($VDISKFS|ewfmount|xmount) .*$W/" >/dev/null; do sleep 0.05; done
    sleep 0.2
}
trap unmount_all EXIT

# start TARGET E01 -> prints the file to benchmark
start() {
    local target=$1 e01=$2 name
    name=$(basename "$e01" .E01)
    unmount_all
    cat "$e01" >/dev/null # warm: this kind of VM gives page cache back quickly
    case $target in
    vdiskfs)
        mkdir -p "$W/dir-$name"
        ln -f "$e01" "$W/dir-$name/$name.E01"
        "$VDISKFS" "$W/dir-$name" "$W/mnt-vd"
        echo "$W/mnt-vd/$name"
        ;;
    ewfmount)
        ewfmount "$e01" "$W/mnt-ewf" >/dev/null
        echo "$W/mnt-ewf/ewf1"
        ;;
    xmount)
        xmount --in ewf "$e01" "$W/mnt-xm" >/dev/null
        echo "$W/mnt-xm/$name.dd"
        ;;
    esac
}

# fio_run FILE RW BS QD JOBS -> IOPS (random) or MiB/s (sequential)
fio_run() {
    local file=$1 rw=$2 bs=$3 qd=$4 jobs=$5 extra=()
    case $rw in
    read) extra=(--io_size="$SIZE") ;;
    *) extra=(--time_based --runtime="$RUNTIME") ;;
    esac
    fio --name=b --filename="$file" --direct=1 --ioengine=libaio --iodepth="$qd" \
        --numjobs="$jobs" --rw="$rw" --bs="$bs" --group_reporting --norandommap \
        --output-format=terse --terse-version=3 "${extra[@]}" 2>/dev/null |
        awk -F';' -v rw="$rw" '{ if (rw == "read") printf "%.1f\n", $7 / 1024; else print $8 }'
}

record() { echo "$1|$2|$3" >>"$RESULTS"; }

seq_read() { fio_run "$(start "$1" "$E01")" read 1M 1 1; }
rand_read() { fio_run "$(start "$1" "$E01")" randread 4k "$QD" "$JOBS"; }

bench_workload() {
    local name=$1 unit=$2 fn=$3 v
    log "$name"
    for run in $(seq 1 "$RUNS"); do
        for target in vdiskfs ewfmount xmount; do
            sync
            v=$($fn "$target") || v=fail
            record "$name ($unit)" "$target" "${v:-fail}"
            log "  $target: ${v:-fail}"
        done
    done
    unmount_all
}

prepare
for set in zlib plain; do
    E01=$W/img/$set.E01
    bench_workload "$set: seq read 1M" MiB/s seq_read
    QD=1 JOBS=1
    bench_workload "$set: rand read 4k QD1" IOPS rand_read
    QD=16 JOBS=2
    bench_workload "$set: rand read 4k QD16" IOPS rand_read
done

# Medians, and vdiskfs's ratio to each.
awk -F'|' '
    { v[$1 "|" $2] = v[$1 "|" $2] " " $3; if (!($1 in seen)) { seen[$1] = 1; order[n++] = $1 } }
    function median(s,   a, k, i, j, t) {
        k = split(s, a, " ");
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return k ? a[int((k + 1) / 2)] : 0
    }
    END {
        printf "%-28s %12s %12s %12s %10s %10s\n", "workload", "vdiskfs", "ewfmount", "xmount", "vs ewfmount", "vs xmount";
        for (i = 0; i < n; i++) {
            w = order[i]; a = median(v[w "|vdiskfs"]); b = median(v[w "|ewfmount"]); c = median(v[w "|xmount"]);
            printf "%-28s %12s %12s %12s %9.2fx %9.2fx\n", w, a, b, c, (b > 0 ? a / b : 0), (c > 0 ? a / c : 0)
        }
    }' "$RESULTS"
