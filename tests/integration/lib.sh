# SPDX-License-Identifier: GPL-2.0-or-later
# Sourced by every integration test: temp dirs, mounting, comparisons.
# Exit codes follow automake: 0 pass, 1 fail, 77 skip (only when FUSE is
# missing, and never under CI=true), 99 hard error.
set -eu

: "${VDISKFS:?VDISKFS must point at the vdiskfs binary}"
: "${VDISK:?VDISK must point at the vdisk binary}"
VDTEST=${VDTEST:-$(dirname "$VDISK")/tests/integration/vdtest}

skip() {
    if [ "${CI:-}" = true ]; then
        echo "FAIL (skip not allowed under CI=true): $*" >&2
        exit 1
    fi
    echo "SKIP: $*"
    exit 77
}

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

note() {
    echo "# $*"
}

MOUNTS=""
T=$(mktemp -d "${TMPDIR:-/tmp}/vdiskfs-test.XXXXXX")
chmod 755 "$T"

cleanup() {
    for m in $MOUNTS; do
        if mountpoint -q "$m" 2>/dev/null; then
            fusermount3 -u "$m" 2>/dev/null || umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
        fi
    done
    rm -rf "$T"
}
trap cleanup EXIT

require_fuse() {
    [ -c /dev/fuse ] || skip "/dev/fuse is missing"
    if [ "$(id -u)" != 0 ]; then
        command -v fusermount3 >/dev/null || skip "not root and no fusermount3"
    fi
}

# require_user_fuse: an ordinary user can open /dev/fuse, as Debian's udev
# rule (mode 0666) makes it on a real system; a container's /dev may have
# it 0600, which root here puts right.
require_user_fuse() {
    if [ "$(stat -c %a /dev/fuse)" != 666 ]; then
        [ "$(id -u)" = 0 ] || skip "/dev/fuse is not usable by ordinary users"
        chmod 0666 /dev/fuse || fail "chmod /dev/fuse"
    fi
}

require_qemu() {
    command -v qemu-img >/dev/null || fail "qemu-img is missing (apt-get install qemu-utils)"
}

# mount_vdiskfs IMAGEDIR MOUNTPOINT [vdiskfs options...]
mount_vdiskfs() {
    local dir=$1 mnt=$2
    shift 2
    mkdir -p "$mnt"
    "$VDISKFS" "$@" "$dir" "$mnt" || fail "vdiskfs $* $dir $mnt failed"
    MOUNTS="$MOUNTS $mnt"
    mountpoint -q "$mnt" || fail "$mnt is not a mountpoint after vdiskfs returned"
}

unmount_vdiskfs() {
    local mnt=$1
    fusermount3 -u "$mnt" 2>/dev/null || umount "$mnt" || fail "cannot unmount $mnt"
    # The daemon flushes and exits after the kernel lets go; wait for it.
    local i=0
    while pgrep -f "vdiskfs.* $mnt\$" >/dev/null 2>&1 && [ $i -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
}

# retry_pbkdf FILE COMMAND...: run a qemu-img create of a LUKS key slot
# until it succeeds. qemu-img benchmarks PBKDF2 to count iterations and now
# and then fails to time it ("Unable to get accurate CPU usage": it reads 0
# ms, for sha1 on a fast host or on a loaded one); up to 20 tries.
retry_pbkdf() {
    local f=$1 i
    shift
    for i in $(seq 20); do
        "$@" 2>"$T/luks.err" && return 0
        rm -f "$f"
        sleep 0.1
    done
    fail "qemu-img create LUKS $f: $(cat "$T/luks.err")"
}

# create_luks FILE [OPTIONS]: a 4M LUKS-encrypted qcow2 whose passphrase is
# the secret s0 of $SECRET (--object secret,id=s0,...), key slots timed for
# ${LUKS_ITER_TIME:-10} ms.
create_luks() {
    # shellcheck disable=SC2086
    retry_pbkdf "$1" qemu-img create -q -f qcow2 $SECRET \
        -o "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=${LUKS_ITER_TIME:-10}${2:+,$2}" \
        "$1" 4M
}

# within TENTHS COMMAND...: run it, failing when it has not finished after
# TENTHS tenths of a second (a blocked FUSE request ignores even SIGKILL:
# kill the daemon to free it); its exit status in RC.
within() {
    local n=$1 i=0 p
    shift
    "$@" &
    p=$!
    while kill -0 $p 2>/dev/null; do
        i=$((i + 1))
        [ $i -le "$n" ] || fail "$* still runs after $((n / 10)) s"
        sleep 0.1
    done
    RC=0
    wait $p || RC=$?
}

# cpu_ticks PID: user + system time of a process, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# wait_gone PID: until a (killed) daemon has really exited. kill returns at
# once; the dying process holds its files, and their locks, a while longer.
wait_gone() {
    local i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt 200 ]; do
        sleep 0.02
        i=$((i + 1))
    done
}

# kill_while_writing IMAGEDIR MOUNTPOINT ROUND COMMAND [ARGS...]: mount
# IMAGEDIR read-write, run COMMAND in the background, SIGKILL the daemon
# at a random moment 50 to 800 ms later (ROUND varies it), then wait for
# COMMAND to give up and for the daemon to be gone, the mount detached.
kill_while_writing() {
    local dir=$1 mnt=$2 round=$3 pid wpid
    shift 3
    mount_vdiskfs "$dir" "$mnt" -o rw
    pid=$(pgrep -f "vdiskfs -o rw $dir $mnt\$" | head -n1)
    [ -n "$pid" ] || fail "no vdiskfs process for $mnt"
    "$@" &
    wpid=$!
    sleep "0.$(printf '%03d' $(( (round * 7919 + 1$(date +%N | cut -c1-4)) % 750 + 50 )))"
    kill -9 "$pid"
    wait $wpid 2>/dev/null || true
    umount -l "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.02; done
}

# same_bytes EXPECTED_FILE GOT_FILE WHAT
same_bytes() {
    if ! cmp "$1" "$2" >"$T/cmp.out" 2>&1; then
        fail "$3: content differs from $1: $(cat "$T/cmp.out")"
    fi
}

# Data ranges of a file through SEEK_DATA/SEEK_HOLE, one "start length" per line.
seek_map() {
    "$VDTEST" seekmap "$1"
}

# Data ranges that qemu-img map reports for an image (merged), same format.
qemu_data_map() {
    qemu-img map --output=json "$@" | tr -d '[]' | awk -F'[:,]' '
        {
            start = 0; len = 0; data = ""; seen_start = 0;
            for (i = 1; i < NF; i++) {
                k = $i; gsub(/[ "{}]/, "", k); v = $(i + 1); gsub(/[ "{}]/, "", v);
                if (k == "start") { start = v + 0; seen_start = 1 }
                if (k == "length") len = v + 0;
                if (k == "data") data = v;
            }
            if (!seen_start) next;
            if (data == "true") {
                if (have && cs + cl == start) { cl += len } else { if (have) printf "%.0f %.0f\n", cs, cl; cs = start; cl = len; have = 1 }
            }
        }
        END { if (have) printf "%.0f %.0f\n", cs, cl }'
}

# compare_to_qemu IMAGE MOUNTED_FILE: bytes and holes both equal qemu-img's view.
compare_to_qemu() {
    local img=$1 got=$2 name
    name=$(basename "$img")
    qemu-img convert -O raw "$img" "$T/expect.raw" || fail "qemu-img convert $img"
    same_bytes "$T/expect.raw" "$got" "$name"
    qemu_data_map "$img" >"$T/qmap"
    seek_map "$got" >"$T/vmap"
    if ! diff "$T/qmap" "$T/vmap" >"$T/mapdiff"; then
        fail "$name: data map differs from qemu-img map (< qemu, > vdiskfs): $(cat "$T/mapdiff")"
    fi
}
