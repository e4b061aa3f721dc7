#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Run the fuzz target for every format for a bounded time, with seed
# corpora made by qemu-img where QEMU can make the format.
#   fuzz-smoke.sh FUZZ_BINARY VDISK_BINARY SECONDS_PER_FORMAT [PARSER_FUZZ_BINARY]
# Prints one "PASS: fuzz <format>" / "FAIL: fuzz <format>" line per format.
set -u
FUZZ=$1 VDISK=$2 SECS=${3:-20} PFUZZ=${4:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/vdfuzz-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
crashdir=${FUZZ_CRASH_DIR:-$PWD/fuzz-crashes}
mkdir -p "$crashdir"

seed() {
    fmt=$1 dir=$2
    case $fmt in
    raw | qcow2 | qcow | qed | vmdk | vdi | vpc | vhdx | parallels) ;;
    *) return 0 ;;
    esac
    for opts in "" "cluster_size=4096"; do
        case $fmt in qcow2 | qed) ;; *) [ -n "$opts" ] && continue ;; esac
        f=$dir/seed-$(echo "$opts" | tr -c 'a-z0-9' _).img
        qemu-img create -q -f "$fmt" ${opts:+-o "$opts"} "$f" 1M >/dev/null 2>&1 || continue
        qemu-io -f "$fmt" -c 'write -P 0x5a 4096 8192' -c 'write -z 65536 4096' "$f" \
            >/dev/null 2>&1 || true
    done
    [ "$fmt" = qcow2 ] && qemu-img snapshot -c s1 "$dir"/seed-_.img >/dev/null 2>&1
    return 0
}

pass=0 fail=0
for fmt in $("$VDISK" formats | awk '{print $1}'); do
    corpus=$work/$fmt
    mkdir -p "$corpus"
    seed "$fmt" "$corpus"
    [ -n "$(ls "$corpus")" ] || printf 'x' >"$corpus/empty"
    if VD_FUZZ_FORMAT=$fmt "$FUZZ" -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=262144 \
        -artifact_prefix="$crashdir/$fmt-" -print_final_stats=0 "$corpus" >"$work/$fmt.log" 2>&1; then
        echo "PASS: fuzz $fmt"
        pass=$((pass + 1))
    else
        echo "FAIL: fuzz $fmt (artifacts in $crashdir)"
        tail -n 30 "$work/$fmt.log"
        fail=$((fail + 1))
    fi
done
# The text parsers, seeded with descriptors qemu-img writes (VMDK) and
# small hand-written documents.
if [ -n "$PFUZZ" ]; then
    for parser in vmdk-descriptor parallels-xml dmg-plist partition-table ewf; do
        corpus=$work/$parser
        mkdir -p "$corpus"
        case $parser in
        vmdk-descriptor)
            qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse "$work/d.vmdk" 1M >/dev/null 2>&1
            cp "$work/d.vmdk" "$corpus/seed"
            ;;
        parallels-xml)
            cat >"$corpus/seed" <<'XML'
<?xml version='1.0' encoding='UTF-8'?>
<Parallels_disk_image Version="1.0">
 <Disk_Parameters><Disk_size>204800</Disk_size><Cylinders>203</Cylinders><Heads>16</Heads><Sectors>63</Sectors></Disk_Parameters>
 <StorageData><Storage><Start>0</Start><End>204800</End><Blocksize>2048</Blocksize>
  <Image><GUID>{5fbaabe3-6958-40ff-92a7-860e329aab41}</GUID><Type>Compressed</Type><File>a.hds</File></Image>
 </Storage></StorageData>
 <Snapshots><TopGUID>{5fbaabe3-6958-40ff-92a7-860e329aab41}</TopGUID>
  <Shot><GUID>{5fbaabe3-6958-40ff-92a7-860e329aab41}</GUID><ParentGUID>{00000000-0000-0000-0000-000000000000}</ParentGUID></Shot>
 </Snapshots>
</Parallels_disk_image>
XML
            ;;
        partition-table)
            # Small disks as sfdisk writes them: MBR with logicals, and GPT.
            truncate -s 256K "$corpus/mbr" "$corpus/gpt"
            printf 'label: dos\nstart=8,size=64,type=83,bootable\nstart=80,size=300,type=5\nstart=88,size=40,type=83\nstart=136,size=40,type=7\n' |
                sfdisk -q "$corpus/mbr" >/dev/null 2>&1 || rm -f "$corpus/mbr"
            printf 'label: gpt\nstart=40,size=64,name=one\nstart=120,size=64,name=two\n' |
                sfdisk -q "$corpus/gpt" >/dev/null 2>&1 || rm -f "$corpus/gpt"
            [ -n "$(ls "$corpus")" ] || printf 'x' >"$corpus/empty"
            ;;
        ewf)
            # Small sets as ewfacquire writes them (segments one after the
            # other), or an empty corpus without ewf-tools.
            head -c 96K /dev/urandom >"$work/ewf.raw"
            truncate -s 256K "$work/ewf.raw"
            for f in encase6:fast smart:best ftk:none linen7:empty-block; do
                ewfacquire -u -q -f "${f%%:*}" -c "${f#*:}" -b 16 -t "$work/ewf-${f%%:*}" \
                    "$work/ewf.raw" >/dev/null 2>&1 || continue
                cat "$work/ewf-${f%%:*}".[Ees]0* >"$corpus/${f%%:*}"
            done
            [ -n "$(ls "$corpus")" ] || printf 'EVF\011\015\012\377\000\001\001\000\000\000' >"$corpus/empty"
            ;;
        dmg-plist)
            cat >"$corpus/seed" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<plist version="1.0"><dict><key>resource-fork</key><dict><key>blkx</key><array><dict>
<key>Data</key><data>bWlzaAAAAAEAAAAAAAAAAAAAAAAAAAAAAAAAAA==</data><key>Name</key><string>x</string>
</dict></array></dict></dict></plist>
XML
            ;;
        esac
        if VD_FUZZ_PARSER=$parser "$PFUZZ" -max_total_time="$SECS" -rss_limit_mb=2048 \
            -max_len=262144 -artifact_prefix="$crashdir/$parser-" -print_final_stats=0 \
            "$corpus" >"$work/$parser.log" 2>&1; then
            echo "PASS: fuzz $parser"
            pass=$((pass + 1))
        else
            echo "FAIL: fuzz $parser (artifacts in $crashdir)"
            tail -n 30 "$work/$parser.log"
            fail=$((fail + 1))
        fi
    done
fi
echo "# fuzz PASS: $pass"
echo "# fuzz FAIL: $fail"
[ "$fail" -eq 0 ]
