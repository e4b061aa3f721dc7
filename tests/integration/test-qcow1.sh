#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# qcow (version 1) through a real mount: images from qemu-img create
# (plain, odd sizes, AES-encrypted with a key file, backing files of
# several formats, which QEMU makes with 512-byte clusters), compressed
# images from qemu-img convert -c, a missing key (EACCES with a reason),
# and random writes through -o rw into plain, compressed, encrypted and
# backed images, checked against a model and with qemu-img compare (QEMU
# has no checker for qcow).
. "$TESTLIB"
require_fuse
require_qemu
. "$(dirname "$TESTLIB")/test-vhd-common.sh" # random_writes

D=$T/images M=$T/mnt B=$T/bases
mkdir -p "$D" "$M" "$B"
SECRET="--object secret,id=sec0,data=Correct-Horse-Battery-Staple"

# The key file: passphrases by image path relative to IMAGEDIR.
cat >"$T/keys" <<'EOF'
[enc.qcow]
passphrase=Correct-Horse-Battery-Staple
[enc-odd.qcow]
passphrase=Correct-Horse-Battery-Staple
EOF
chmod 600 "$T/keys"

# enc_opts IMAGE: --image-opts string for an encrypted image.
enc_opts() {
    echo "driver=qcow,encrypt.key-secret=sec0,file.filename=$1"
}

# compare_enc IMAGE MOUNTED: compare_to_qemu for encrypted images.
compare_enc() {
    local img=$1 got=$2 name
    name=$(basename "$img")
    # shellcheck disable=SC2086
    qemu-img convert $SECRET --image-opts "$(enc_opts "$img")" -O raw "$T/expect.raw" ||
        fail "qemu-img convert $img"
    same_bytes "$T/expect.raw" "$got" "$name"
    # shellcheck disable=SC2086
    qemu_data_map $SECRET --image-opts "$(enc_opts "$img")" >"$T/qmap"
    seek_map "$got" >"$T/vmap"
    diff "$T/qmap" "$T/vmap" >"$T/mapdiff" ||
        fail "$name: data map differs from qemu-img map (< qemu, > vdiskfs): $(cat "$T/mapdiff")"
}

note "images: plain, odd size, large and sparse, encrypted"
qemu-img create -q -f qcow "$D/plain.qcow" 20M
qemu-img create -q -f qcow "$D/odd.qcow" 7654321
qemu-img create -q -f qcow "$D/big.qcow" 4G
qemu-img create -q -f qcow "$D/empty.qcow" 64M
for f in plain odd big; do
    size=$(qemu-img info -f qcow --output=json "$D/$f.qcow" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
    qemu-io -f qcow -c "write -P 0xa1 0 64k" -c "write -P 0xb2 3M 1100k" -c "write -P 0xc3 5000 700" \
        -c "write -P 0xd4 $((size - 4096)) 4k" "$D/$f.qcow" >/dev/null || fail "qemu-io $f"
done
for f in enc enc-odd; do
    size=20M
    [ $f = enc-odd ] && size=3333333
    # Both spellings: encrypt.format=aes and the deprecated encryption=on.
    opt=encrypt.format=aes
    [ $f = enc-odd ] && opt=encryption=on
    # shellcheck disable=SC2086
    qemu-img create -q -f qcow $SECRET -o $opt,encrypt.key-secret=sec0 "$D/$f.qcow" $size ||
        fail "qemu-img cannot create an encrypted qcow image ($opt)"
    # shellcheck disable=SC2086
    qemu-io $SECRET --image-opts -c "write -P 0x5e 4k 130k" -c "write -P 0x6f 1M 3000" \
        "$(enc_opts "$D/$f.qcow")" >/dev/null || fail "qemu-io $f"
done
cp "$D/enc.qcow" "$D/nokey.qcow"

note "compressed images (qemu-img convert -c)"
# Random (incompressible, so stored plain), text, zeros, text again.
head -c 1M /dev/urandom >"$T/mixed.raw"
yes "vdiskfs qcow compressed cluster test" | head -c 2M >>"$T/mixed.raw"
truncate -s 4M "$T/mixed.raw"
yes "tail" | head -c 1M >>"$T/mixed.raw"
# qemu-img 7.2 exits 1 without a message after writing a correct
# compressed qcow image (its end-of-stream compressed write fails): the
# status is ignored and the result compared instead.
compress() {
    qemu-img convert -c -f raw -O qcow "$1" "$2" 2>/dev/null || true
    qemu-img compare -q -f raw -F qcow "$1" "$2" || fail "qemu-img convert -c made a wrong $2"
}
compress "$T/mixed.raw" "$D/compressed.qcow"
# A size that ends in the middle of an L2 table, text in the last cluster
# (QEMU cannot compress a partial last cluster).
truncate -s $((5 * 1048576 + 12288)) "$T/odd.raw"
dd if=/dev/urandom of="$T/odd.raw" bs=4096 count=3 seek=100 conv=notrunc status=none
yes "the very end" | dd of="$T/odd.raw" bs=4096 count=2 seek=1281 iflag=fullblock conv=notrunc status=none
compress "$T/odd.raw" "$D/compressed2.qcow"

note "backing files: qcow, raw, qed (QEMU uses 512-byte clusters then)"
head -c 6M /dev/urandom >"$B/base.raw"
qemu-img create -q -f qcow "$B/base.qcow" 6M
qemu-io -f qcow -c "write -P 0x21 0 2M" -c "write -P 0x22 5M 1M" "$B/base.qcow" >/dev/null
qemu-img create -q -f qed "$B/base.qed" 6M
qemu-io -f qed -c "write -P 0x31 1M 3M" "$B/base.qed" >/dev/null
mkdir -p "$D/chain"
for b in raw qcow qed; do
    qemu-img create -q -f qcow -b "../../bases/base.$b" -F $b "$D/chain/over-$b.qcow" 8M
    qemu-io -f qcow -c "write -P 0x41 64k 64k" -c "write -P 0x42 4100k 3000" -c "write -P 0x43 7M 4k" \
        "$D/chain/over-$b.qcow" >/dev/null || fail "qemu-io over-$b"
done
mkdir -p "$T/elsewhere/x" "$D/orphan"
qemu-img create -q -f qcow -b "../gone.qcow" -F qcow -u "$T/elsewhere/x/orphan.qcow" 8M
cp "$T/elsewhere/x/orphan.qcow" "$D/orphan/"

# Bases outside IMAGEDIR, hence backing=any: see test-qed.sh.
mount_vdiskfs "$D" "$M" -o backing=any,keyfile="$T/keys"

note "contents and data maps equal qemu-img's"
for f in plain odd big empty compressed compressed2; do
    compare_to_qemu "$D/$f.qcow" "$M/$f.qcow"
done
[ -z "$(seek_map "$M/empty.qcow")" ] || fail "empty.qcow shows data: $(seek_map "$M/empty.qcow")"
[ "$(stat -c %s "$M/odd.qcow")" = 7654400 ] || fail "odd.qcow size $(stat -c %s "$M/odd.qcow")"
for f in enc enc-odd; do
    compare_enc "$D/$f.qcow" "$M/$f.qcow"
done
for b in raw qcow qed; do
    compare_to_qemu "$D/chain/over-$b.qcow" "$M/chain/over-$b.qcow"
done
"$VDISK" info "$D/chain/over-qcow.qcow" >"$T/info"
grep -q "cluster_size: 512" "$T/info" || fail "vdisk info cluster_size: $(cat "$T/info")"
grep -q "l2_entries: 4096" "$T/info" || fail "vdisk info l2_entries: $(cat "$T/info")"
getfattr --absolute-names -n user.vdiskfs.cluster_size --only-values "$M/plain.qcow" | grep -qx 4096 ||
    fail "cluster_size xattr"
getfattr --absolute-names -n user.vdiskfs.format --only-values "$M/enc.qcow" | grep -qx qcow ||
    fail "format xattr"
"$VDISK" -k "$T/keys" info "$D/enc.qcow" | grep -q "encryption: aes-cbc" || fail "vdisk info encryption"
"$VDTEST" parread "$M/compressed.qcow" "$T/mixed.raw" 8 40 || fail "parallel readers (compressed)"
# shellcheck disable=SC2086
qemu-img convert $SECRET --image-opts "$(enc_opts "$D/enc.qcow")" -O raw "$T/enc.raw"
"$VDTEST" parread "$M/enc.qcow" "$T/enc.raw" 8 40 || fail "parallel readers (encrypted)"

note "an encrypted image without a key: listed, EACCES, the reason in user.vdiskfs.error"
[ -f "$M/nokey.qcow" ] || fail "nokey.qcow not listed"
[ "$("$VDTEST" errno "$M/nokey.qcow" open-ro)" = EACCES ] || fail "open without a key is not EACCES"
getfattr --absolute-names -n user.vdiskfs.error --only-values "$M/nokey.qcow" >"$T/err" 2>&1 || true
grep -qi "passphrase\|key" "$T/err" || fail "error gives no reason: $(cat "$T/err")"
[ -f "$M/orphan/orphan.qcow" ] || fail "orphan not listed"
getfattr --absolute-names -n user.vdiskfs.error --only-values "$M/orphan/orphan.qcow" >"$T/err" 2>&1 || true
grep -q "gone.qcow" "$T/err" || fail "error does not name the missing backing file: $(cat "$T/err")"
unmount_vdiskfs "$M"

note "rw: random writes against a model (plain, compressed, encrypted, backed)"
RW="plain odd empty compressed compressed2"
for f in $RW; do
    qemu-img convert -f qcow -O raw "$D/$f.qcow" "$T/$f.model"
done
for f in enc enc-odd; do
    # shellcheck disable=SC2086
    qemu-img convert $SECRET --image-opts "$(enc_opts "$D/$f.qcow")" -O raw "$T/$f.model"
done
for b in raw qcow qed; do
    qemu-img convert -f qcow -O raw "$D/chain/over-$b.qcow" "$T/over-$b.model"
    cp "$B/base.$b" "$T/base-$b.before"
done
mount_vdiskfs "$D" "$M" -o rw,backing=any,keyfile="$T/keys"
seed=11
for f in $RW enc enc-odd; do
    random_writes "$M/$f.qcow" "$T/$f.model" "$(stat -c %s "$T/$f.model")" $seed
    seed=$((seed + 1))
    same_bytes "$T/$f.model" "$M/$f.qcow" "$f.qcow after writes"
done
for b in raw qcow qed; do
    random_writes "$M/chain/over-$b.qcow" "$T/over-$b.model" "$(stat -c %s "$T/over-$b.model")" $seed
    seed=$((seed + 1))
    same_bytes "$T/over-$b.model" "$M/chain/over-$b.qcow" "over-$b.qcow after writes"
done
note "rw: every compressed cluster rewritten, byte by byte in places"
dd if=/dev/urandom of="$T/patch" bs=1 count=1 status=none
for off in 1048576 1052673 2097151 4194304 4198400 5242879; do
    for dst in "$M/compressed.qcow" "$T/compressed.model"; do
        dd if="$T/patch" of="$dst" bs=1 seek=$off conv=notrunc status=none
    done
done
same_bytes "$T/compressed.model" "$M/compressed.qcow" "compressed.qcow after byte writes"
unmount_vdiskfs "$M"

for f in $RW; do
    qemu-img compare -q -f qcow -F raw "$D/$f.qcow" "$T/$f.model" ||
        fail "$f.qcow: qemu-img compare with the model: $(qemu-img compare -f qcow -F raw "$D/$f.qcow" "$T/$f.model" 2>&1)"
done
for f in enc enc-odd; do
    # shellcheck disable=SC2086
    qemu-img compare -q $SECRET --image-opts "$(enc_opts "$D/$f.qcow")" \
        "driver=raw,file.filename=$T/$f.model" ||
        fail "$f.qcow: qemu-img compare with the model"
done
for b in raw qcow qed; do
    qemu-img compare -q -f qcow -F raw "$D/chain/over-$b.qcow" "$T/over-$b.model" ||
        fail "over-$b.qcow: qemu-img compare: $(qemu-img compare -f qcow -F raw "$D/chain/over-$b.qcow" "$T/over-$b.model" 2>&1)"
    same_bytes "$T/base-$b.before" "$B/base.$b" "base.$b after writes to its child"
done
mount_vdiskfs "$D" "$M" -o backing=any,keyfile="$T/keys"
for f in plain compressed; do
    compare_to_qemu "$D/$f.qcow" "$M/$f.qcow"
done
compare_enc "$D/enc.qcow" "$M/enc.qcow"
compare_to_qemu "$D/chain/over-qcow.qcow" "$M/chain/over-qcow.qcow"
unmount_vdiskfs "$M"
echo PASS
