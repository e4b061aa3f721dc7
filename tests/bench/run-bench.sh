#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# vdiskfs against qemu-storage-daemon's FUSE export, qcowmount and a minimal
# FUSE passthrough of the equivalent raw file (the ceiling FUSE allows on
# this kernel), in one run, alternating, host page cache warm for all.
# Not part of make check: run `make bench` (BENCH_ARGS="--quick" for a
# smoke run). Needs root, fio, qemu-utils, qemu-system-common
# (qemu-storage-daemon) and libqcow-utils (qcowmount).
#
#   run-bench.sh [--quick] [--runs N] [--runtime SECS] [--workdir DIR] [--only REGEX]
set -euo pipefail

VDISKFS=${VDISKFS:?path to vdiskfs}
PASSTHROUGH=${PASSTHROUGH:?path to passthrough-fuse}
W=/var/tmp/vdiskfs-bench
RUNS=3
RUNTIME=10
ONLY=.
while [ $# -gt 0 ]; do
    case $1 in
    --quick) RUNS=1 RUNTIME=3 ;;
    --runs) RUNS=$2; shift ;;
    --runtime) RUNTIME=$2; shift ;;
    --workdir) W=$2; shift ;;
    --only) ONLY=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
for t in fio qemu-img qemu-io qemu-storage-daemon; do
    command -v $t >/dev/null || { echo "$t is missing" >&2; exit 1; }
done
HAVE_QCOWMOUNT=0
command -v qcowmount >/dev/null && HAVE_QCOWMOUNT=1

mkdir -p "$W/img" "$W/src" "$W/mnt-vd" "$W/mnt-qcow" "$W/mnt-pt" "$W/many"
touch "$W/qsd-target"
RESULTS=$W/results.txt
: >"$RESULTS"
# shellcheck source=tests/bench/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
trap unmount_all EXIT

prepare() {
    if [ ! -f "$W/img/ready" ]; then
        log "preparing 1 GiB images (once; kept in $W)"
        head -c 1G /dev/urandom >"$W/src/random.raw"
        # Text-like data that deflate shrinks to about three quarters
        # (base64 dies of SIGPIPE when head has enough: not an error).
        { base64 -w 4096 /dev/urandom || true; } | head -c 1G >"$W/src/text.raw"
        qemu-img convert -O qcow2 "$W/src/random.raw" "$W/img/plain.qcow2"
        qemu-img convert -c -O qcow2 "$W/src/text.raw" "$W/img/zlib.qcow2"
        qemu-img convert -O vmdk "$W/src/random.raw" "$W/img/disk.vmdk"
        qemu-img convert -O vhdx "$W/src/random.raw" "$W/img/disk.vhdx"
        qemu-img create -q -f qcow2 "$W/img/sparse-1t.qcow2" 1T
        for i in 0 1 2 3; do
            qemu-io -c "write -P $((i + 1)) $((i * 200))G 64M" "$W/img/sparse-1t.qcow2" >/dev/null
        done
        touch "$W/img/ready"
    fi
    if [ ! -f "$W/img/zstd.qcow2" ]; then
        log "preparing the zstd-compressed qcow2"
        qemu-img convert -c -O qcow2 -o compression_type=zstd "$W/src/text.raw" "$W/img/zstd.qcow2.tmp"
        mv "$W/img/zstd.qcow2.tmp" "$W/img/zstd.qcow2"
    fi
    if [ ! -f "$W/many/img-0999.qcow2" ]; then
        log "preparing 1000 small images"
        qemu-img create -q -f qcow2 "$W/many/img-0000.qcow2" 64M
        for i in $(seq 1 999); do
            cp "$W/many/img-0000.qcow2" "$(printf '%s/many/img-%04d.qcow2' "$W" "$i")"
        done
    fi
    # Page cache warm for every server alike.
    cat "$W"/img/*.* "$W"/src/* >/dev/null
}

# fio_run FILE RW BS QD JOBS -> IOPS (random) or MiB/s (sequential)
fio_run() {
    local file=$1 rw=$2 bs=$3 qd=$4 jobs=$5 extra=()
    case $rw in
    read | write) extra=(--size=1G --io_size=1G) ;;
    *) extra=(--time_based --runtime="$RUNTIME" --size=1G) ;;
    esac
    [ "$rw" = write ] && [ "${FSYNC:-0}" = 1 ] && extra+=(--end_fsync=1)
    fio --name=b --filename="$file" --direct=1 --ioengine=libaio --iodepth="$qd" \
        --numjobs="$jobs" --rw="$rw" --bs="$bs" --group_reporting --norandommap \
        --output-format=terse --terse-version=3 "${extra[@]}" 2>/dev/null |
        awk -F';' -v rw="$rw" '{
            if (rw == "read") printf "%.1f\n", $7 / 1024;
            else if (rw == "write") printf "%.1f\n", $48 / 1024;
            else if (rw == "randread") print $8;
            else print $49;
        }'
}

record() { echo "$1|$2|$3" >>"$RESULTS"; }

# workload NAME UNIT TARGETS... -- body run as: run_one TARGET
bench_workload() {
    local name=$1 unit=$2 fn=$3
    shift 3
    [[ $name =~ $ONLY ]] || return 0
    log "$name"
    for run in $(seq 1 "$RUNS"); do
        for target in "$@"; do
            [ "$target" = qcowmount ] && [ $HAVE_QCOWMOUNT = 0 ] && continue
            local v
            # Every measurement starts with no dirty pages of an earlier
            # one being written back underneath it.
            sync
            v=$($fn "$target") || v=fail
            record "$name ($unit)" "$target" "$v"
            log "  $target: $v"
        done
    done
    unmount_all
}

seq_read() {
    local img=$SEQ_IMG fmt=$SEQ_FMT
    [ "$1" = ceiling ] && img=$SEQ_RAW
    local f
    f=$(start "$1" "$img" "$fmt" 0)
    fio_run "$f" read 1M 1 1
}

rand_read() {
    local f img=$W/img/plain.qcow2
    [ "$1" = ceiling ] && img=$W/src/random.raw
    f=$(start "$1" "$img" qcow2 0)
    fio_run "$f" randread 4k "$QD" 2
}

rand_write() {
    local f img=$W/img/plain.qcow2
    [ "$1" = ceiling ] && img=$W/src/random.raw
    f=$(start "$1" "$img" qcow2 1)
    fio_run "$f" randwrite 4k 1 2
}

# alloc_write TARGET [fsync]: 1 GiB of sequential 1 MiB writes into an
# empty image; with fsync the time includes writing it all to the disk.
alloc_write() {
    local f img=$W/img/empty.qcow2
    unmount_all
    rm -f "$img" "$W/src/empty.raw"
    qemu-img create -q -f qcow2 "$img" 1G
    truncate -s 1G "$W/src/empty.raw"
    [ "$1" = ceiling ] && img=$W/src/empty.raw
    f=$(start "$1" "$img" qcow2 1)
    FSYNC=${2:-0} fio_run "$f" write 1M 1 1
}

alloc_write_fsync() { alloc_write "$1" 1; }

sparse_copy() {
    local f start_ns end_ns
    f=$(start "$1" "$W/img/sparse-1t.qcow2" qcow2 0)
    rm -f "$W/copy.raw"
    start_ns=$(date +%s%N)
    cp --sparse=always "$f" "$W/copy.raw"
    end_ns=$(date +%s%N)
    rm -f "$W/copy.raw"
    echo "scale=2; ($end_ns - $start_ns) / 1000000000" | bc
}

many_images() {
    unmount_all
    local t0 t1 t2 pid rss
    t0=$(date +%s%N)
    "$VDISKFS" "$W/many" "$W/mnt-vd"
    t1=$(date +%s%N)
    ls -l "$W/mnt-vd" >/dev/null
    t2=$(date +%s%N)
    pid=$(pgrep -f "vdiskfs $W/many" | head -n1)
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    record "1000 images: mount (s)" vdiskfs "$(echo "scale=3; ($t1 - $t0) / 1000000000" | bc)"
    record "1000 images: ls -l (s)" vdiskfs "$(echo "scale=3; ($t2 - $t1) / 1000000000" | bc)"
    record "1000 images: RSS (MiB)" vdiskfs "$(echo "scale=1; $rss / 1024" | bc)"
    unmount_all
}

prepare
TARGETS="vdiskfs qsd qcowmount ceiling"
SEQ_IMG=$W/img/plain.qcow2 SEQ_FMT=qcow2 SEQ_RAW=$W/src/random.raw
bench_workload "seq read qcow2" MiB/s seq_read $TARGETS
SEQ_IMG=$W/img/zlib.qcow2 SEQ_RAW=$W/src/text.raw
bench_workload "seq read qcow2 zlib" MiB/s seq_read $TARGETS
# libqcow reads no zstd clusters.
SEQ_IMG=$W/img/zstd.qcow2
bench_workload "seq read qcow2 zstd" MiB/s seq_read vdiskfs qsd ceiling
SEQ_IMG=$W/img/disk.vmdk SEQ_FMT=vmdk SEQ_RAW=$W/src/random.raw
bench_workload "seq read vmdk" MiB/s seq_read vdiskfs qsd ceiling
SEQ_IMG=$W/img/disk.vhdx SEQ_FMT=vhdx
bench_workload "seq read vhdx" MiB/s seq_read vdiskfs qsd ceiling
QD=1
bench_workload "rand read 4k QD1" IOPS rand_read $TARGETS
QD=16
bench_workload "rand read 4k QD16" IOPS rand_read $TARGETS
bench_workload "rand write 4k allocated" IOPS rand_write vdiskfs qsd ceiling
bench_workload "alloc seq write" MiB/s alloc_write vdiskfs qsd ceiling
bench_workload "alloc seq write + fsync" MiB/s alloc_write_fsync vdiskfs qsd ceiling
# qcowmount reports no holes: it would read the whole TiB (about ten minutes).
bench_workload "sparse cp 1 TiB/256 MiB" s sparse_copy vdiskfs qsd
[[ "1000 images" =~ $ONLY ]] && many_images

# Medians, ratios.
awk -F'|' '
    { key = $1 SUBSEP $2; vals[key] = vals[key] " " $3; names[$1] = 1; order[++n] = $1 }
    function median(s,   a, k, i, j, t) {
        k = split(s, a, " "); for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        if (k == 0) return "-"; return a[int((k + 1) / 2)]
    }
    END {
        printf "| workload | vdiskfs | qemu-storage-daemon | qcowmount | ceiling | vdiskfs/qsd | vdiskfs/ceiling |\n"
        printf "|---|---|---|---|---|---|---|\n"
        for (i = 1; i <= n; i++) {
            w = order[i]; if (seen[w]++) continue
            v = median(vals[w SUBSEP "vdiskfs"]); q = median(vals[w SUBSEP "qsd"])
            c = median(vals[w SUBSEP "qcowmount"]); p = median(vals[w SUBSEP "ceiling"])
            lower = (w ~ /\(s\)$/ || w ~ /MiB\)$/)
            rq = (q != "-" && q + 0 > 0 && v + 0 > 0) ? sprintf("%.2fx", lower ? q / v : v / q) : "-"
            rp = (p != "-" && p + 0 > 0 && v + 0 > 0) ? sprintf("%.2fx", lower ? p / v : v / p) : "-"
            printf "| %s | %s | %s | %s | %s | %s | %s |\n", w, v, q, c, p, rq, rp
        }
        print ""
        print "Ratios are speed-ups of vdiskfs (higher is better), also for times and RSS."
    }' "$RESULTS"
