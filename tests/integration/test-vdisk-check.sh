#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# vdisk check against qemu-img check on the same images (qcow2, QED, VMDK,
# Parallels, VDI, VHDX), clean and damaged: the same report, line for
# line, and the same exit code (0 clean, 1 check failed, 2 corruptions, 3
# leaks); 63 for a format without a check.
. "$TESTLIB"
require_qemu
command -v python3 >/dev/null || fail "python3 is missing"

D=$T/images
mkdir -p "$D"
mk() { # NAME OPTIONS [nosnap]: a qcow2 with data, a compressed cluster, a snapshot and a rewrite after it
    qemu-img create -q -f qcow2 ${2:+-o "$2"} "$D/$1.qcow2" 64M
    qemu-io -c "write -P 1 0 1M" -c "write -P 2 10M 64k" -c "write -c 20M 128k" "$D/$1.qcow2" >/dev/null
    [ -n "${3:-}" ] || qemu-img snapshot -c s1 "$D/$1.qcow2"
    qemu-io -c "write -P 3 0 64k" -c "write -z 12M 64k" "$D/$1.qcow2" >/dev/null
}
mk clean ""
mk small "cluster_size=4096"
mk rc1 "refcount_bits=1" nosnap # a refcount of 2 does not fit
mk rc64 "refcount_bits=64"
mk v2 "compat=0.10"
mk ext "extended_l2=on,cluster_size=128k"
qemu-img create -q -f qcow2 -b clean.qcow2 -F qcow2 "$D/child.qcow2" 64M
qemu-io -c "write -P 9 4M 64k" "$D/child.qcow2" >/dev/null

# Damage copies of clean.qcow2 (16-bit refcounts, 64 KiB clusters).
python3 - "$D" <<'EOF'
import struct, sys
d = sys.argv[1]
b = bytearray(open(d + '/clean.qcow2', 'rb').read())
rt = struct.unpack_from('>Q', b, 48)[0]
rb = struct.unpack_from('>Q', b, rt)[0]
l1 = struct.unpack_from('>Q', b, 40)[0]
n = len(b) // 65536
def save(name, data):
    open('%s/%s.qcow2' % (d, name), 'wb').write(data)
# leaks: refcounts for two clusters past the data, which nothing uses
c = bytearray(b) + bytearray(2 * 65536)
struct.pack_into('>H', c, rb + 2 * n, 1)
struct.pack_into('>H', c, rb + 2 * (n + 1), 3)
save('leak', c)
# a used cluster with refcount 0 (an L2 table's, say) and one too low
c = bytearray(b)
l2 = struct.unpack_from('>Q', c, l1)[0] & 0x00fffffffffffe00
struct.pack_into('>H', c, rb + 2 * (l2 >> 16), 0)
save('refzero', c)
# the active L1 entry without COPIED although its L2 table's refcount is
# 1 (copied on the write after the snapshot); a data cluster the same way
c = bytearray(b)
e = struct.unpack_from('>Q', c, l1)[0]
assert e & (1 << 63)
struct.pack_into('>Q', c, l1, e ^ (1 << 63))
e = struct.unpack_from('>Q', c, l2)[0]
assert e & (1 << 63)
struct.pack_into('>Q', c, l2, e ^ (1 << 63))
save('copied', c)
# an L2 entry pointing past the end of the file
c = bytearray(b)
struct.pack_into('>Q', c, l2 + 8 * 100, (1 << 63) | (len(c) + (1 << 24)))
save('beyond', c)
EOF

for f in clean small rc1 rc64 v2 ext child leak refzero copied beyond; do
    q=0 v=0
    qemu-img check "$D/$f.qcow2" >"$T/q.out" 2>&1 || q=$?
    "$VDISK" check "$D/$f.qcow2" >"$T/v.out" 2>&1 || v=$?
    note "$f: qemu-img check $q, vdisk check $v"
    case $f in leak) [ $q = 3 ] ;; refzero | copied | beyond) [ $q = 2 ] ;; *) [ $q = 0 ] ;; esac ||
        fail "$f: qemu-img check exits $q: the damage is not what this test means"
    [ "$q" = "$v" ] || fail "$f: exit code $v, qemu-img check's is $q: $(cat "$T/v.out")"
    diff "$T/q.out" "$T/v.out" >"$T/diff" || fail "$f: the report differs from qemu-img check's: $(cat "$T/diff")"
done
grep -q . "$T/q.out" || fail "no report at all"

note "QED: the same walk as a read-write open, counted as qemu-img counts"
qemu-img create -q -f qed "$D/q.qed" 16M
qemu-io -f qed -c "write -P 1 0 1M" -c "write -P 2 8M 64k" "$D/q.qed" >/dev/null
python3 - "$D" <<'EOF'
import struct, sys
d = sys.argv[1]
b = bytearray(open(d + '/q.qed', 'rb').read())
cs = struct.unpack_from('<I', b, 4)[0]
l1 = struct.unpack_from('<Q', b, 40)[0]
l2 = struct.unpack_from('<Q', b, l1)[0]
e0 = struct.unpack_from('<Q', b, l2)[0]
def save(name, data):
    open('%s/%s.qed' % (d, name), 'wb').write(data)
save('qleak', b + bytearray(2 * cs))
for name, value in (('qdup', e0), ('qbeyond', len(b) + 16 * cs), ('qonl1', l1)):
    c = bytearray(b)
    struct.pack_into('<Q', c, l2 + 8 * 100, value)
    save(name, c)
EOF
for f in q qleak qdup qbeyond qonl1; do
    q=0 v=0
    qemu-img check "$D/$f.qed" >"$T/q.out" 2>&1 || q=$?
    "$VDISK" check "$D/$f.qed" >"$T/v.out" 2>&1 || v=$?
    note "$f.qed: qemu-img check $q, vdisk check $v"
    case $f in qleak) [ $q = 3 ] ;; q) [ $q = 0 ] ;; *) [ $q = 2 ] ;; esac ||
        fail "$f.qed: qemu-img check exits $q: the damage is not what this test means"
    [ "$q" = "$v" ] || fail "$f.qed: exit code $v, qemu-img check's is $q: $(cat "$T/v.out")"
    diff "$T/q.out" "$T/v.out" >"$T/diff" || fail "$f.qed: the report differs from qemu-img check's: $(cat "$T/diff")"
done

# same_check FILE EXIT: qemu-img check exits EXIT on FILE (the damage is
# what the test means), vdisk check the same, with the same report; the
# program name in "qemu-img: Check failed: ..." is the only difference.
same_check() {
    local q=0 v=0
    qemu-img check "$1" >"$T/q.out" 2>&1 || q=$?
    "$VDISK" check "$1" >"$T/v.out" 2>&1 || v=$?
    note "${1##*/}: qemu-img check $q, vdisk check $v"
    [ "$q" = "$2" ] || fail "${1##*/}: qemu-img check exits $q, not $2: the damage is not what this test means"
    [ "$q" = "$v" ] || fail "${1##*/}: exit code $v, qemu-img check's is $q: $(cat "$T/v.out")"
    sed -i 's/^qemu-img: /vdisk: /' "$T/q.out"
    diff "$T/q.out" "$T/v.out" >"$T/diff" || fail "${1##*/}: the report differs from qemu-img check's: $(cat "$T/diff")"
}

note "VMDK: qemu-img counts no leaks and no shared grains; a grain past EOF stops the check"
qemu-img create -q -f vmdk "$D/m.vmdk" 16M
qemu-io -f vmdk -c "write -P 1 0 1M" -c "write -P 2 8M 64k" "$D/m.vmdk" >/dev/null
qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse "$D/m2.vmdk" 5G
qemu-io -f vmdk -c "write -P 3 3G 64k" "$D/m2.vmdk" >/dev/null
qemu-img create -q -f vmdk -o subformat=streamOptimized "$D/ms.vmdk" 4M
qemu-io -f vmdk -c "write -P 4 0 64k" "$D/ms.vmdk" >/dev/null
qemu-img create -q -f vmdk -o subformat=monolithicFlat "$D/mf.vmdk" 4M
python3 - "$D" <<'EOF'
import shutil, struct, sys
d = sys.argv[1]
def first_gt(b):
    # The first grain table of a hosted sparse extent.
    gd = struct.unpack_from('<Q', b, 56)[0] * 512
    for i in range(64):
        t = struct.unpack_from('<I', b, gd + 4 * i)[0] * 512
        if t:
            return t
    raise SystemExit('no grain table')
b = bytearray(open(d + '/m.vmdk', 'rb').read())
gt = first_gt(b)
g0 = struct.unpack_from('<I', b, gt)[0]
def save(name, data):
    open('%s/%s.vmdk' % (d, name), 'wb').write(data)
save('mleak', b + bytearray(2 * 65536))
# grain 100: on grain 0's sectors, on the grain table, past the end of the
# file, at its end exactly (past EOF for qemu-img), one sector short (not)
for name, v in (('mdup', g0), ('monmeta', gt // 512), ('mbeyond', len(b) // 512 + 2048),
                ('mateof', len(b) // 512), ('mlast', len(b) // 512 - 1)):
    c = bytearray(b)
    struct.pack_into('<I', c, gt + 4 * 100, v)
    save(name, c)
# the grain of the second extent of a split image, past its file's end
for f in ('m2', 'm2-s001', 'm2-s002', 'm2-s003'):
    shutil.copy('%s/%s.vmdk' % (d, f), '%s/%s.vmdk' % (d, f.replace('m2', 'mx')))
open(d + '/mx.vmdk', 'w').write(open(d + '/m2.vmdk').read().replace('m2-s0', 'mx-s0'))
c = bytearray(open(d + '/mx-s002.vmdk', 'rb').read())
t = first_gt(c)
struct.pack_into('<I', c, t, len(c) // 512 + 5)
open(d + '/mx-s002.vmdk', 'wb').write(c)
EOF
for f in m mleak mdup monmeta mlast m2 ms mf; do same_check "$D/$f.vmdk" 0; done
for f in mbeyond mateof mx; do same_check "$D/$f.vmdk" 1; done

note "Parallels: as qemu-img 7.2, an image left in use or a cluster past EOF is a corruption, space past the last cluster a leak; no check for clusters used twice"
qemu-img create -q -f parallels "$D/p.hds" 16M
qemu-io -f parallels -c "write -P 1 0 1M" -c "write -P 2 8M 64k" "$D/p.hds" >/dev/null
qemu-img create -q -f parallels "$D/pempty.hds" 16M
python3 - "$D" <<'EOF'
import struct, sys
d = sys.argv[1]
b = bytearray(open(d + '/p.hds', 'rb').read())
cs = struct.unpack_from('<I', b, 28)[0] * 512  # entries count clusters (WithouFreSpacExt)
e0 = struct.unpack_from('<I', b, 64)[0]
def save(name, data):
    open('%s/%s.hds' % (d, name), 'wb').write(data)
save('pleak', b + bytearray(2 * cs))
save('pleak4k', b + bytearray(4096))
save('ptrunc', b[:len(b) - 4096])
c = bytearray(b)
struct.pack_into('<I', c, 44, 0x746F6E59)
save('pinuse', c)
# BAT entry 10: on cluster 0's data, past the end of the file, starting
# at the end exactly (not outside for qemu-img)
for name, v in (('pdup', e0), ('pbeyond', len(b) // cs + 16), ('patend', len(b) // cs)):
    c = bytearray(b)
    struct.pack_into('<I', c, 64 + 4 * 10, v)
    save(name, c)
EOF
for f in p pempty ptrunc pdup patend; do same_check "$D/$f.hds" 0; done
for f in pleak pleak4k; do same_check "$D/$f.hds" 3; done
for f in pinuse pbeyond; do same_check "$D/$f.hds" 2; done

note "VDI: entries beyond the block count, shared data blocks and a wrong allocated count are corruptions; no leaks (the open for the check takes the map the open refuses)"
qemu-img create -q -f vdi "$D/v.vdi" 16M
qemu-io -f vdi -c "write -P 1 0 1M" -c "write -P 2 8M 64k" "$D/v.vdi" >/dev/null
qemu-img create -q -f vdi -o static=on "$D/vstatic.vdi" 4M
python3 - "$D" <<'EOF'
import struct, sys
d = sys.argv[1]
b = bytearray(open(d + '/v.vdi', 'rb').read())
bm = struct.unpack_from('<I', b, 0x154)[0]
bs = struct.unpack_from('<I', b, 0x178)[0]
n = struct.unpack_from('<I', b, 0x180)[0]
na = struct.unpack_from('<I', b, 0x184)[0]
e0 = struct.unpack_from('<I', b, bm)[0]
def save(name, data):
    open('%s/%s.vdi' % (d, name), 'wb').write(data)
save('vleak', b + bytearray(2 * bs))
# block 10: on block 0's data, beyond the block count, past the end of
# the file (for qemu-img only the header's count is then wrong)
for name, v in (('vdup', e0), ('vbig', n + 5), ('vpast', len(b) // bs + 3)):
    c = bytearray(b)
    struct.pack_into('<I', c, bm + 4 * 10, v)
    save(name, c)
c = bytearray(b)
struct.pack_into('<I', c, 0x184, na + 1)
save('vcount', c)
EOF
for f in v vstatic vleak; do same_check "$D/$f.vdi" 0; done
for f in vdup vbig vpast vcount; do same_check "$D/$f.vdi" 2; done
"$VDISK" info "$D/vdup.vdi" >/dev/null 2>&1 && fail "vdisk info opened a VDI with a shared data block"

note "VHDX: a present block past EOF or on the log, BAT or metadata region is a corruption; blocks are not compared with each other, no leaks"
qemu-img create -q -f vhdx -o block_size=1M "$D/x.vhdx" 16M
qemu-io -f vhdx -c "write -P 1 0 1M" -c "write -P 2 8M 64k" "$D/x.vhdx" >/dev/null
qemu-img create -q -f vhdx "$D/xbig.vhdx" 16M # 8 MiB blocks
qemu-io -f vhdx -c "write -P 1 0 1M" "$D/xbig.vhdx" >/dev/null
qemu-img create -q -f vhdx -o subformat=fixed "$D/xfixed.vhdx" 4M
python3 - "$D" <<'EOF'
import struct, sys, uuid
d = sys.argv[1]
MB = 1 << 20
def regions(b):
    rt, out = 0x30000, {}
    for i in range(struct.unpack_from('<I', b, rt + 8)[0]):
        o = rt + 16 + 32 * i
        out[str(uuid.UUID(bytes_le=bytes(b[o:o + 16])))] = struct.unpack_from('<Q', b, o + 16)[0]
    return out
def save(name, data):
    open('%s/%s.vhdx' % (d, name), 'wb').write(data)
for src, pre in (('x', 'x'), ('xbig', 'xb')):
    b = bytearray(open('%s/%s.vhdx' % (d, src), 'rb').read())
    r = regions(b)
    bat = r['2dc27766-f623-4200-9d64-115e9bfd4a08']
    meta = r['8b7ca206-4790-4b9a-b8fe-575f050f886e']
    e0 = struct.unpack_from('<Q', b, bat)[0] >> 20
    if pre == 'x':
        save('xleak', b + bytearray(16 * MB))
    # BAT entry 1, fully present: on block 0, on the log (1 MiB), the BAT,
    # the metadata, at the end of the file, past it, running past it
    for name, mb in (('dup', e0), ('onlog', 1), ('onbat', bat // MB), ('onmeta', meta // MB),
                     ('ateof', len(b) // MB), ('beyond', len(b) // MB + 64), ('runs', len(b) // MB - 1)):
        c = bytearray(b)
        struct.pack_into('<Q', c, bat + 8, (mb << 20) | 6)
        save(pre + name, c)
EOF
for f in x xbig xfixed xleak xdup xbdup; do same_check "$D/$f.vhdx" 0; done
for f in xonlog xonbat xonmeta xateof xbeyond xbonlog xbonbat xbonmeta xbateof xbbeyond xbruns; do
    same_check "$D/$f.vhdx" 2
done

note "images vdiskfs wrote are clean for both"
if [ -e /dev/fuse ]; then
    M=$T/mnt
    cp "$D/clean.qcow2" "$D/written.qcow2"
    mount_vdiskfs "$D" "$M" -o rw
    dd if=/dev/urandom of="$M/written.qcow2" bs=64k count=40 seek=100 conv=notrunc,fsync status=none
    unmount_vdiskfs "$M"
    qemu-img check -q "$D/written.qcow2" || fail "qemu-img check after vdiskfs wrote"
    "$VDISK" check "$D/written.qcow2" >"$T/v.out" || fail "vdisk check after vdiskfs wrote: $(cat "$T/v.out")"
fi

note "a format without a check: exit 63, as qemu-img"
qemu-img create -q -f vpc "$D/a.vhd" 1M
"$VDISK" check "$D/a.vhd" 2>"$T/err" && fail "vdisk check of a VHD succeeded"
r=0 q=0
"$VDISK" check "$D/a.vhd" 2>/dev/null || r=$?
qemu-img check "$D/a.vhd" >/dev/null 2>&1 || q=$?
[ $r = 63 ] && [ $q = 63 ] || fail "vdisk check of a VHD: exit $r (qemu-img: $q), not 63"
grep -q "no consistency check" "$T/err" || fail "no reason given: $(cat "$T/err")"
echo PASS
