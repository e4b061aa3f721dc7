# SPDX-License-Identifier: GPL-2.0-or-later
# Shared by the benchmarks (sourced): the servers under test, started on an
# image and stopped again. Needs W (work directory), VDISKFS, PASSTHROUGH.

log() { echo "[bench] $*" >&2; }

wait_mounted() {
    local i=0
    until mountpoint -q "$1" 2>/dev/null || [ -f "$1" ] && [ "$(stat -f -c %T "$1" 2>/dev/null)" = fuseblk -o "$(stat -f -c %T "$1")" = fuse ]; do
        i=$((i + 1))
        [ $i -lt 200 ] || { log "$1 did not mount"; return 1; }
        sleep 0.05
    done
}

unmount_all() {
    for m in "$W/mnt-vd" "$W/mnt-qcow" "$W/mnt-pt" "$W/qsd-target"; do
        umount "$m" 2>/dev/null || true
    done
    # FUSE daemons exit (and drop their image locks) after the unmount.
    while pgrep -f "($VDISKFS|$PASSTHROUGH|qcowmount) .*$W/mnt-" >/dev/null; do sleep 0.05; done
    # start runs in a command substitution: the daemon's pid is in a file.
    if [ -s "$W/qsd.pid" ]; then
        local pid
        pid=$(cat "$W/qsd.pid")
        kill "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
        : >"$W/qsd.pid"
    fi
    sleep 0.2
}

# This kind of VM gives page cache back to the host within seconds even
# without memory pressure: warm the image right before every measurement
# (all but the 1 TiB sparse one, whose holes would take minutes to read).
warm() {
    [ "$(stat -c %s "$1")" -le $((4 << 30)) ] && cat "$1" >/dev/null
    return 0
}

# start TARGET IMAGE FORMAT WRITABLE -> prints the file to benchmark
start() {
    local target=$1 img=$2 fmt=$3 rw=$4
    unmount_all
    warm "$img"
    case $target in
    vdiskfs | vdiskfs-ra* | vdiskfs-uring*)
        # vdiskfs-raN: the same with -o read_ahead=N (KiB); vdiskfs-uringN
        # or vdiskfs-uringoff: with -o uring=N|off.
        local ra=""
        case $target in
        vdiskfs-ra*) ra="-o read_ahead=${target#vdiskfs-ra}" ;;
        vdiskfs-uring*) ra="-o uring=${target#vdiskfs-uring}" ;;
        esac
        # shellcheck disable=SC2086
        "$VDISKFS" $([ "$rw" = 1 ] && echo "-o rw") $ra "$(dirname "$img")" "$W/mnt-vd"
        echo "$W/mnt-vd/$(basename "$img")"
        ;;
    qsd)
        qemu-storage-daemon \
            --blockdev driver=file,node-name=file0,filename="$img" \
            --blockdev driver="$fmt",node-name=fmt0,file=file0 \
            --export type=fuse,id=exp0,node-name=fmt0,mountpoint="$W/qsd-target",writable=$([ "$rw" = 1 ] && echo on || echo off) \
            >"$W/qsd.log" 2>&1 &
        echo $! >"$W/qsd.pid"
        local i=0
        until grep -q " $W/qsd-target " /proc/mounts; do
            i=$((i + 1)); [ $i -lt 200 ] || { log "qsd did not mount: $(cat "$W/qsd.log")"; return 1; }
            sleep 0.05
        done
        echo "$W/qsd-target"
        ;;
    qcowmount)
        qcowmount "$img" "$W/mnt-qcow" >/dev/null 2>&1
        echo "$W/mnt-qcow/qcow1"
        ;;
    ceiling)
        "$PASSTHROUGH" "$img" "$W/mnt-pt"
        echo "$W/mnt-pt/disk"
        ;;
    esac
}

