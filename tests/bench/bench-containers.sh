#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# Compressed containers: vdiskfs against nbdkit's xz and gzip filters
# exported through nbdfuse, on the same files, one at a time, the files in
# the host page cache for all. Per container: the time from mount to the
# first byte read (nbdkit's gzip filter inflates the whole file first),
# random 4 KiB reads (QD1, O_DIRECT so every read reaches the daemon) and
# sequential 1 MiB reads. Not part of make check: `make bench-containers`
# (BENCH_ARGS="--quick" for a smoke run). Needs root, fio, nbdkit, nbdfuse.
#
#   bench-containers.sh [--quick] [--runs N] [--runtime SECS] [--size SIZE] [--workdir DIR]
set -euo pipefail

VDISKFS=${VDISKFS:?path to vdiskfs}
W=/var/tmp/vdiskfs-bench-containers
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
for t in fio nbdkit nbdfuse xz gzip; do
    command -v $t >/dev/null || { echo "$t is missing (fio, nbdkit, nbdfuse, xz-utils, gzip)" >&2; exit 1; }
done
log() { echo "[bench-containers] $*" >&2; }

mkdir -p "$W/img" "$W/mnt-vd" "$W/mnt-nbd"
prepare() {
    [ -f "$W/img/ready-$SIZE" ] && return 0
    rm -f "$W"/img/*
    log "preparing $SIZE of data, xz (1 MiB blocks, as xz -T writes them) and gzip -6 (once; kept in $W)"
    { base64 -w 4096 /dev/urandom || true; } | head -c "$SIZE" >"$W/src.raw"
    local mib=$(($(stat -c %s "$W/src.raw") >> 20))
    for i in $(seq 0 8 $((mib - 4))); do
        dd if=/dev/zero of="$W/src.raw" bs=1M seek=$((i + 4)) count=2 conv=notrunc status=none
    done
    xz -T2 -3 --block-size=1MiB -c "$W/src.raw" >"$W/img/a.raw.xz"
    gzip -6 -c "$W/src.raw" >"$W/img/b.raw.gz"
    rm -f "$W/src.raw"
    touch "$W/img/ready-$SIZE"
}

unmount_all() {
    fusermount3 -u "$W/mnt-vd" 2>/dev/null || true
    fusermount3 -u "$W/mnt-nbd" 2>/dev/null || true
    sleep 0.3
}
trap unmount_all EXIT

# wait_file FILE: until it is readable; prints the seconds taken to read
# its first 4 KiB.
first_byte() {
    local start end
    start=$(date +%s%N)
    local i=0
    until dd if="$1" of=/dev/null bs=4k count=1 status=none 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 6000 ] || { log "$1 never became readable"; return 1; }
        sleep 0.01
    done
    end=$(date +%s%N)
    echo "scale=2; ($end - $start) / 1000000000" | bc
}

fio_job() { # FILE RW BS: MB/s
    fio --name=b --filename="$1" --rw="$2" --bs="$3" --direct=1 --ioengine=psync --iodepth=1 \
        --time_based --runtime="$RUNTIME" --readonly --output-format=terse --terse-version=3 2>/dev/null |
        awk -F';' '{ printf "%.2f", $7 / 1024 }'
}

mount_vd() {
    "$VDISKFS" -o ro "$W/img" "$W/mnt-vd"
}
mount_nbd() { # FILTER FILE
    nbdfuse -r "$W/mnt-nbd" --command nbdkit -s --exit-with-parent --filter="$1" file "$2" &
    sleep 0.2
}

prepare
results=$W/results.txt
: >"$results"
for run in $(seq "$RUNS"); do
    for c in xz gzip; do
        case $c in xz) f=a.raw.xz shown=a.raw ;; gzip) f=b.raw.gz shown=b.raw ;; esac
        mount_vd
        t=$(first_byte "$W/mnt-vd/$shown")
        r=$(fio_job "$W/mnt-vd/$shown" randread 4k)
        s=$(fio_job "$W/mnt-vd/$shown" read 1M)
        w=$(fio_job "$W/mnt-vd/$shown" randread 4k)
        echo "$c vdiskfs $t $r $s $w" >>"$results"
        unmount_all
        mount_nbd "$c" "$W/img/$f"
        t=$(first_byte "$W/mnt-nbd/nbd")
        r=$(fio_job "$W/mnt-nbd/nbd" randread 4k)
        s=$(fio_job "$W/mnt-nbd/nbd" read 1M)
        w=$(fio_job "$W/mnt-nbd/nbd" randread 4k)
        echo "$c nbdkit $t $r $s $w" >>"$results"
        unmount_all
        log "run $run $c done"
    done
done
# Each column's median (and range) over the runs on its own. rand4k is
# the first random run after the mount, rand4k-warm the one after it and
# a sequential pass: what a reader working on the file for a while sees.
col() { # CONTAINER DAEMON FIELD
    awk -v c="$1" -v d="$2" -v f="$3" '$1 == c && $2 == d { print $f }' "$results" | sort -n |
        awk '{ v[NR] = $1 } END { printf "%s (%s-%s)", v[int((NR + 1) / 2)], v[1], v[NR] }'
}
echo "median (min-max) of $RUNS runs, $SIZE, $RUNTIME s each"
printf '%-6s %-8s %-22s %-22s %-22s %-22s\n' container daemon first-byte-s rand4k-MB/s seq1M-MB/s \
    rand4k-warm-MB/s
for c in xz gzip; do
    for d in vdiskfs nbdkit; do
        printf '%-6s %-8s %-22s %-22s %-22s %-22s\n' "$c" "$d" "$(col $c $d 3)" "$(col $c $d 4)" \
            "$(col $c $d 5)" "$(col $c $d 6)"
    done
done
