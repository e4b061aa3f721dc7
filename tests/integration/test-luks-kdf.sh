#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# PBKDF2 of encrypted images is bounded and cancellable (src/vd-kdf.c).
# A LUKS key slot's iteration count is the image's choice: 2^30 costs
# minutes of CPU per slot. With the default cap (-o kdf_max_iterations)
# such an image is refused at once with the reason logged (EACCES, like a
# missing key: the image is sound, the policy refuses it), the directory
# lists at once, and normal images (qemu-img's default iter-time included)
# still open and read as qemu-img does, and a hostile slot does not keep
# the passphrase of another slot from opening the image. A daemon deriving an allowed but
# slow key (cap raised, a slot of 2^28) stops within a second or two of
# SIGTERM and the mount goes away.
. "$TESTLIB"
require_fuse
require_qemu

SECRET="--object secret,id=s0,data=sesame"
# A daemon stuck in PBKDF2 (the bug) ignores SIGTERM and holds the mount.
VP=""
trap '[ -z "$VP" ] || { kill -KILL $VP; wait $VP; fusermount3 -u "$M" || umount -l "$M"; } 2>/dev/null || true; cleanup' EXIT
D=$T/img M=$T/mnt
mkdir -p "$D/sub" "$M"

# set_slot_iterations IMAGE SLOT COUNT: patch the LUKS header in place.
set_slot_iterations() {
    local luks off
    luks=$(LC_ALL=C grep -obUaP 'LUKS\xba\xbe' "$1" | head -1 | cut -d: -f1)
    [ -n "$luks" ] || fail "$1: no LUKS header found"
    off=$((luks + 208 + 48 * $2 + 4))
    # shellcheck disable=SC2059
    printf "$(printf '\\%03o\\%03o\\%03o\\%03o' $(($3 >> 24 & 255)) $(($3 >> 16 & 255)) \
        $(($3 >> 8 & 255)) $(($3 & 255)))" |
        dd of="$1" bs=1 seek="$off" conv=notrunc status=none || fail "patch $1"
}

# start_daemon OPTIONS: vdiskfs in the foreground (its log in $T/log), in
# the background; VP is its pid.
start_daemon() {
    "$VDISKFS" -f -o "keyfile=$T/keys${1:+,$1}" "$D" "$M" 2>"$T/log" &
    VP=$!
    MOUNTS="$MOUNTS $M"
    i=0
    while ! mountpoint -q "$M"; do
        i=$((i + 1))
        [ $i -lt 100 ] || fail "no mount after 10 s: $(cat "$T/log")"
        sleep 0.1
    done
}

create_luks "$D/normal.qcow2"
head -c 3M /dev/urandom >"$T/rand"
# shellcheck disable=SC2086
qemu-io $SECRET --image-opts -c "write -s $T/rand 4096 3M" \
    "driver=qcow2,file.filename=$D/normal.qcow2,encrypt.key-secret=s0" >/dev/null || fail "qemu-io"
# What qemu-img makes when not told otherwise: key slots timed for 2 s
# (in sub/, so that listing the top does not open it).
LUKS_ITER_TIME=2000 create_luks "$D/sub/default.qcow2"
cp "$D/normal.qcow2" "$D/hostile.qcow2"
set_slot_iterations "$D/hostile.qcow2" 0 1073741824
# Two key slots, the passphrase in the second: the first's count must not
# matter (over the cap: skipped; under it but slow: tried last).
create_luks "$D/two.qcow2"
# shellcheck disable=SC2086
qemu-img amend $SECRET --object secret,id=s1,data=other \
    --image-opts "driver=qcow2,file.filename=$D/two.qcow2,encrypt.key-secret=s0" \
    -o encrypt.state=active,encrypt.new-secret=s1,encrypt.iter-time=10 || fail "qemu-img amend"
mkdir "$D/order"
cp "$D/two.qcow2" "$D/order/order.qcow2"
set_slot_iterations "$D/two.qcow2" 0 1073741824
set_slot_iterations "$D/order/order.qcow2" 0 268435456
printf '[normal.qcow2]\npassphrase=sesame\n[sub/default.qcow2]\npassphrase=sesame\n' >"$T/keys"
printf '[hostile.qcow2]\npassphrase=sesame\n[slow.qcow2]\npassphrase=sesame\n' >>"$T/keys"
printf '[two.qcow2]\npassphrase=other\n[order/order.qcow2]\npassphrase=other\n' >>"$T/keys"
chmod 600 "$T/keys"

note "the option is range-checked"
for v in abc -1 0 2147483648 99999999999999999999 10k; do
    if "$VDISKFS" -o "kdf_max_iterations=$v" "$D" "$M" 2>"$T/err"; then
        fusermount3 -u "$M" 2>/dev/null || true
        fail "-o kdf_max_iterations=$v was accepted"
    fi
    [ "$(wc -l <"$T/err")" = 1 ] && grep -q "kdf_max_iterations=$v: not a whole number" "$T/err" ||
        fail "-o kdf_max_iterations=$v: $(cat "$T/err")"
done
"$VDISKFS" --help | grep -q "kdf_max_iterations=N" || fail "--help does not list kdf_max_iterations"

note "default cap: 2^30 iterations refused at once, the listing does not wait"
start_daemon ""
within 30 ls -l "$M" >"$T/ls"
[ $RC = 0 ] || fail "ls -l failed: $(cat "$T/ls")"
grep -q hostile.qcow2 "$T/ls" || fail "hostile.qcow2 not listed: $(cat "$T/ls")"
within 20 dd if="$M/hostile.qcow2" of=/dev/null bs=4k count=1 2>"$T/dd"
[ $RC != 0 ] || fail "hostile.qcow2 was readable"
grep -q "Permission denied" "$T/dd" || fail "hostile.qcow2: expected EACCES, got: $(cat "$T/dd")"
grep -q "hostile.qcow2: LUKS key slot 0 asks for 1073741824 PBKDF2 iterations, more than the 33554432 allowed (-o kdf_max_iterations)" "$T/log" ||
    fail "the refusal is not logged: $(cat "$T/log")"
getfattr --absolute-names -n user.vdiskfs.error --only-values "$M/hostile.qcow2" 2>/dev/null |
    grep -q "LUKS key slot 0 asks for 1073741824 PBKDF2 iterations" ||
    fail "user.vdiskfs.error of hostile.qcow2 does not give the reason"
[ "$(cpu_ticks $VP)" -lt 300 ] || fail "the daemon used $(cpu_ticks $VP) ticks of CPU"

note "normal images open and read as qemu-img does"
# shellcheck disable=SC2086
qemu-img convert $SECRET --image-opts -O raw \
    "driver=qcow2,file.filename=$D/normal.qcow2,encrypt.key-secret=s0" "$T/expect.raw" || fail "convert"
same_bytes "$T/expect.raw" "$M/normal.qcow2" normal.qcow2
within 30 cmp -s -n 1048576 /dev/zero "$M/two.qcow2"
[ $RC = 0 ] || fail "two.qcow2 (key slot 0 over the cap, the passphrase in slot 1): $(tail -3 "$T/log")"
cmp -s -n 1048576 /dev/zero "$M/sub/default.qcow2" ||
    fail "sub/default.qcow2 (qemu-img's default iter-time) does not read as zeros: $(tail -3 "$T/log")"
kill -TERM $VP
wait $VP || fail "vdiskfs exited with $?"
VP=""

note "SIGTERM while a slow key is being derived"
rm "$D/hostile.qcow2"
start_daemon "kdf_max_iterations=1073741824"
# Slot 0 allowed but slow (a minute or more), slot 1 cheap: tried first.
within 50 cmp -s -n 1048576 /dev/zero "$M/order/order.qcow2"
[ $RC = 0 ] || fail "order/order.qcow2 (the passphrase in the cheaper slot 1): $(tail -3 "$T/log")"
# Added while mounted, so that the listings above did not open it.
cp "$D/normal.qcow2" "$T/slow.qcow2"
set_slot_iterations "$T/slow.qcow2" 0 268435456
mv "$T/slow.qcow2" "$D/slow.qcow2"
cat "$M/slow.qcow2" >/dev/null 2>&1 &
CP=$!
# Deriving: the daemon burns a core (half a second of CPU, 10 s at most).
i=0
while [ "$(cpu_ticks $VP)" -lt 50 ]; do
    i=$((i + 1))
    [ $i -lt 100 ] || fail "the daemon does not derive the key of slow.qcow2: $(cat "$T/log")"
    sleep 0.1
done
t0=$(date +%s%N)
kill -TERM $VP
i=0
while kill -0 $VP 2>/dev/null; do
    i=$((i + 1))
    if [ $i -ge 40 ]; then
        fail "vdiskfs still runs 4 s after SIGTERM (deriving a key)"
    fi
    sleep 0.1
done
t1=$(date +%s%N)
note "vdiskfs exited $(((t1 - t0) / 1000000)) ms after SIGTERM"
wait $VP || fail "vdiskfs exited with $? after SIGTERM"
VP=""
mountpoint -q "$M" && fail "$M is still mounted after SIGTERM"
kill $CP 2>/dev/null || true
wait $CP 2>/dev/null || true
exit 0
