#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# What users run: a guest filesystem inside an image, loop-mounted through
# the server that exposes the image, against the same filesystem in a raw
# file loop-mounted directly (no FUSE). Servers: vdiskfs, qemu-storage-
# daemon's FUSE export, the minimal FUSE passthrough of the raw file, and
# the raw file itself. Workloads:
#   read   read every file after dropping caches, the host image warm
#   find   stat every file of the tree, caches dropped likewise
#   untar  untar the tree into a fresh filesystem and sync
#   fio    4 KiB random reads and writes in a file inside the filesystem
# Not part of make check; needs root, fio, qemu-utils, qemu-system-common.
#
#   run-guestfs.sh [--runs N] [--fs ext4|xfs] [--formats "qcow2 vmdk vhdx"]
#                  [--tree DIR] [--workdir DIR] [--losetup-args ARGS]
#                  [--servers "vdiskfs qsd ceiling raw"]
# A server vdiskfs-raN is vdiskfs with -o read_ahead=N, vdiskfs-uringN|off
# with -o uring=N|off; any server with -dio appended is that server with
# its loop device in direct I/O (losetup --direct-io=on); with servers
# other than the four, the table has a column per server instead.
set -euo pipefail

VDISKFS=${VDISKFS:?path to vdiskfs}
PASSTHROUGH=${PASSTHROUGH:?path to passthrough-fuse}
W=/var/tmp/vdiskfs-guestfs
RUNS=3
FS=ext4
FORMATS="qcow2 vmdk vhdx"
TREE=/usr/share
LOSETUP_ARGS=""
SERVERS="vdiskfs qsd ceiling raw"
while [ $# -gt 0 ]; do
    case $1 in
    --runs) RUNS=$2; shift ;;
    --fs) FS=$2; shift ;;
    --formats) FORMATS=$2; shift ;;
    --tree) TREE=$2; shift ;;
    --workdir) W=$2; shift ;;
    --losetup-args) LOSETUP_ARGS=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
for t in fio qemu-img qemu-storage-daemon losetup "mkfs.$FS"; do
    command -v "$t" >/dev/null || { echo "$t is missing" >&2; exit 1; }
done
mkdir -p "$W/img" "$W/mnt-vd" "$W/mnt-pt" "$W/guest" "$W/fresh"
touch "$W/qsd-target"
RESULTS=$W/results.txt
: >"$RESULTS"
# shellcheck source=tests/bench/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"

LOOP=""
cleanup() {
    umount "$W/guest" 2>/dev/null || true
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null || true
    unmount_all
}
trap cleanup EXIT

# The tree, once, and the filesystem images made from it.
prepare() {
    [ -f "$W/img/ready-$FS" ] && return 0
    local bytes
    bytes=$(du -sb "$TREE" | cut -f1)
    local size=$(((bytes * 2 / 1048576 + 800) * 1048576)) # the tree twice, fio.dat
    log "preparing a $FS of $((size >> 20)) MiB holding $TREE (once; kept in $W)"
    rm -f "$W/img/guest.raw"
    truncate -s "$size" "$W/img/guest.raw"
    "mkfs.$FS" -q "$W/img/guest.raw" >/dev/null 2>&1 || "mkfs.$FS" -f -q "$W/img/guest.raw"
    mount -o loop "$W/img/guest.raw" "$W/guest"
    cp -a "$TREE/." "$W/guest/"
    fio --name=f --filename="$W/guest/fio.dat" --size=512M --rw=write --bs=1M \
        --output=/dev/null >/dev/null
    umount "$W/guest"
    tar -C "$TREE" -cf "$W/img/tree.tar" .
    for fmt in $FORMATS; do
        qemu-img convert -f raw -O "$fmt" "$W/img/guest.raw" "$W/img/guest.$fmt"
    done
    truncate -s "$size" "$W/img/empty.raw"
    "mkfs.$FS" -q "$W/img/empty.raw" >/dev/null 2>&1 || "mkfs.$FS" -f -q "$W/img/empty.raw"
    touch "$W/img/ready-$FS"
}

drop() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# expose SERVER FORMAT IMAGE WRITABLE -> the file a loop device is made of
expose() {
    local server=$1 fmt=$2 img=$3 rw=$4
    case $server in
    raw) unmount_all; echo "$img" ;;
    ceiling) start ceiling "$img" raw "$rw" ;;
    *) start "$server" "$img" "$fmt" "$rw" ;;
    esac
}

loop_mount() {
    local file=$1 rw=$2 extra=${3:-}
    # shellcheck disable=SC2086
    LOOP=$(losetup -f --show $LOSETUP_ARGS $extra $([ "$rw" = 1 ] || echo -r) "$file")
    mount $([ "$rw" = 1 ] || echo "-o ro") "$LOOP" "$W/guest"
}

loop_umount() {
    umount "$W/guest"
    losetup -d "$LOOP"
    LOOP=""
}

secs() { # COMMAND... -> elapsed seconds
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}

record() { echo "$1|$2|$3|$4" >>"$RESULTS"; }

# One round of every workload for one server and format.
round() {
    local name=$1 fmt=$2 img file server=${1%-dio} dio=""
    [ "$server" = "$name" ] || dio=--direct-io=on
    img=$W/img/guest.$fmt
    { [ "$server" = raw ] || [ "$server" = ceiling ]; } && img=$W/img/guest.raw
    file=$(expose "$server" "$fmt" "$img" 0)
    loop_mount "$file" 0 "$dio"
    drop
    cat "$img" >/dev/null # the host image warm, everything above it cold
    record "$fmt" "$name" read "$(secs sh -c "tar -C '$W/guest' -cf - . | cat >/dev/null")"
    drop
    cat "$img" >/dev/null
    record "$fmt" "$name" find "$(secs find "$W/guest" -printf '%s\n')"
    loop_umount
    # Writable from here on: a fresh copy each time.
    local fresh=$W/fresh/empty.$fmt
    rm -f "$W/fresh"/*
    if [ "$server" = raw ] || [ "$server" = ceiling ]; then
        fresh=$W/fresh/empty.raw
        cp --sparse=always "$W/img/empty.raw" "$fresh"
    else
        qemu-img convert -f raw -O "$fmt" "$W/img/empty.raw" "$fresh"
    fi
    file=$(expose "$server" "$fmt" "$fresh" 1)
    loop_mount "$file" 1 "$dio"
    record "$fmt" "$name" untar "$(secs sh -c "tar -C '$W/guest' -xf '$W/img/tree.tar' && sync")"
    local fio_out
    fio_out=$(fio --name=r --filename="$W/guest/fio.dat" --size=256M --rw=randrw --bs=4k \
        --direct=1 --ioengine=libaio --iodepth=16 --time_based --runtime=10 \
        --output-format=terse --terse-version=3 2>/dev/null)
    record "$fmt" "$name" fio-read-iops "$(echo "$fio_out" | awk -F';' '{print $8}')"
    record "$fmt" "$name" fio-write-iops "$(echo "$fio_out" | awk -F';' '{print $49}')"
    loop_umount
    unmount_all
}

prepare
for run in $(seq "$RUNS"); do
    for fmt in $FORMATS; do
        for server in $SERVERS; do
            log "run $run: $fmt through $server"
            round "$server" "$fmt"
        done
    done
done

# Medians per format, workload and server, with the ratios.
python3 - "$RESULTS" "$SERVERS" <<'EOF'
import collections, statistics, sys
servers = sys.argv[2].split()
if sorted(servers) != sorted(['vdiskfs', 'qsd', 'ceiling', 'raw']):
    # Other servers (vdiskfs-raN): each one's median and spread.
    rows = collections.defaultdict(list)
    for line in open(sys.argv[1]):
        fmt, server, work, v = line.strip().split('|')
        if v:
            rows[(fmt, work, server)].append(float(v))
    print('| format | workload | ' + ' | '.join(servers) + ' |')
    print('|---|---|' + '---|' * len(servers))
    for f in sorted({k[0] for k in rows}):
        for w in ['read', 'find', 'untar', 'fio-read-iops', 'fio-write-iops']:
            cells = []
            for s in servers:
                v = rows[(f, w, s)]
                cells.append('-' if not v else '%.3g (%.3g-%.3g)' % (statistics.median(v), min(v), max(v)))
            print('| %s | %s | %s |' % (f, w, ' | '.join(cells)))
    sys.exit(0)
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    fmt, server, work, v = line.strip().split('|')
    if v:
        rows[(fmt, work, server)].append(float(v))
fmts = sorted({k[0] for k in rows}); works = ['read', 'find', 'untar', 'fio-read-iops', 'fio-write-iops']
print('| format | workload | vdiskfs | qsd | passthrough | raw | vs qsd | vs passthrough | vs raw |')
print('|---|---|---|---|---|---|---|---|---|')
for f in fmts:
    for w in works:
        med = {s: statistics.median(rows[(f, w, s)]) if rows[(f, w, s)] else None
               for s in ('vdiskfs', 'qsd', 'ceiling', 'raw')}
        def ratio(o):
            a, b = med['vdiskfs'], med[o]
            if not a or not b: return '-'
            return '%.2fx' % ((b / a) if not w.startswith('fio') else (a / b))
        spread = ''
        vals = rows[(f, w, 'vdiskfs')]
        if len(vals) > 1: spread = ' (%.3g-%.3g)' % (min(vals), max(vals))
        fmtv = lambda v: '-' if v is None else ('%.3g' % v)
        print('| %s | %s | %s%s | %s | %s | %s | %s | %s | %s |' % (f, w, fmtv(med['vdiskfs']), spread,
              fmtv(med['qsd']), fmtv(med['ceiling']), fmtv(med['raw']), ratio('qsd'), ratio('ceiling'), ratio('raw')))
EOF
