#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# qcow2 reads through a real mount, against qemu-img/qemu-io as the oracle:
# versions, cluster sizes, refcount widths, odd sizes, extended L2, zero
# and compressed clusters, backing chains, encryption, external data files,
# internal snapshots, hostile feature bits, maps, and the real images.
. "$TESTLIB"
require_fuse
require_qemu

D=$T/images M=$T/mnt
mkdir -p "$D/sub" "$M" "$T/outside"
head -c 4194304 /dev/urandom >"$T/rand"
SECRET="--object secret,id=s0,data=sesame"

# find_bytes FILE PATTERN: offset of the first match (grep -P escapes) in the first 64 KiB.
find_bytes() {
    head -c 65536 "$1" | LC_ALL=C grep -obUaP "$2" | head -1 | cut -d: -f1
}

# put_bytes FILE OFFSET PRINTF_STRING: overwrite bytes in place.
put_bytes() {
    # shellcheck disable=SC2059
    printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# fill IMAGE SIZE CLUSTER: a fixed mix of writes (random data, partial
# clusters, zero writes with and without unmap) that fits in SIZE.
fill() {
    local img=$1 size=$2 cs=$3
    qemu-io -f qcow2 \
        -c "write -s $T/rand 0 $((cs * 3 / 2 + 100))" \
        -c "write -P 0x22 $((cs * 5 + 7)) 3001" \
        -c "write -s $T/rand $((cs * 9 + 512)) $((cs * 4))" \
        -c "write -z $((cs * 10)) $((cs * 2))" \
        -c "write -z -u $((cs * 16)) $((cs))" \
        -c "write -P 0x33 $((size - 5000)) 5000" \
        "$img" >/dev/null || fail "qemu-io fill $img"
}

# create NAME SIZE CLUSTER OPTIONS: make and fill an image in $D.
create() {
    local name=$1 size=$2 cs=$3 opts=$4
    qemu-img create -q -f qcow2 -o "cluster_size=$cs${opts:+,$opts}" "$D/$name" "$size" ||
        fail "qemu-img create $name ($opts)"
    fill "$D/$name" "$size" "$cs"
}

# map_norm: qemu-img map JSON -> "start length depth present zero data offset" lines,
# adjacent runs with the same answer merged. qemu reports host offsets for
# unallocated subclusters of allocated clusters; only data runs' offsets count.
map_norm() {
    tr -d '[]' | awk -F'[:,]' '
        function flush() { if (have) print cs, cl, cd, cp, cz, cda, co }
        {
            start = ""; off = "-";
            for (i = 1; i < NF; i++) {
                k = $i; gsub(/[ "{}]/, "", k); v = $(i + 1); gsub(/[ "{}]/, "", v);
                if (k == "start") start = v; if (k == "length") len = v;
                if (k == "depth") d = v; if (k == "present") p = v;
                if (k == "zero") z = v; if (k == "data") da = v; if (k == "offset") off = v;
            }
            if (start == "") next;
            if (da != "true") off = "-";
            if (have && cd == d && cp == p && cz == z && cda == da &&
                (off == "-" ? co == "-" : (co != "-" && co + cl == off))) { cl += len; next }
            flush(); cs = start; cl = len; cd = d; cp = p; cz = z; cda = da; co = off; have = 1
        }
        END { flush() }'
}

# compare_map IMAGE [qemu-img map options]: vdisk map --json equals qemu-img map.
compare_map() {
    local img=$1
    shift
    qemu-img map --output=json "$@" "$img" | map_norm >"$T/qm" || fail "qemu-img map $img"
    "$VDISK" map --json -k "$T/keys" "$img" | map_norm >"$T/vm" || fail "vdisk map $img"
    diff "$T/qm" "$T/vm" >"$T/mapdiff" ||
        fail "$(basename "$img"): vdisk map differs from qemu-img map (< qemu, > vdisk): $(cat "$T/mapdiff")"
}

# compare_enc IMAGE MOUNTED: like compare_to_qemu, for an encrypted image.
compare_enc() {
    local img=$1 got=$2 opts="driver=qcow2,file.filename=$1,encrypt.key-secret=s0"
    # shellcheck disable=SC2086
    qemu-img convert $SECRET --image-opts "$opts" -O raw "$T/expect.raw" || fail "convert $img"
    same_bytes "$T/expect.raw" "$got" "$(basename "$img")"
    # shellcheck disable=SC2086
    qemu_data_map $SECRET --image-opts "$opts" >"$T/qmap"
    seek_map "$got" >"$T/vmap"
    diff "$T/qmap" "$T/vmap" >"$T/mapdiff" || fail "$(basename "$img"): data map: $(cat "$T/mapdiff")"
}

note "matrix: compat x cluster size, refcount widths, odd sizes"
for compat in 0.10 1.1; do
    for cs in 512 4096 65536 2097152; do
        size=$((cs * 40 + 12345))
        create "v$compat-c$cs.qcow2" "$size" "$cs" "compat=$compat"
    done
done
for rb in 1 2 4 8 32 64; do
    create "rb$rb.qcow2" 3145728 4096 "refcount_bits=$rb"
done
create "odd.qcow2" 1000003 4096 ""
for p in metadata falloc full; do
    create "prealloc-$p.qcow2" 2097152 65536 "preallocation=$p"
done
# Many small L2 tables (32 KiB of guest each), for the cache tests below.
qemu-img create -q -f qcow2 -o cluster_size=512 "$D/many-l2.qcow2" 8M
qemu-io -f qcow2 -c "write -s $T/rand 0 4M" -c "write -s $T/rand 5M 2M" -c "write -z 4500k 100k" \
    "$D/many-l2.qcow2" >/dev/null
qemu-img create -q -f qcow2 "$D/empty.qcow2" 0
qemu-img create -q -f qcow2 "$D/sparse-1t.qcow2" 1T
qemu-io -f qcow2 -c "write -s $T/rand 0 1M" -c "write -s $T/rand 500G 2M" -c "write -P 9 1023G 64k" \
    "$D/sparse-1t.qcow2" >/dev/null

note "extended L2: subclusters"
for cs in 16384 65536 2097152; do
    sc=$((cs / 32))
    qemu-img create -q -f qcow2 -o "cluster_size=$cs,extended_l2=on" "$D/xl2-$cs.qcow2" $((cs * 20))
    qemu-io -f qcow2 -c "write -P 1 $((sc * 3)) $((sc * 2))" -c "write -P 2 $((cs + sc * 31 + 5)) 100" \
        -c "write -z $((cs * 2 + sc)) $((sc * 4))" -c "write -s $T/rand $((cs * 4)) $((cs * 3 + sc))" \
        -c "write -z -u $((cs * 5 + sc * 8)) $((sc * 8))" -c "write -c -P 7 $((cs * 10)) $cs" \
        "$D/xl2-$cs.qcow2" >/dev/null || fail "qemu-io xl2-$cs"
done

note "compressed clusters: zlib and zstd"
for ct in zlib zstd; do
    qemu-img create -q -f raw "$T/src-$ct.raw" 3M
    dd if="$T/rand" of="$T/src-$ct.raw" bs=64k count=8 conv=notrunc status=none
    printf 'compressible %.0s' $(seq 1 3000) | dd of="$T/src-$ct.raw" bs=64k seek=20 conv=notrunc status=none
    qemu-img convert -c -O qcow2 -o "compression_type=$ct" "$T/src-$ct.raw" "$D/comp-$ct.qcow2"
    qemu-io -f qcow2 -c "write -c -P 5 2M 64k" -c "write -P 6 100k 1000" "$D/comp-$ct.qcow2" >/dev/null
    qemu-img create -q -f qcow2 -o "compression_type=$ct,cluster_size=4096" "$D/comp4k-$ct.qcow2" 1M
    for i in 0 1 2 3 4 5 6 7; do
        qemu-io -f qcow2 -c "write -c -s $T/rand $((i * 8192)) 4096" -c "write -c -P $i $((i * 8192 + 4096)) 4096" \
            "$D/comp4k-$ct.qcow2" >/dev/null
    done
done

note "backing chains: raw and qcow2 backings, relative names, shorter backing, probing"
head -c 3145728 "$T/rand" >"$D/sub/base.raw"
qemu-img create -q -f qcow2 -b base.raw -F raw "$D/sub/mid.qcow2" 4M
qemu-io -f qcow2 -c "write -P 0x44 1M 64k" -c "write -z 2M 64k" -c "write -P 0x45 3500k 100k" "$D/sub/mid.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b sub/mid.qcow2 -F qcow2 "$D/top.qcow2" 6M
qemu-io -f qcow2 -c "write -P 0x46 1040k 10k" -c "write -z 100k 20k" -c "write -P 0x47 5M 1k" "$D/top.qcow2" >/dev/null
qemu-img create -q -f qcow2 -o cluster_size=4096 "$D/short-base.qcow2" 1M
qemu-io -f qcow2 -c "write -P 0x48 0 1M" "$D/short-base.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b short-base.qcow2 -F qcow2 "$D/short-top.qcow2" 3M
qemu-io -f qcow2 -c "write -P 0x49 900k 200k" "$D/short-top.qcow2" >/dev/null
# No backing format extension: the type is overwritten so the extension is an
# unknown one (skipped) and the backing file's format is probed.
qemu-img create -q -f qcow2 -b short-base.qcow2 -F qcow2 "$D/probed.qcow2" 2M
ext=$(find_bytes "$D/probed.qcow2" '\xe2\x79\x2a\xca')
[ -n "$ext" ] || fail "probed.qcow2 has no backing format extension"
put_bytes "$D/probed.qcow2" "$ext" '\013\255\360\015'
qemu-io -f qcow2 -c "write -P 0x4a 0 4k" "$D/probed.qcow2" >/dev/null
# A backing file outside IMAGEDIR: refused unless -o backing=any.
qemu-img create -q -f qcow2 "$T/outside/far.qcow2" 1M
qemu-img create -q -f qcow2 -b "$T/outside/far.qcow2" -F qcow2 "$D/escape.qcow2" 1M

note "encryption: LUKS (several ciphers) and legacy AES"
create_luks "$D/luks.qcow2" ""
create_luks "$D/luks-cbc.qcow2" "encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256,encrypt.hash-alg=sha512"
create_luks "$D/sub/nokey.qcow2" ""
# shellcheck disable=SC2086
qemu-img create -q -f qcow2 $SECRET -o encrypt.format=aes,encrypt.key-secret=s0 "$D/aes.qcow2" 4M
for f in luks luks-cbc aes sub/nokey; do
    # shellcheck disable=SC2086
    qemu-io $SECRET --image-opts -c "write -s $T/rand 1000 300k" -c "write -P 3 2M 64k" -c "write -z 3M 64k" \
        "driver=qcow2,file.filename=$D/$f.qcow2,encrypt.key-secret=s0" >/dev/null || fail "qemu-io $f"
done
printf '[luks.qcow2]\npassphrase=sesame\n[luks-cbc.qcow2]\npassphrase=sesame\n[aes.qcow2]\npassphrase=sesame\n' >"$T/keys"
chmod 600 "$T/keys"

note "external data files"
qemu-img create -q -f qcow2 -o data_file="$D/ext.data" "$D/ext.qcow2" 4M
qemu-img create -q -f qcow2 -o data_file="$D/extraw.data",data_file_raw=on "$D/extraw.qcow2" 4M
for f in ext extraw; do
    qemu-io -f qcow2 -c "write -s $T/rand 100k 300k" -c "write -z 1M 128k" -c "write -P 8 3M 4k" "$D/$f.qcow2" >/dev/null
done
# Relative data file name, resolved from the image's directory.
(cd "$D/sub" && qemu-img create -q -f qcow2 -o data_file=rel.data rel.qcow2 1M &&
    qemu-io -f qcow2 -c "write -P 0x51 64k 64k" rel.qcow2 >/dev/null) || fail "rel.qcow2"

note "internal snapshots (odd names, a size change)"
qemu-img create -q -f qcow2 "$D/snap.qcow2" 2M
qemu-io -f qcow2 -c "write -s $T/rand 0 1M" "$D/snap.qcow2" >/dev/null
qemu-img snapshot -c first "$D/snap.qcow2"
qemu-io -f qcow2 -c "write -P 0x61 100k 300k" -c "write -z 0 64k" "$D/snap.qcow2" >/dev/null
qemu-img snapshot -c "a/b" "$D/snap.qcow2"
qemu-img snapshot -c "" "$D/snap.qcow2"
qemu-img resize -q "$D/snap.qcow2" 3M
qemu-io -f qcow2 -c "write -P 0x62 2500k 100k" -c "write -P 0x63 0 4k" "$D/snap.qcow2" >/dev/null
qemu-img snapshot -c dup "$D/snap.qcow2"
qemu-io -f qcow2 -c "write -P 0x64 50k 10k" "$D/snap.qcow2" >/dev/null
qemu-img snapshot -c dup "$D/snap.qcow2"
qemu-io -f qcow2 -c "write -P 0x65 1M 1M" "$D/snap.qcow2" >/dev/null

note "feature bits: dirty, corrupt, unknown incompatible"
qemu-img create -q -f qcow2 -o lazy_refcounts=on "$D/dirty.qcow2" 1M
qemu-io -f qcow2 -c "write -P 0x71 0 100k" -c "sigraise 9" "$D/dirty.qcow2" >/dev/null 2>&1 || true
[ "$(od -An -tx1 -j79 -N1 "$D/dirty.qcow2" | tr -d ' ')" = 01 ] || fail "qemu-io left dirty.qcow2 clean"
setbits() { # IMAGE BYTE_OFFSET MASK: or MASK into one header byte
    local v
    v=$(od -An -tu1 -j"$2" -N1 "$1" | tr -d ' ')
    put_bytes "$1" "$2" "$(printf '\\%03o' $((v | $3)))"
}
qemu-img create -q -f qcow2 "$D/corrupt.qcow2" 1M
qemu-io -f qcow2 -c "write -P 0x72 0 64k" "$D/corrupt.qcow2" >/dev/null
setbits "$D/corrupt.qcow2" 79 2
qemu-img create -q -f qcow2 "$D/unknown-bit.qcow2" 1M
setbits "$D/unknown-bit.qcow2" 76 0x20 # incompatible bit 29
qemu-img create -q -f qcow2 "$D/named-bit.qcow2" 1M
setbits "$D/named-bit.qcow2" 79 0x80 # incompatible bit 7, named below
ext=$(find_bytes "$D/named-bit.qcow2" '\x68\x03\xf8\x57')
[ -n "$ext" ] || fail "named-bit.qcow2 has no feature name table"
# The second entry (incompatible bit 1, "corrupt") becomes bit 7, "frobnication".
[ "$(od -An -tu1 -j$((ext + 8 + 48)) -N2 "$D/named-bit.qcow2" | tr -s ' ')" = " 0 1" ] ||
    fail "unexpected feature name table layout"
put_bytes "$D/named-bit.qcow2" $((ext + 8 + 48 + 1)) '\007frobnication\000\000\000\000\000\000\000\000'

note "real images from \$TESTDATA"
if [ -d "${TESTDATA:-/nonexistent}" ] && [ -f "$TESTDATA/basic-zstd.qcow2.gz" ]; then
    mkdir -p "$D/real"
    for f in basic-zstd backing-chain-1 backing-chain-2 backing-chain-3; do
        gunzip -c "$TESTDATA/$f.qcow2.gz" >"$D/real/$f.qcow2"
    done
    HAVE_REAL=1
else
    note "no \$TESTDATA: skipping the real images"
    HAVE_REAL=0
fi

chmod 640 "$T/keys"
"$VDISKFS" -o keyfile="$T/keys" "$D" "$M" 2>"$T/err" && fail "a group-readable key file was accepted"
grep -q "readable by group or others" "$T/err" || fail "key file refusal does not say why: $(cat "$T/err")"
chmod 600 "$T/keys"
mount_vdiskfs "$D" "$M" -o keyfile="$T/keys"

note "byte-for-byte and hole maps against qemu-img"
for img in "$D"/*.qcow2 "$D"/sub/mid.qcow2; do
    rel=${img#"$D"/}
    case $rel in
    sparse-1t.qcow2 | luks*.qcow2 | aes.qcow2 | corrupt.qcow2 | unknown-bit.qcow2 | named-bit.qcow2 | escape.qcow2) continue ;;
    esac
    compare_to_qemu "$img" "$M/$rel"
done
for f in luks luks-cbc aes; do
    compare_enc "$D/$f.qcow2" "$M/$f.qcow2"
    # shellcheck disable=SC2086
    qemu-img map --output=json $SECRET --image-opts "driver=qcow2,file.filename=$D/$f.qcow2,encrypt.key-secret=s0" |
        map_norm >"$T/qm"
    # Not piped: a failure says how (CI once saw an empty map, no message).
    "$VDISK" map --json -k "$T/keys" "$D/$f.qcow2" >"$T/vmraw" 2>"$T/vmerr" ||
        fail "$f.qcow2: vdisk map exited with $?: $(cat "$T/vmerr")"
    map_norm <"$T/vmraw" >"$T/vm"
    [ -s "$T/vm" ] || fail "$f.qcow2: vdisk map printed no map: '$(cat "$T/vmraw")' $(cat "$T/vmerr")"
    diff "$T/qm" "$T/vm" >"$T/mapdiff" || fail "$f.qcow2: vdisk map differs from qemu-img map: $(cat "$T/mapdiff")"
done
qsize=$(qemu-img info --output=json "$D/odd.qcow2" | awk -F'[:,]' '/"virtual-size"/ { gsub(/ /, "", $2); print $2 }')
[ $((qsize % 4096)) != 0 ] || fail "odd.qcow2 is a cluster multiple ($qsize)"
[ "$(stat -c %s "$M/odd.qcow2")" = "$qsize" ] || fail "odd.qcow2 size: $(stat -c %s "$M/odd.qcow2"), not $qsize"
[ "$(stat -c %s "$M/short-top.qcow2")" = 3145728 ] || fail "short-top size"

note "vdisk map --json equals qemu-img map"
for img in v1.1-c512.qcow2 v0.10-c65536.qcow2 xl2-65536.qcow2 xl2-16384.qcow2 comp-zstd.qcow2 \
    top.qcow2 short-top.qcow2 extraw.qcow2 ext.qcow2 rb1.qcow2 sparse-1t.qcow2; do
    compare_map "$D/$img"
done
note "1 TiB sparse image: holes from the cluster map, fast sparse copy"
qemu_data_map "$D/sparse-1t.qcow2" >"$T/qmap"
seek_map "$M/sparse-1t.qcow2" >"$T/vmap"
diff "$T/qmap" "$T/vmap" >"$T/mapdiff" || fail "sparse-1t: data map: $(cat "$T/mapdiff")"
start=$(date +%s)
cp --sparse=always "$M/sparse-1t.qcow2" "$T/sparse-copy.raw"
elapsed=$(($(date +%s) - start))
[ "$elapsed" -le 20 ] || fail "cp --sparse=always of a 1 TiB image took ${elapsed}s"
[ "$(stat -c %s "$T/sparse-copy.raw")" = 1099511627776 ] || fail "sparse copy size"
[ "$(du -k "$T/sparse-copy.raw" | cut -f1)" -lt 20000 ] || fail "sparse copy is not sparse"
cmp -n 1048576 "$T/sparse-copy.raw" "$T/rand" || fail "sparse copy: first MiB"
rm -f "$T/sparse-copy.raw"
[ "$(stat -c %b "$M/sparse-1t.qcow2")" -lt 20000 ] || fail "st_blocks of sparse-1t is not the host usage"

note "encryption: without a key the image is listed, opening fails with EACCES and a reason"
[ -e "$M/sub/nokey.qcow2" ] || fail "nokey.qcow2 is not listed"
[ "$("$VDTEST" errno "$M/sub/nokey.qcow2" open-ro)" = EACCES ] || fail "nokey.qcow2: open is not EACCES"
getfattr -n user.vdiskfs.error --only-values "$M/sub/nokey.qcow2" 2>/dev/null | grep -qi "passphrase\|keyfile" ||
    fail "nokey.qcow2: user.vdiskfs.error does not give the reason"

note "backing outside IMAGEDIR refused by default"
[ "$("$VDTEST" errno "$M/escape.qcow2" open-ro)" = EACCES ] || fail "escape.qcow2 opened"

note "feature bits"
[ "$("$VDTEST" errno "$M/unknown-bit.qcow2" open-ro)" = EIO ] || fail "unknown incompatible bit accepted"
getfattr -n user.vdiskfs.error --only-values "$M/unknown-bit.qcow2" | grep -q "bit 29" ||
    fail "unknown-bit: error does not name the bit: $(getfattr -n user.vdiskfs.error --only-values "$M/unknown-bit.qcow2")"
getfattr -n user.vdiskfs.error --only-values "$M/named-bit.qcow2" | grep -q "frobnication" ||
    fail "named-bit: error does not use the feature name table"
# A corrupt-flagged image still reads (read-only).
[ "$(head -c 65536 "$M/corrupt.qcow2" | tr -d 'r' | wc -c)" = 0 ] || fail "corrupt.qcow2 does not read its data"

note "snapshots: one read-only file each, equal to qemu-img convert -l, mtime = date"
ls "$M/.snapshots/snap.qcow2" >"$T/snaps"
for n in first a_b snapshot-3 dup dup~5; do
    grep -qx -- "$n" "$T/snaps" || fail "snapshot file $n missing: $(cat "$T/snaps")"
done
for pair in 1:first 2:a_b 3:snapshot-3 4:dup 5:dup~5; do
    id=${pair%%:*} n=${pair#*:}
    qemu-img convert -l "snapshot.id=$id" -O raw "$D/snap.qcow2" "$T/snap.raw" || fail "convert snapshot $id"
    # qemu-img writes the image's current size; past the snapshot's own size it has zeros.
    ssize=$(stat -c %s "$M/.snapshots/snap.qcow2/$n")
    if [ "$(stat -c %s "$T/snap.raw")" -gt "$ssize" ]; then
        [ "$(tail -c +$((ssize + 1)) "$T/snap.raw" | tr -d '\0' | wc -c)" = 0 ] ||
            fail "snapshot $n: qemu-img shows data past the snapshot's size $ssize"
        truncate -s "$ssize" "$T/snap.raw"
    fi
    same_bytes "$T/snap.raw" "$M/.snapshots/snap.qcow2/$n" "snapshot $n"
    date=$(qemu-img info --output=json "$D/snap.qcow2" | awk -v id="\"$id\"" '
        /"date-sec"/ { gsub(/[^0-9]/, "", $2); d = $2 } /"id"/ { gsub(/[ ,]/, "", $2); if ($2 == id) print d }')
    [ "$(stat -c %Y "$M/.snapshots/snap.qcow2/$n")" = "$date" ] || fail "snapshot $n: mtime is not the snapshot date ($date)"
done
[ "$(stat -c %s "$M/.snapshots/snap.qcow2/first")" = 2097152 ] || fail "snapshot keeps its own size"
[ "$(stat -c %s "$M/.snapshots/snap.qcow2/dup")" = 3145728 ] || fail "later snapshot size"
[ "$("$VDTEST" errno "$M/.snapshots/snap.qcow2/first" open-rw)" != OK ] || fail "snapshot opens read-write"

note "xattrs and vdisk info"
getfattr -n user.vdiskfs.format --only-values "$M/top.qcow2" | grep -qx qcow2 || fail "xattr format"
getfattr -n user.vdiskfs.cluster_size --only-values "$M/v1.1-c512.qcow2" | grep -qx 512 || fail "xattr cluster_size"
getfattr -n user.vdiskfs.snapshot_count --only-values "$M/snap.qcow2" | grep -qx 5 || fail "xattr snapshot_count"
"$VDISK" info "$D/top.qcow2" >"$T/info"
for pat in "compat: 1.1" "cluster_size: 65536" "backing file: sub/mid.qcow2" "backing chain: .*base.raw (raw)" \
    "compression_type: zlib" "encryption: none" "refcount_bits: 16"; do
    grep -q "$pat" "$T/info" || fail "vdisk info lacks '$pat': $(cat "$T/info")"
done
"$VDISK" info -k "$T/keys" "$D/luks.qcow2" | grep -q "encryption: luks" || fail "vdisk info: luks"
"$VDISK" info -k "$T/keys" "$D/luks.qcow2" | grep -q "encryption_cipher: aes-256" || fail "vdisk info: cipher"
# As qemu-img info: no key needed to describe; the data stays out of reach.
"$VDISK" info "$D/luks-cbc.qcow2" >"$T/info" || fail "vdisk info without a key: $(cat "$T/info")"
for pat in "encryption: luks" "encryption_unlocked: false" "encryption_cipher: aes-128" \
    "encryption_mode: cbc-essiv" "encryption_hash: sha512" "encryption_active_slots: 0"; do
    grep -q "$pat" "$T/info" || fail "vdisk info without a key lacks '$pat': $(cat "$T/info")"
done
"$VDISK" info -k "$T/keys" "$D/luks-cbc.qcow2" | grep -q "encryption_unlocked: true" || fail "vdisk info with the key"
if "$VDISK" cat "$D/luks-cbc.qcow2" >"$T/ciphertext" 2>"$T/err"; then
    fail "vdisk cat read an encrypted image without a key"
fi
grep -q "no keyfile" "$T/err" || fail "vdisk cat without a key: $(cat "$T/err")"
[ ! -s "$T/ciphertext" ] || fail "vdisk cat without a key wrote $(stat -c %s "$T/ciphertext") bytes"
"$VDISK" info "$D/comp-zstd.qcow2" | grep -q "compression_type: zstd" || fail "vdisk info: zstd"
"$VDISK" info "$D/xl2-65536.qcow2" | grep -q "extended_l2: true" || fail "vdisk info: extended_l2"
"$VDISK" info "$D/v0.10-c512.qcow2" | grep -q "compat: 0.10" || fail "vdisk info: compat 0.10"
"$VDISK" info "$D/extraw.qcow2" | grep -q "data_file_raw: true" || fail "vdisk info: data_file_raw"
"$VDISK" info "$D/dirty.qcow2" | grep -q "dirty: true" || fail "vdisk info: dirty ($(qemu-img info "$D/dirty.qcow2"))"
"$VDISK" info "$D/probed.qcow2" | grep -q "backing_format" && fail "probed.qcow2: the patched extension was not skipped"
"$VDISK" info "$D/probed.qcow2" | grep -q "backing chain: .*short-base.qcow2 (qcow2)" || fail "probed.qcow2: backing not probed"
"$VDISK" info "$D/snap.qcow2" >"$T/info"
grep -q "Snapshot list" "$T/info" && grep -q "a/b" "$T/info" || fail "vdisk info: snapshot table: $(cat "$T/info")"
ls "$M" | grep -q "\.data$" && fail "external data files are listed"

note "parallel readers"
qemu-img convert -O raw "$D/top.qcow2" "$T/top.raw"
"$VDTEST" parread "$M/top.qcow2" "$T/top.raw" 8 40 || fail "parallel readers on top.qcow2"
qemu-img convert -O raw "$D/comp-zstd.qcow2" "$T/cz.raw"
"$VDTEST" parread "$M/comp-zstd.qcow2" "$T/cz.raw" 8 40 || fail "parallel readers on comp-zstd.qcow2"

note "a tiny L2 cache (-o cache_size=1): eviction under parallel readers"
unmount_vdiskfs "$M"
mount_vdiskfs "$D" "$M" -o keyfile="$T/keys",cache_size=1
qemu-img convert -O raw "$D/many-l2.qcow2" "$T/c512.raw"
"$VDTEST" parread "$M/many-l2.qcow2" "$T/c512.raw" 8 60 || fail "parallel readers with a tiny cache"
compare_to_qemu "$D/many-l2.qcow2" "$M/many-l2.qcow2"
compare_to_qemu "$D/xl2-16384.qcow2" "$M/xl2-16384.qcow2"
compare_to_qemu "$D/top.qcow2" "$M/top.qcow2"

if [ "$HAVE_REAL" = 1 ]; then
    note "real images: basic-zstd (MiB i = byte i), backing chain strings"
    R=$M/real
    mib() { dd if="$1" bs=1M skip="$2" count=1 status=none | tr -d '\0'; }
    for i in 0 1 77 254; do
        want=$(printf '%02x' "$i")
        got=$(dd if="$R/basic-zstd.qcow2" bs=1M skip=$i count=1 status=none | od -An -tx1 -v | tr -s ' ' '\n' | sort -u | grep -v '^$')
        [ "$got" = "$want" ] || fail "basic-zstd MiB $i holds $got, not $want"
    done
    [ -z "$(mib "$R/basic-zstd.qcow2" 255)" ] || fail "basic-zstd: the last MiB is not zeros"
    [ "$(stat -c %s "$R/basic-zstd.qcow2")" = 536870912 ] || fail "basic-zstd size"
    check_chain() { # FILE STRINGS...
        local f=$1 i=0
        shift
        for want in "$@"; do
            [ "$(mib "$R/$f" $i)" = "$want" ] || fail "$f MiB $i: '$(mib "$R/$f" $i)' instead of '$want'"
            i=$((i + 1))
        done
        [ -z "$(mib "$R/$f" $i)" ] || fail "$f MiB $i is not zero"
    }
    check_chain backing-chain-3.qcow2 "Something here" "Something here too" "Something here three"
    check_chain backing-chain-2.qcow2 "Nothing here" "Something here too" "Something here three" "Something here four"
    check_chain backing-chain-1.qcow2 "Nothing here" "Nothing here two" "Something here three" \
        "Something here four" "Something here five"
    for f in basic-zstd backing-chain-1; do
        compare_to_qemu "$D/real/$f.qcow2" "$R/$f.qcow2"
        compare_map "$D/real/$f.qcow2"
    done
fi
unmount_vdiskfs "$M"

note "-o backing=any lets the outside backing file in"
mount_vdiskfs "$D" "$M" -o backing=any
compare_to_qemu "$D/escape.qcow2" "$M/escape.qcow2"
unmount_vdiskfs "$M"

echo PASS
