#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Run the fuzz target for every format for a bounded time, with seed
# corpora made by qemu-img where QEMU can make the format; then its write
# mode (VD_FUZZ_MODE=write) for every writable format, for a shorter time.
#   fuzz-smoke.sh FUZZ_BINARY VDISK_BINARY SECONDS_PER_FORMAT [PARSER_FUZZ_BINARY
#                 [WRITE_SECONDS_PER_FORMAT]]
# Prints one "PASS: fuzz <format>" / "FAIL: fuzz <format>" line per format.
set -u
FUZZ=$1 VDISK=$2 SECS=${3:-20} PFUZZ=${4:-} WSECS=${5:-5}
work=$(mktemp -d "${TMPDIR:-/tmp}/vdfuzz-smoke.XXXXXX")
# The write mode flushes after every input: on tmpfs that costs nothing.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    wtmp=$(mktemp -d /dev/shm/vdfuzz-write.XXXXXX)
else
    wtmp=$work/tmp
    mkdir -p "$wtmp"
fi
trap 'rm -rf "$work" "$wtmp"' EXIT
crashdir=${FUZZ_CRASH_DIR:-$PWD/fuzz-crashes}
regress=$(dirname "$0")/regress
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

# append_script FILE: a write-mode script (see fuzz-image.c) after the
# image: an aligned 4 KiB write at the start, an unaligned one at a
# quarter, a 64 KiB zeroing at an eighth, a 64 KiB write near the end, a
# flush, an unmapping zeroing at a quarter; then the count (6).
append_script() {
    printf '\200\000\000\000\000\017\377\021\001\100\000\000\000\040\000\042' >>"$1"
    printf '\302\040\000\000\000\377\377\000\040\160\000\000\000\037\377\063' >>"$1"
    printf '\004\000\000\000\000\000\000\000\203\100\000\000\000\017\377\000\006' >>"$1"
}

pass=0 fail=0
# run_target LABEL LOG COMMAND...: one libFuzzer run, reported and counted.
run_target() {
    label=$1 log=$2
    shift 2
    if "$@" -print_final_stats=0 >"$log" 2>&1; then
        echo "PASS: fuzz $label"
        pass=$((pass + 1))
    else
        echo "FAIL: fuzz $label (artifacts in $crashdir)"
        tail -n 30 "$log"
        fail=$((fail + 1))
    fi
}

for fmt in $("$VDISK" formats | awk '{print $1}'); do
    corpus=$work/$fmt
    mkdir -p "$corpus"
    seed "$fmt" "$corpus"
    # Hostile inputs kept as regression seeds (formats qemu-img cannot make).
    [ -d "$regress/$fmt" ] && cp "$regress/$fmt"/* "$corpus"/
    [ -n "$(ls "$corpus")" ] || printf 'x' >"$corpus/empty"
    run_target "$fmt" "$work/$fmt.log" env VD_FUZZ_FORMAT="$fmt" "$FUZZ" \
        -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=262144 \
        -artifact_prefix="$crashdir/$fmt-" "$corpus"
done
# Write mode: hostile images opened read-write, written, reopened, read back.
for fmt in $("$VDISK" formats | awk '$2 == "rw" {print $1}'); do
    corpus=$work/write-$fmt
    mkdir -p "$corpus"
    seed "$fmt" "$corpus"
    for f in "$corpus"/*; do
        [ -f "$f" ] && append_script "$f"
    done
    # Inputs that once crashed or hung, kept as they were found.
    [ -d "$regress/$fmt-write" ] && cp "$regress/$fmt-write"/* "$corpus"/
    [ -n "$(ls "$corpus")" ] || printf 'x' >"$corpus/empty"
    run_target "$fmt (write)" "$work/write-$fmt.log" \
        env TMPDIR="$wtmp" VD_FUZZ_MODE=write VD_FUZZ_FORMAT="$fmt" "$FUZZ" \
        -max_total_time="$WSECS" -timeout=20 -rss_limit_mb=2048 -max_len=262144 \
        -artifact_prefix="$crashdir/$fmt-write-" "$corpus"
done
# The text parsers, seeded with descriptors qemu-img writes (VMDK) and
# small hand-written documents.
if [ -n "$PFUZZ" ]; then
    for parser in vmdk-descriptor parallels-xml dmg-plist partition-table ewf gzip bzip2 xz zstd tar; do
        corpus=$work/$parser
        mkdir -p "$corpus"
        case $parser in
        gzip | bzip2 | xz | zstd)
            # Files as the tools write them: one member/frame, and two concatenated.
            head -c 60K /dev/urandom >"$work/$parser.raw"
            truncate -s 600K "$work/$parser.raw"
            $parser -c "$work/$parser.raw" >"$corpus/one" 2>/dev/null || rm -f "$corpus/one"
            { head -c 100K "$work/$parser.raw" | $parser -c; tail -c 50K "$work/$parser.raw" | $parser -c; } >"$corpus/two" 2>/dev/null || rm -f "$corpus/two"
            # bzip2: blocks of 100 kB, several to a stream.
            [ $parser != bzip2 ] || bzip2 -1 -c "$work/$parser.raw" >"$corpus/level1" 2>/dev/null || rm -f "$corpus/level1"
            # xz: blocks of 64 KiB, as xz -T writes (smaller) blocks, so
            # that reads decode blocks in part and the rest in the
            # background.
            [ $parser != xz ] || xz -1 --block-size=64KiB -c "$work/$parser.raw" >"$corpus/blocks" 2>/dev/null || rm -f "$corpus/blocks"
            [ -n "$(ls "$corpus")" ] || printf 'x' >"$corpus/empty"
            ;;
        tar)
            # A small OVA as tar writes it (descriptor, manifest, disk), pax,
            # one of two disks (a directory in the mount), and two disks
            # alike in name in two folders (both shown, under two names).
            mkdir -p "$work/tarsrc/a" "$work/tarsrc/b"
            head -c 1000 /dev/urandom >"$work/tarsrc/a/disk.qcow2"
            head -c 700 /dev/urandom >"$work/tarsrc/b/disk.qcow2"
            head -c 3000 /dev/urandom >"$work/tarsrc/disk1.vmdk"
            head -c 2000 /dev/urandom >"$work/tarsrc/disk2.qcow2"
            echo '<Envelope/>' >"$work/tarsrc/a.ovf"
            printf 'SHA256(disk1.vmdk)= %s\n' "$(sha256sum "$work/tarsrc/disk1.vmdk" | cut -d' ' -f1)" >"$work/tarsrc/a.mf"
            (cd "$work/tarsrc" && tar --format=ustar -cf "$corpus/ova" a.ovf a.mf disk1.vmdk &&
                tar --format=pax -cf "$corpus/pax" disk1.vmdk &&
                tar --format=ustar -cf "$corpus/two" a.mf disk1.vmdk disk2.qcow2 &&
                tar --format=ustar -cf "$corpus/alike" a/disk.qcow2 b/disk.qcow2) 2>/dev/null || printf 'x' >"$corpus/empty"
            ;;
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
        run_target "$parser" "$work/$parser.log" env VD_FUZZ_PARSER="$parser" "$PFUZZ" \
            -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=262144 \
            -artifact_prefix="$crashdir/$parser-" "$corpus"
    done
fi
echo "# fuzz PASS: $pass"
echo "# fuzz FAIL: $fail"
[ "$fail" -eq 0 ]
