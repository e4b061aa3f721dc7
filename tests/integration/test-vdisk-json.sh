#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# vdisk speaks qemu-img's JSON: for images of every format both know, made
# by qemu-img and written by qemu-io, `vdisk info --json` (with and without
# --backing-chain) has the keys, types and values `qemu-img info
# --output=json` has (extra keys only under "vdiskfs"), and `vdisk map
# --json` equals `qemu-img map --output=json` entry for entry. A snapshot
# name with byte 0xe9 comes out as valid JSON with U+FFFD. No mount.
. "$TESTLIB"
require_qemu

D=$T/images
mkdir -p "$D"
cd "$D"

# mk FORMAT NAME [create options...]: a 4 MiB image, written by qemu-io.
mk() {
    local fmt=$1 name=$2
    shift 2
    qemu-img create -q -f "$fmt" "$@" "$name" 4M || fail "qemu-img create $fmt $name $*"
    qemu-io -f "$fmt" -c 'write -P 0x11 0 64k' -c 'write -P 0x22 1M 192k' \
        -c 'write -z 2M 64k' "$name" >/dev/null || fail "qemu-io on $name"
}

mk qcow2 v2.qcow2 -o compat=0.10
mk qcow2 v3.qcow2 -o lazy_refcounts=on,cluster_size=4096
mk qcow2 xl2.qcow2 -o extended_l2=on,cluster_size=128k
mk qcow2 ext.qcow2 -o data_file=ext.data,data_file_raw=on
mk qcow2 base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 || fail "mid.qcow2"
qemu-io -c 'write -P 0x33 64k 64k' -c 'write -c -P 0x44 3M 64k' mid.qcow2 >/dev/null || fail "qemu-io mid"
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 || fail "top.qcow2"
qemu-io -c 'write -P 0x55 128k 4k' -c 'write -z 1M 64k' top.qcow2 >/dev/null || fail "qemu-io top"
qemu-img snapshot -c "$(printf 'sn\351')" top.qcow2 || fail "snapshot with byte 0xe9"
qemu-img snapshot -c second v2.qcow2 || fail "v2 snapshot"
# Persistent bitmaps: enabled, disabled with another granularity, a name with a space.
qemu-img bitmap --add base.qcow2 b0 || fail "qemu-img bitmap"
qemu-img bitmap --add -g 131072 --disable base.qcow2 "second one" || fail "qemu-img bitmap"
mk vmdk sparse.vmdk -o subformat=monolithicSparse
mk vmdk stream.vmdk -o subformat=streamOptimized
mk vmdk two.vmdk -o subformat=twoGbMaxExtentSparse
mk vmdk flat.vmdk -o subformat=monolithicFlat
qemu-img create -q -f vmdk -b sparse.vmdk -F vmdk child.vmdk || fail "child.vmdk"
qemu-io -f vmdk -c 'write -P 0x66 512k 64k' child.vmdk >/dev/null || fail "qemu-io child.vmdk"
mk vhdx dyn.vhdx
mk vhdx fixed.vhdx -o subformat=fixed
mk vdi dyn.vdi
mk vdi static.vdi -o static=on
mk vpc dyn.vhd
mk vpc fixed.vhd -o subformat=fixed
mk qed plain.qed
qemu-img create -q -f qed -b plain.qed -F qed over.qed || fail "over.qed"
qemu-io -f qed -c 'write -P 0x77 64k 64k' over.qed >/dev/null || fail "qemu-io over.qed"
mk qcow plain.qcow
qemu-img create -q -f qcow -b plain.qcow -F qcow over.qcow || fail "over.qcow"
qemu-io -f qcow -c 'write -P 0x77 64k 64k' over.qcow >/dev/null || fail "qemu-io over.qcow"
mk parallels disk.hds
mk raw disk.img

# name:format, as both are told the format (qemu-img probes fixed VHD as raw).
IMAGES="v2.qcow2:qcow2 v3.qcow2:qcow2 xl2.qcow2:qcow2 ext.qcow2:qcow2 base.qcow2:qcow2
mid.qcow2:qcow2 top.qcow2:qcow2 sparse.vmdk:vmdk stream.vmdk:vmdk two.vmdk:vmdk
flat.vmdk:vmdk child.vmdk:vmdk dyn.vhdx:vhdx fixed.vhdx:vhdx dyn.vdi:vdi static.vdi:vdi
dyn.vhd:vpc fixed.vhd:vpc plain.qed:qed over.qed:qed plain.qcow:qcow over.qcow:qcow
disk.hds:parallels disk.img:raw"

cat >"$T/compare.py" <<'EOF'
import json, sys

what, qpath, vpath = sys.argv[1:4]
q = json.load(open(qpath))
v = json.load(open(vpath))
errors = []

def merged(m):
    # Offsets of runs that are not data dropped, adjacent equal runs merged.
    out = []
    for e in m:
        e = dict(e)
        if not e["data"]:
            e.pop("offset", None)
        if out:
            p = out[-1]
            same = all(p[k] == e[k] for k in ("depth", "present", "zero", "data"))
            contiguous = ("offset" in p) == ("offset" in e) and (
                "offset" not in e or p["offset"] + p["length"] == e["offset"])
            if same and contiguous and p["start"] + p["length"] == e["start"]:
                p["length"] += e["length"]
                continue
        out.append(e)
    return out

def no_host_holes(m):
    # QEMU asks the host file for holes inside allocated data (SEEK_HOLE)
    # and calls them zero; vdiskfs does not look: data is data.
    return [dict(e, zero=False) if e.get("data") and e.get("zero") else e for e in m]

def merge_runs(m):
    out = []
    for e in m:
        p = out[-1] if out else None
        if p is not None and all(p.get(k) == e.get(k) for k in ("depth", "present", "zero", "data")) \
                and ("offset" in p) == ("offset" in e) \
                and ("offset" not in e or p["offset"] + p["length"] == e["offset"]):
            p["length"] += e["length"]
        else:
            out.append(dict(e))
    return out

if what.startswith("map") and any(e.get("data") and e.get("zero") for e in q):
    q, v = merge_runs(no_host_holes(q)), merge_runs(v)
if len(sys.argv) > 4 and sys.argv[4] == "--merged":
    q, v = merged(q), merged(v)

def cmp(a, b, path):
    if isinstance(a, dict):
        if not isinstance(b, dict):
            errors.append("%s: expected an object, got %r" % (path, b))
            return
        for k in a:
            if k not in b:
                errors.append("%s.%s: missing (qemu-img: %r)" % (path, k, a[k]))
            else:
                cmp(a[k], b[k], path + "." + k)
        for k in b:
            if k not in a and k != "vdiskfs":
                errors.append("%s.%s: extra key outside \"vdiskfs\" (%r)" % (path, k, b[k]))
    elif isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            errors.append("%s: expected %r, got %r" % (path, a, b))
            return
        for i, (x, y) in enumerate(zip(a, b)):
            cmp(x, y, "%s[%d]" % (path, i))
    elif type(a) is not type(b) or a != b:
        errors.append("%s: expected %r, got %r" % (path, a, b))

cmp(q, v, "")
for e in errors:
    print("%s: %s" % (what, e))
sys.exit(1 if errors else 0)
EOF

note "vdisk info --json against qemu-img info --output=json"
for spec in $IMAGES; do
    img=${spec%:*} fmt=${spec#*:}
    for chain in "" --backing-chain; do
        # The names as given: relative here, absolute once for the chain.
        for name in "$img" "$D/$img"; do
            qemu-img info -f "$fmt" --output=json $chain "$name" >"$T/q.json" ||
                fail "qemu-img info $chain $name"
            "$VDISK" info -f "$fmt" --json $chain "$name" >"$T/v.json" ||
                fail "vdisk info $chain $name"
            python3 "$T/compare.py" "info $chain $name" "$T/q.json" "$T/v.json" >"$T/diff" ||
                fail "$(cat "$T/diff")"
            [ -z "$chain" ] || break
        done
    done
    "$VDISK" info -f "$fmt" --json "$img" >"$T/v.json"
    "$VDISK" info -f "$fmt" --output=json "$img" | cmp -s - "$T/v.json" ||
        fail "$img: --output=json differs from --json"
    "$VDISK" info -f "$fmt" --output=human "$img" >"$T/human" || fail "vdisk info --output=human $img"
    grep -qx "file format: $fmt" "$T/human" || fail "$img: human output: $(cat "$T/human")"
done

note "encrypted qcow2: the LUKS header as qemu-img describes it, without a key"
SECRET="--object secret,id=s0,data=pw"
for mode in "" "encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256"; do
    rm -f luks.qcow2
    create_luks luks.qcow2 "$mode"
    qemu-img info --output=json luks.qcow2 >"$T/q.json" || fail "qemu-img info luks $mode"
    "$VDISK" info --json luks.qcow2 >"$T/v.json" || fail "vdisk info luks $mode"
    python3 "$T/compare.py" "info luks.qcow2 $mode" "$T/q.json" "$T/v.json" >"$T/diff" ||
        fail "$(cat "$T/diff")"
    # Unlocked, the same description.
    printf '[luks.qcow2]\npassphrase=pw\n' >"$T/keys"
    chmod 600 "$T/keys"
    "$VDISK" info --json -k "$T/keys" luks.qcow2 >"$T/v.json" || fail "vdisk info -k luks $mode"
    python3 "$T/compare.py" "info -k luks.qcow2 $mode" "$T/q.json" "$T/v.json" >"$T/diff" ||
        fail "$(cat "$T/diff")"
done

note "the 0xe9 snapshot name is valid JSON, with U+FFFD"
"$VDISK" info --json top.qcow2 >"$T/top.json"
"$VDISK" snapshots --json top.qcow2 >"$T/snaps.json"
python3 - "$T/top.json" "$T/snaps.json" <<'EOF' || fail "snapshot name: $(cat "$T/snaps.json")"
import json, sys
info = json.loads(open(sys.argv[1], "rb").read().decode("utf-8"))
snaps = json.loads(open(sys.argv[2], "rb").read().decode("utf-8"))
assert info["snapshots"][0]["name"] == "sn\ufffd", info["snapshots"]
assert snaps[0]["name"] == "sn\ufffd", snaps
assert isinstance(snaps[0]["date-sec"], int)
EOF

note "vdisk map --json against qemu-img map --output=json"
for spec in $IMAGES; do
    img=${spec%:*} fmt=${spec#*:}
    # QEMU gives unallocated subclusters of allocated clusters, and zero
    # clusters that keep their allocation, a host offset: equal once the
    # offsets of runs that are not data are dropped and the runs merged
    # (vdisk(1), BUGS).
    how=
    case $img in
    xl2.qcow2 | ext.qcow2) how=--merged ;;
    # A flat extent's host holes: QEMU says data and zero, with an offset;
    # vdiskfs says zero and not data (vdisk(1), BUGS).
    flat.vmdk) continue ;;
    # QEMU's VHDX driver reports no block status: all data, no offsets.
    *.vhdx) continue ;;
    esac
    qemu-img map -f "$fmt" --output=json "$img" >"$T/q.json" || fail "qemu-img map $img"
    "$VDISK" map -f "$fmt" --json "$img" >"$T/v.json" || fail "vdisk map $img"
    python3 "$T/compare.py" "map $img" "$T/q.json" "$T/v.json" $how >"$T/diff" ||
        fail "$(cat "$T/diff")"
done

note "vdisk check --json against qemu-img check --output=json"
checked=0
for spec in $IMAGES; do
    img=${spec%:*} fmt=${spec#*:}
    rc=0
    "$VDISK" check -f "$fmt" --json "$img" >"$T/v.json" 2>"$T/err" || rc=$?
    [ "$rc" != 63 ] || continue # no check in vdiskfs for this format
    # vdisk check counts the zero cluster of a raw external data file as
    # unallocated, qemu-img as allocated: the check's, not the JSON's.
    [ "$img" != ext.qcow2 ] || continue
    qrc=0
    qemu-img check -f "$fmt" --output=json "$img" >"$T/q.json" 2>/dev/null || qrc=$?
    [ "$rc" = "$qrc" ] || fail "check $img: exit $rc, qemu-img's $qrc: $(cat "$T/err")"
    python3 "$T/compare.py" "check $img" "$T/q.json" "$T/v.json" >"$T/diff" || fail "$(cat "$T/diff")"
    checked=$((checked + 1))
done
[ "$checked" -gt 0 ] || fail "vdisk check --json compared on no image"

note "partitions --json"
if command -v sfdisk >/dev/null; then
    truncate -s 8M part.img
    printf 'label: dos\nstart=2048, size=4096, type=83, bootable\nstart=6144, type=7\n' |
        sfdisk -q part.img >/dev/null || fail "sfdisk"
    "$VDISK" partitions -f raw --json part.img >"$T/parts.json" || fail "vdisk partitions --json"
    python3 - "$T/parts.json" <<'EOF' || fail "vdisk partitions --json: $(cat "$T/parts.json")"
import json, sys
t = json.load(open(sys.argv[1]))
assert t["type"] == "mbr" and t["sector-size"] == 512, t
p = t["partitions"]
assert [x["number"] for x in p] == [1, 2], p
assert p[0]["start"] == 2048 * 512 and p[0]["length"] == 4096 * 512 and p[0]["bootable"] is True, p
assert p[1]["type"] == "0x07" and p[1]["bootable"] is False, p
EOF
fi

note "formats, snapshots and --output"
"$VDISK" formats --json >"$T/formats.json"
python3 - "$T/formats.json" <<'EOF' || fail "vdisk formats --json: $(cat "$T/formats.json")"
import json, sys
f = {d["name"]: d for d in json.load(open(sys.argv[1]))}
assert f["qcow2"]["writable"] is True and "snapshots" in f["qcow2"]["capabilities"], f["qcow2"]
assert all(isinstance(d["description"], str) for d in f.values())
EOF
"$VDISK" --version --json | python3 -c 'import json, sys; json.load(sys.stdin)["version"]' ||
    fail "vdisk --version --json"
if "$VDISK" info --output=yaml disk.img 2>"$T/err"; then fail "--output=yaml accepted"; fi
grep -q "human or json" "$T/err" || fail "--output=yaml: $(cat "$T/err")"
"$VDISK" info top.qcow2 >"$T/human"
for pat in "^image: top.qcow2$" "^virtual size: 4 MiB (4194304 bytes)$" "^disk size: " \
    "^cluster_size: 65536$" "^backing file: mid.qcow2$" "^backing file format: qcow2$" \
    "^Snapshot list:$" "^Format specific information:$" "^    compat: 1.1$"; do
    grep -q "$pat" "$T/human" || fail "vdisk info lacks '$pat': $(cat "$T/human")"
done
exit 0
