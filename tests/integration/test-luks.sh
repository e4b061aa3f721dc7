#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The luks driver through a real mount: LUKS1 images made by qemu-img
# (aes-xts-plain64, aes-cbc-essiv:sha256) read as qemu-img convert reads
# them, with no holes (all of it is ciphertext); writes through -o rw read
# back by QEMU; without a key the image is listed, opening it fails with
# EACCES and user.vdiskfs.error says why. LUKS2 files made by cryptsetup
# (pbkdf2 and argon2id key slots) read and written as cryptsetup decrypts
# them.
. "$TESTLIB"
require_fuse
require_qemu

SECRET="--object secret,id=s0,data=PASS"
D=$T/img M=$T/mnt
mkdir -p "$D/nokey" "$M"

# make_luks FILE [OPTIONS]: a 4M QEMU luks image (retry_pbkdf: qemu-img
# now and then fails to time PBKDF2).
make_luks() {
    # shellcheck disable=SC2086
    retry_pbkdf "$1" qemu-img create -q -f luks $SECRET \
        -o "key-secret=s0,iter-time=10,hash-alg=sha256${2:+,$2}" "$1" 4M
}

# qio FILE COMMAND...: qemu-io on a luks image with the key.
qio() {
    local f=$1
    shift
    # shellcheck disable=SC2086
    qemu-io $SECRET --image-opts "driver=luks,file.filename=$f,key-secret=s0" "$@" >"$T/qio.out" ||
        fail "qemu-io $f $*: $(cat "$T/qio.out")"
}

# qemu_raw FILE OUT: the decrypted disk as qemu-img reads it.
qemu_raw() {
    # shellcheck disable=SC2086
    qemu-img convert $SECRET --image-opts "driver=luks,file.filename=$1,key-secret=s0" -O raw "$2" ||
        fail "qemu-img convert $1"
}

make_luks "$D/xts.luks"
make_luks "$D/essiv.luks" "cipher-mode=cbc,ivgen-alg=essiv,ivgen-hash-alg=sha256"
make_luks "$D/nokey/locked.luks"
head -c 3M /dev/urandom >"$T/rand"
for f in xts essiv; do
    qio "$D/$f.luks" -c "write -s $T/rand 4096 3M" -c "write -P 0x5a 1536 1000"
done
printf '[xts.luks]\npassphrase=PASS\n[essiv.luks]\npassphrase=PASS\n' >"$T/keys"
chmod 600 "$T/keys"

mount_vdiskfs "$D" "$M" -o keyfile="$T/keys"
for f in xts essiv; do
    note "$f.luks: bytes as qemu-img convert, no holes"
    qemu_raw "$D/$f.luks" "$T/$f.raw"
    same_bytes "$T/$f.raw" "$M/$f.luks" "$f.luks"
    [ "$(seek_map "$M/$f.luks")" = "0 4194304" ] ||
        fail "$f.luks: holes reported: $(seek_map "$M/$f.luks")"
    getfattr -n user.vdiskfs.format --only-values "$M/$f.luks" | grep -qx luks || fail "$f: xattr format"
done

note "no key: listed, open fails with EACCES and the reason"
[ -f "$M/nokey/locked.luks" ] || fail "locked.luks is not listed"
[ "$("$VDTEST" errno "$M/nokey/locked.luks" open-ro)" = EACCES ] || fail "locked.luks: open is not EACCES"
getfattr -n user.vdiskfs.error --only-values "$M/nokey/locked.luks" 2>/dev/null | grep -qi "keyfile" ||
    fail "locked.luks: user.vdiskfs.error does not say why: $(getfattr -n user.vdiskfs.error --only-values "$M/nokey/locked.luks" 2>&1)"
unmount_vdiskfs "$M"

note "-o rw: dd writes, unaligned and whole, read back by qemu-io and qemu-img"
mount_vdiskfs "$D" "$M" -o rw,keyfile="$T/keys"
for f in xts essiv; do
    head -c 70000 /dev/urandom >"$T/w1"
    dd if="$T/w1" of="$M/$f.luks" bs=70000 seek=1 oflag=seek_bytes conv=notrunc,fsync status=none ||
        fail "$f: dd unaligned"
    dd if=/dev/zero bs=64k count=2 status=none | tr '\0' '\245' >"$T/w2"
    dd if="$T/w2" of="$M/$f.luks" bs=64k seek=32 conv=notrunc,fsync status=none || fail "$f: dd aligned"
    # What the disk should now hold.
    dd if="$T/w1" of="$T/$f.raw" bs=70000 seek=1 oflag=seek_bytes conv=notrunc status=none
    dd if="$T/w2" of="$T/$f.raw" bs=64k seek=32 conv=notrunc status=none
done
unmount_vdiskfs "$M"
for f in xts essiv; do
    qio "$D/$f.luks" -c "read -P 0xa5 2M 128k"
    grep -q "read 131072/131072" "$T/qio.out" || fail "$f: qemu-io read -P 0xa5: $(cat "$T/qio.out")"
    qemu_raw "$D/$f.luks" "$T/$f.after"
    same_bytes "$T/$f.raw" "$T/$f.after" "$f.luks after writes (qemu-img convert)"
done

# LUKS2 files as cryptsetup makes them (QEMU 7.2 reads only LUKS1): the
# oracle is cryptsetup's own offline decryption of a copy (no device
# mapper needed), whose first 4M are then the disk.
command -v cryptsetup >/dev/null || fail "cryptsetup is missing (apt-get install cryptsetup-bin)"
printf PASS >"$T/key"
# make_luks2 FILE CRYPTSETUP-OPTIONS...
make_luks2() {
    local f=$1
    shift
    truncate -s 20M "$f" &&
        cryptsetup luksFormat --type luks2 "$@" --batch-mode --key-file "$T/key" "$f" >"$T/cs.out" 2>&1 ||
        fail "cryptsetup luksFormat $f: $(cat "$T/cs.out")"
}
# cs_raw FILE OUT
cs_raw() {
    cp "$1" "$T/cs.copy" && rm -f "$T/cs.hdr"
    cryptsetup reencrypt --decrypt --force-offline-reencrypt --header "$T/cs.hdr" --key-file "$T/key" \
        --batch-mode "$T/cs.copy" >"$T/cs.out" 2>&1 || fail "cryptsetup reencrypt --decrypt $1: $(cat "$T/cs.out")"
    head -c 4M "$T/cs.copy" >"$2"
    rm -f "$T/cs.copy" "$T/cs.hdr"
}
make_luks2 "$D/v2.luks" --pbkdf pbkdf2 --pbkdf-force-iterations 1000 -c aes-xts-plain64
make_luks2 "$D/argon.luks" --pbkdf argon2id --pbkdf-force-iterations 4 --pbkdf-memory 1024
printf '[v2.luks]\npassphrase=PASS\n[argon.luks]\npassphrase=PASS\n' >>"$T/keys"
mount_vdiskfs "$D" "$M" -o rw,keyfile="$T/keys"
note "LUKS2 (pbkdf2): bytes as cryptsetup decrypts them"
cs_raw "$D/v2.luks" "$T/v2.raw"
same_bytes "$T/v2.raw" "$M/v2.luks" "v2.luks"
note "LUKS2: dd writes read back by cryptsetup"
dd if="$T/w1" of="$M/v2.luks" bs=70000 seek=1 oflag=seek_bytes conv=notrunc,fsync status=none || fail "v2: dd"
dd if="$T/w1" of="$T/v2.raw" bs=70000 seek=1 oflag=seek_bytes conv=notrunc status=none
note "LUKS2 argon2id key slot: bytes as cryptsetup decrypts them"
cs_raw "$D/argon.luks" "$T/argon.raw"
same_bytes "$T/argon.raw" "$M/argon.luks" "argon.luks"
unmount_vdiskfs "$M"
cs_raw "$D/v2.luks" "$T/v2.after"
same_bytes "$T/v2.raw" "$T/v2.after" "v2.luks after writes (cryptsetup)"

note "vdisk info without a key describes the header"
"$VDISK" info "$D/nokey/locked.luks" >"$T/info" || fail "vdisk info locked.luks: $(cat "$T/info")"
for w in "file format: luks" "encryption_unlocked: false" "encryption_mode: xts-plain64" \
    "encryption_hash: sha256" "luks_version: 1"; do
    grep -q "$w" "$T/info" || fail "vdisk info lacks '$w': $(cat "$T/info")"
done
"$VDISK" info "$D/v2.luks" >"$T/info" || fail "vdisk info v2.luks: $(cat "$T/info")"
grep -q "luks_version: 2" "$T/info" || fail "vdisk info v2.luks: $(cat "$T/info")"
