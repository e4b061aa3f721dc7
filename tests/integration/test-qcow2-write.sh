#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# qcow2 writes through a -o rw mount: seeded random workloads against a
# model file on every kind of image, then qemu-img check (clean) and
# qemu-img compare (equal); growth; dirty and corrupt images; a SIGKILL
# loop (no corruption, fsynced data intact); ext4 with fstrim.
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D" "$M"
head -c 8388608 /dev/urandom >"$T/rand"
SECRET="--object secret,id=s0,data=sesame"
SEED=${QCOW2_TEST_SEED:-$(date +%s)}
note "seed $SEED (set QCOW2_TEST_SEED to repeat)"

# ops SEED COUNT SIZE: a random workload, one "w OFF LEN SRC", "z OFF LEN",
# "p OFF LEN", "d OFF LEN" or "s" per line (write, zero range, punch hole,
# write zero bytes, fsync). Lengths from 1 byte to 4 MiB, unaligned.
ops() {
    awk -v seed="$1" -v n="$2" -v size="$3" 'BEGIN {
        srand(seed);
        for (i = 0; i < n; i++) {
            r = rand();
            if (r < 0.4) len = 1 + int(rand() * 4096);
            else if (r < 0.85) len = 4096 + int(rand() * 262144);
            else len = 262144 + int(rand() * 3932160);
            if (len > size) len = size;
            off = int(rand() * (size - len + 1));
            if (rand() < 0.3) off -= off % 4096;
            k = rand();
            if (k < 0.6) printf "w %d %d %d\n", off, len, int(rand() * (8388608 - len));
            else if (k < 0.72) printf "z %d %d\n", off, len;
            else if (k < 0.84) printf "p %d %d\n", off, len;
            else if (k < 0.94) printf "d %d %d\n", off, len;
            else print "s";
        }
    }'
}

# apply FILE OP...: one operation on a file (the mount or the model).
apply() {
    local f=$1 op=$2
    case $op in
    w) dd if="$T/rand" of="$f" bs=1M iflag=skip_bytes,count_bytes oflag=seek_bytes \
        skip="$5" seek="$3" count="$4" conv=notrunc status=none ;;
    z) fallocate -z -n -o "$3" -l "$4" "$f" ;;
    p) fallocate -p -n -o "$3" -l "$4" "$f" ;;
    d) dd if=/dev/zero of="$f" bs=1M oflag=seek_bytes seek="$3" count="$4" iflag=count_bytes \
        conv=notrunc status=none ;;
    s) sync "$f" ;;
    esac
}

# workload IMAGE_NAME SEED COUNT: run on the mounted image and on $T/model.
workload() {
    local name=$1 size line
    size=$(stat -c %s "$M/$name")
    ops "$2" "$3" "$size" >"$T/ops"
    while read -r line; do
        # shellcheck disable=SC2086
        apply "$M/$name" $line || fail "$name: '$line' failed on the mount"
        # shellcheck disable=SC2086
        apply "$T/model" $line || fail "'$line' failed on the model"
    done <"$T/ops"
    cmp "$T/model" "$M/$name" >"$T/cmp.out" 2>&1 ||
        fail "$name: mount differs from the model after the workload (seed $2): $(cat "$T/cmp.out")"
}

# check_image IMAGE [qemu-img options...]: qemu-img check has no errors (leaks are
# allowed only where the test says so: LEAKS=ok) and the image equals the model.
check_image() {
    local img=$1 rc=0
    shift
    # shellcheck disable=SC2086
    qemu-img check "$@" "$img" >"$T/check.out" 2>&1 || rc=$?
    if [ "$rc" != 0 ] && ! { [ "$rc" = 3 ] && [ "${LEAKS:-}" = ok ]; }; then
        fail "$(basename "$img"): qemu-img check exit $rc: $(cat "$T/check.out")"
    fi
    # shellcheck disable=SC2086
    qemu-img compare "$@" -F raw "$img" "$T/model" >"$T/compare.out" 2>&1 ||
        fail "$(basename "$img"): qemu-img compare with the model: $(cat "$T/compare.out")"
}

# run_case NAME SEED COUNT: the model starts as qemu-img's view of the image.
run_case() {
    note "workload on $1 (seed $2, $3 ops)"
    qemu-img convert -O raw "$D/$1" "$T/model" || fail "convert $1"
    mount_vdiskfs "$D" "$M" -o rw,keyfile="$T/keys"
    workload "$1" "$2" "$3"
    unmount_vdiskfs "$M"
}

printf '[luks.qcow2]\npassphrase=sesame\n[aes.qcow2]\npassphrase=sesame\n' >"$T/keys"
chmod 600 "$T/keys"

note "images: plain, v2, backed, compressed, snapshotted, extended L2, small clusters, encrypted, data file"
qemu-img create -q -f qcow2 "$D/plain.qcow2" 24M
qemu-img create -q -f qcow2 -o compat=0.10 "$D/v2.qcow2" 24M
qemu-io -f qcow2 -c "write -s $T/rand 0 3M" "$D/v2.qcow2" >/dev/null
head -c 20971520 /dev/urandom >"$D/base.raw"
qemu-img create -q -f qcow2 -b base.raw -F raw -o cluster_size=65536 "$D/backed.qcow2" 24M
qemu-img create -q -f qcow2 -b base.raw -F raw -o compat=0.10 "$D/backed-v2.qcow2" 20M
qemu-img create -q -f qcow2 -b base.raw -F raw -o extended_l2=on,cluster_size=32768 "$D/backed-xl2.qcow2" 16M
for ct in zlib zstd; do
    head -c 16777216 "$T/rand" | tr '\000-\077' 'a' >"$T/compressible.raw"
    qemu-img convert -q -c -O qcow2 -o compression_type=$ct "$T/compressible.raw" "$D/comp-$ct.qcow2"
done
qemu-img create -q -f qcow2 "$D/snap.qcow2" 16M
qemu-io -f qcow2 -c "write -s $T/rand 0 6M" -c "write -c -s $T/rand 8M 2M" "$D/snap.qcow2" >/dev/null
qemu-img snapshot -c before "$D/snap.qcow2"
qemu-img convert -l snapshot.name=before -O raw "$D/snap.qcow2" "$T/snap-before.raw"
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=65536 "$D/xl2.qcow2" 16M
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=1 "$D/c512-rb1.qcow2" 6M
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 "$D/c512-rb64.qcow2" 6M
qemu-img create -q -f qcow2 -o cluster_size=2097152,refcount_bits=4 "$D/c2m.qcow2" 24M
qemu-img create -q -f qcow2 -o cluster_size=4096,refcount_bits=2 "$D/c4k-rb2.qcow2" 8M
qemu-img create -q -f qcow2 -o cluster_size=1024,refcount_bits=8 "$D/c1k-rb8.qcow2" 8M
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=32 "$D/c512-rb32.qcow2" 6M
qemu-img create -q -f qcow2 -o data_file="$D/ext.data" "$D/ext.qcow2" 12M
qemu-img create -q -f qcow2 -o data_file="$D/extraw.data",data_file_raw=on "$D/extraw.qcow2" 12M
for i in 1 2 3 4 5 6; do
    # shellcheck disable=SC2086
    qemu-img create -q -f qcow2 $SECRET -o encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10 \
        "$D/luks.qcow2" 12M 2>/dev/null && break
done
[ -f "$D/luks.qcow2" ] || fail "could not create luks.qcow2"
# shellcheck disable=SC2086
qemu-img create -q -f qcow2 $SECRET -o encrypt.format=aes,encrypt.key-secret=s0 "$D/aes.qcow2" 12M

n=0
for img in plain v2 backed backed-v2 backed-xl2 comp-zlib comp-zstd snap xl2 c512-rb1 c512-rb64 c2m \
    c4k-rb2 c1k-rb8 c512-rb32 ext extraw; do
    n=$((n + 1))
    run_case "$img.qcow2" $((SEED + n)) "${QCOW2_TEST_OPS:-60}"
    check_image "$D/$img.qcow2"
done
qemu-img convert -l snapshot.name=before -O raw "$D/snap.qcow2" "$T/snap-after.raw"
cmp "$T/snap-before.raw" "$T/snap-after.raw" || fail "the snapshot changed under writes to the active layer"
for img in luks aes; do
    n=$((n + 1))
    opts="driver=qcow2,file.filename=$D/$img.qcow2,encrypt.key-secret=s0"
    note "workload on $img.qcow2"
    # shellcheck disable=SC2086
    qemu-img convert $SECRET --image-opts "$opts" -O raw "$T/model"
    mount_vdiskfs "$D" "$M" -o rw,keyfile="$T/keys"
    workload "$img.qcow2" $((SEED + n)) 40
    unmount_vdiskfs "$M"
    # shellcheck disable=SC2086
    qemu-img check $SECRET --image-opts "$opts" >"$T/check.out" 2>&1 || fail "$img: check: $(cat "$T/check.out")"
    # shellcheck disable=SC2086
    qemu-img compare $SECRET --image-opts "$opts" "driver=raw,file.filename=$T/model" >"$T/compare.out" 2>&1 ||
        fail "$img: compare: $(cat "$T/compare.out")"
done

note "growth: truncate up (L1 table and refcount table grow); shrinking is refused"
cp "$D/c512-rb64.qcow2" "$T/grow-before.qcow2"
qemu-img convert -O raw "$D/c512-rb64.qcow2" "$T/model"
mount_vdiskfs "$D" "$M" -o rw
truncate -s 40M "$M/c512-rb64.qcow2" || fail "truncate -s 40M"
truncate -s 40M "$T/model"
[ "$(stat -c %s "$M/c512-rb64.qcow2")" = 41943040 ] || fail "size after growing"
apply "$M/c512-rb64.qcow2" w 35000000 3000000 12345
apply "$T/model" w 35000000 3000000 12345
[ "$("$VDTEST" errno "$M/c512-rb64.qcow2" truncate 1048576)" = EINVAL ] || fail "shrink is not EINVAL"
sync "$M/c512-rb64.qcow2"
cmp "$T/model" "$M/c512-rb64.qcow2" || fail "content after growing"
unmount_vdiskfs "$M"
check_image "$D/c512-rb64.qcow2"

note "growing an overlay: the longer backing file does not show through the new area"
qemu-img create -q -f qcow2 -b base.raw -F raw "$D/grow-top.qcow2" 10M
qemu-io -f qcow2 -c "write -P 0x31 9M 1M" "$D/grow-top.qcow2" >/dev/null
mount_vdiskfs "$D" "$M" -o rw
truncate -s 15000064 "$M/grow-top.qcow2" || fail "grow the overlay"
unmount_vdiskfs "$M"
qemu-img create -q -f qcow2 -b "$D/base.raw" -F raw "$T/qemu-top.qcow2" 10M
qemu-io -f qcow2 -c "write -P 0x31 9M 1M" "$T/qemu-top.qcow2" >/dev/null
qemu-img resize -q "$T/qemu-top.qcow2" 15000064
qemu-img convert -O raw "$T/qemu-top.qcow2" "$T/model"
check_image "$D/grow-top.qcow2"

note "many threads writing the same and different clusters"
qemu-img create -q -f qcow2 -o cluster_size=4096 "$D/par.qcow2" 8M
mount_vdiskfs "$D" "$M" -o rw
for t in 0 1 2 3 4 5 6 7; do
    (
        i=0
        while [ $i -lt 12 ]; do
            off=$(((i * 8 + t) * 40000))
            dd if="$T/rand" of="$M/par.qcow2" bs=40000 iflag=skip_bytes oflag=seek_bytes skip=$((t * 100000 + i)) \
                seek=$off count=1 conv=notrunc status=none
            i=$((i + 1))
        done
    ) &
done
wait
sync "$M/par.qcow2"
: >"$T/model"
truncate -s 8M "$T/model"
for t in 0 1 2 3 4 5 6 7; do
    i=0
    while [ $i -lt 12 ]; do
        dd if="$T/rand" of="$T/model" bs=40000 iflag=skip_bytes oflag=seek_bytes skip=$((t * 100000 + i)) \
            seek=$(((i * 8 + t) * 40000)) count=1 conv=notrunc status=none
        i=$((i + 1))
    done
done
cmp "$T/model" "$M/par.qcow2" || fail "parallel writers lost data"
unmount_vdiskfs "$M"
check_image "$D/par.qcow2"

note "dirty (lazy refcounts) image: repaired when opened read-write"
qemu-img create -q -f qcow2 -o lazy_refcounts=on,cluster_size=4096 "$D/dirty.qcow2" 8M
qemu-io -f qcow2 -c "write -s $T/rand 0 2M" -c "write -c -P 0x71 3M 64k" "$D/dirty.qcow2" >/dev/null
qemu-img snapshot -c s1 "$D/dirty.qcow2"
qemu-img convert -l snapshot.name=s1 -O raw "$D/dirty.qcow2" "$T/dirty-s1.raw"
qemu-io -f qcow2 -c "write -s $T/rand 1M 2M" -c "write -P 0x72 5M 1M" -c "write -z 100k 300k" \
    -c "sigraise 9" "$D/dirty.qcow2" >/dev/null 2>&1 || true
[ "$(od -An -tx1 -j79 -N1 "$D/dirty.qcow2" | tr -d ' ')" = 01 ] || fail "qemu-io left dirty.qcow2 clean"
qemu-img check "$D/dirty.qcow2" >/dev/null 2>&1 && fail "dirty.qcow2 has consistent refcounts already"
qemu-img convert -O raw "$D/dirty.qcow2" "$T/model"
mount_vdiskfs "$D" "$M" -o rw
workload dirty.qcow2 $((SEED + 50)) 30
unmount_vdiskfs "$M"
[ "$(od -An -tx1 -j79 -N1 "$D/dirty.qcow2" | tr -d ' ')" = 00 ] || fail "dirty bit still set after repair"
check_image "$D/dirty.qcow2"
qemu-img convert -l snapshot.name=s1 -O raw "$D/dirty.qcow2" "$T/dirty-s1b.raw"
cmp "$T/dirty-s1.raw" "$T/dirty-s1b.raw" || fail "dirty.qcow2: the snapshot changed"

note "corrupt-flagged image stays read-only; unknown autoclear bits are cleared on writing"
qemu-img create -q -f qcow2 "$D/corrupt.qcow2" 1M
printf '\002' | dd of="$D/corrupt.qcow2" bs=1 seek=79 conv=notrunc status=none
qemu-img create -q -f qcow2 "$D/bitmap.qcow2" 4M
qemu-img bitmap --add "$D/bitmap.qcow2" b0
qemu-img convert -O raw "$D/bitmap.qcow2" "$T/model"
mount_vdiskfs "$D" "$M" -o rw
[ "$(stat -c %a "$M/corrupt.qcow2")" = 444 ] || fail "corrupt.qcow2 is writable: $(stat -c %a "$M/corrupt.qcow2")"
[ "$("$VDTEST" errno "$M/corrupt.qcow2" open-rw)" = EROFS ] || fail "corrupt.qcow2 opens for writing"
workload bitmap.qcow2 $((SEED + 51)) 20
unmount_vdiskfs "$M"
[ "$(od -An -tx1 -j95 -N1 "$D/bitmap.qcow2" | tr -d ' ')" = 00 ] || fail "bitmaps autoclear bit still set"
LEAKS=ok check_image "$D/bitmap.qcow2"

note "SIGKILL at random moments while writing: qemu-img check without errors, fsynced data intact"
KILLS=${QCOW2_TEST_KILLS:-30}
qemu-img create -q -f qcow2 -o cluster_size=4096 "$D/kill.qcow2" 24M
qemu-img create -q -f qcow2 -b kill.qcow2 -F qcow2 -o cluster_size=16384,extended_l2=on "$D/kill-top.qcow2" 24M
: >"$T/model"
truncate -s 24M "$T/model"
it=0 interrupted=0
while [ $it -lt "$KILLS" ]; do
    it=$((it + 1))
    # Alternate between the plain image and an extended-L2 overlay; every fifth run SIGTERM.
    if [ $((it % 3)) = 0 ]; then img=kill-top.qcow2; else img=kill.qcow2; fi
    sig=KILL
    [ $((it % 5)) = 0 ] && sig=TERM
    qemu-img convert -O raw "$D/$img" "$T/model"
    [ -z "${QCOW2_TEST_KEEP:-}" ] || cp "$D/kill.qcow2" "$D/kill-top.qcow2" "$T/"
    cp "$T/model" "$T/synced"
    ops $((SEED * 1000 + it)) 400 25165824 | awk '{ print } NR % 4 == 0 { print "s" }' >"$T/kops"
    : >"$T/klog"
    mount_vdiskfs "$D" "$M" -o rw
    pid=$(pgrep -f "vdiskfs.* $M\$" | head -1)
    [ -n "$pid" ] || fail "cannot find the vdiskfs process"
    (
        # Through a descriptor held open all along: once the daemon is gone
        # the writes fail, instead of landing in the bare mount point, and
        # SIGTERM finds the image still open.
        exec 3<>"$M/$img" || exit 0
        while read -r line; do
            echo "$line" >>"$T/klog"
            # shellcheck disable=SC2086
            apply /dev/fd/3 $line 2>/dev/null || break
            # shellcheck disable=SC2086
            apply "$T/model" $line
            if [ "$line" = s ]; then
                cp "$T/model" "$T/synced.new" && mv "$T/synced.new" "$T/synced" && echo S >>"$T/klog"
            fi
        done <"$T/kops"
    ) &
    writer=$!
    nops=$(wc -l <"$T/kops")
    sleep "$(awk -v s=$((SEED + it)) 'BEGIN { srand(s); printf "%.2f", 0.1 + rand() * 1.2 }')"
    kill -s $sig "$pid"
    wait $writer || true
    # The daemon must be gone (SIGTERM: after flushing) before the image is looked at.
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do
        [ $i = 100 ] && { fusermount3 -u -z "$M" 2>/dev/null || umount -l "$M" 2>/dev/null || true; }
        sleep 0.05
        i=$((i + 1))
    done
    ! kill -0 "$pid" 2>/dev/null || fail "run $it: vdiskfs did not exit after SIG$sig"
    [ "$(grep -cv '^S$' "$T/klog")" -ge "$nops" ] || interrupted=$((interrupted + 1))
    fusermount3 -u -z "$M" 2>/dev/null || umount -l "$M" 2>/dev/null || true
    rc=0
    qemu-img check "$D/$img" >"$T/check.out" 2>&1 || rc=$?
    [ "$rc" = 0 ] || [ "$rc" = 3 ] || fail "run $it ($sig, $img): qemu-img check exit $rc: $(head -20 "$T/check.out")"
    qemu-img convert -O raw "$D/$img" "$T/got.raw"
    # What was written after the last completed fsync may or may not be there.
    if [ $sig = TERM ]; then
        cp "$T/model" "$T/expect.raw"
        tail -1 "$T/klog" >"$T/undefined"
    else
        cp "$T/synced" "$T/expect.raw"
        awk '/^S$/ { n = NR } { l[NR] = $0 } END { for (i = n + 1; i <= NR; i++) print l[i] }' "$T/klog" >"$T/undefined"
    fi
    cp "$T/got.raw" "$T/got.masked"
    while read -r op off len rest; do
        case $op in w | z | p | d)
            for f in "$T/got.masked" "$T/expect.raw"; do
                dd if=/dev/zero of="$f" bs=1M oflag=seek_bytes iflag=count_bytes seek="$off" count="$len" \
                    conv=notrunc status=none
            done ;;
        esac
    done <"$T/undefined"
    if ! cmp "$T/expect.raw" "$T/got.masked" >"$T/cmp.out" 2>&1; then
        [ -z "${QCOW2_TEST_KEEP:-}" ] || cp -r "$T" "$QCOW2_TEST_KEEP"
        fail "run $it ($sig, $img): data acknowledged by fsync is not intact: $(cat "$T/cmp.out") (ops: $(wc -l <"$T/klog"))"
    fi
done
note "$KILLS kill runs passed, $interrupted of them interrupted mid-workload"
[ $((interrupted * 2)) -ge "$KILLS" ] || fail "too few runs were interrupted while writing"

note "SIGTERM flushes an image that is still open"
qemu-img create -q -f qcow2 -o cluster_size=4096 "$D/term.qcow2" 8M
mount_vdiskfs "$D" "$M" -o rw
pid=$(pgrep -f "vdiskfs.* $M\$" | head -1)
(
    exec 3<>"$M/term.qcow2"
    # Sequential writes through the one descriptor, no fsync, then wait for the signal.
    dd if="$T/rand" bs=65536 count=40 status=none >&3
    dd if="$T/rand" bs=1000 skip=7 count=900 status=none >&3
    touch "$T/term.ready"
    sleep 30
) &
writer=$!
i=0
while [ ! -e "$T/term.ready" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
kill -s TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
! kill -0 "$pid" 2>/dev/null || fail "vdiskfs did not exit after SIGTERM"
kill "$writer" 2>/dev/null || true
wait "$writer" 2>/dev/null || true
fusermount3 -u -z "$M" 2>/dev/null || true
: >"$T/model"
truncate -s 8M "$T/model"
dd if="$T/rand" of="$T/model" bs=65536 count=40 conv=notrunc status=none
dd if="$T/rand" bs=1000 skip=7 count=900 status=none | dd of="$T/model" bs=1000 seek=2621440 oflag=seek_bytes \
    conv=notrunc status=none
check_image "$D/term.qcow2"

note "ext4 in the image: mkfs, loop mount, write and delete files, fstrim shrinks the image"
qemu-img create -q -f qcow2 "$D/fs.qcow2" 96M
mount_vdiskfs "$D" "$M" -o rw
mkfs.ext4 -q -F "$M/fs.qcow2" >/dev/null 2>&1 || fail "mkfs.ext4 on the mounted image"
mkdir -p "$T/ext4"
if mount -o loop "$M/fs.qcow2" "$T/ext4" 2>"$T/loop.err"; then
    i=0
    while [ $i -lt 12 ]; do
        head -c $((2 * 1048576 + i * 4099)) "$T/rand" >"$T/ext4/f$i"
        i=$((i + 1))
    done
    mkdir "$T/ext4/dir"
    cp "$T/rand" "$T/ext4/dir/keep"
    sync
    rm -f "$T/ext4"/f*
    sync
    before=$(du -k "$D/fs.qcow2" | cut -f1)
    fstrim "$T/ext4" || fail "fstrim"
    sync
    cmp "$T/rand" "$T/ext4/dir/keep" || fail "file in ext4 reads back wrong"
    umount "$T/ext4" || fail "umount ext4"
    sync "$M/fs.qcow2"
    after=$(du -k "$D/fs.qcow2" | cut -f1)
    [ "$after" -lt "$before" ] || fail "fstrim did not shrink the image ($before KiB -> $after KiB)"
    note "du: $before KiB before fstrim, $after KiB after"
else
    fail "cannot loop-mount the image: $(cat "$T/loop.err")"
fi
unmount_vdiskfs "$M"
qemu-img check "$D/fs.qcow2" >"$T/check.out" 2>&1 || fail "fs.qcow2: qemu-img check: $(cat "$T/check.out")"
qemu-img convert -O raw "$D/fs.qcow2" "$T/fs.raw"
e2fsck -fn "$T/fs.raw" >"$T/fsck.out" 2>&1 || fail "e2fsck -fn: $(cat "$T/fsck.out")"
mkdir -p "$T/ext4b"
mount -o loop,ro "$T/fs.raw" "$T/ext4b" || fail "mount the converted image"
cmp "$T/rand" "$T/ext4b/dir/keep" || { umount "$T/ext4b"; fail "file in the converted image"; }
umount "$T/ext4b"

echo PASS
