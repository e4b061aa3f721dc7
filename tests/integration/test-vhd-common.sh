# SPDX-License-Identifier: GPL-2.0-or-later
# Sourced by test-vhd.sh and test-vhdx.sh (not a test itself): the random
# write workload applied to a mounted image and to its raw model alike.

# random_writes MOUNTED MODEL SIZE SEED: 60 writes of 1 byte to 3 MB,
# some of zeros, at random offsets, the same to both files.
random_writes() {
    [ -f "$T/rand" ] || head -c 4M /dev/urandom >"$T/rand"
    awk -v size="$3" -v seed="$4" 'BEGIN {
        srand(seed);
        for (i = 0; i < 60; i++) {
            r = rand();
            len = (r < 0.3) ? int(rand() * 600) + 1 : (r < 0.9 ? int(rand() * 70000) + 1 : int(rand() * 3000000) + 1);
            if (len > size) len = size;
            off = int(rand() * (size - len));
            src = (rand() < 0.15) ? "zero" : int(rand() * (4194304 - len));
            print off, len, src;
        }
    }' >"$T/writes"
    while read -r off len src; do
        for dst in "$1" "$2"; do
            if [ "$src" = zero ]; then
                dd if=/dev/zero of="$dst" bs=65536 count="$len" iflag=count_bytes seek="$off" \
                    oflag=seek_bytes conv=notrunc status=none || fail "dd to $dst"
            else
                dd if="$T/rand" of="$dst" bs=65536 skip="$src" count="$len" \
                    iflag=skip_bytes,count_bytes seek="$off" oflag=seek_bytes conv=notrunc \
                    status=none || fail "dd to $dst"
            fi
        done
    done <"$T/writes"
}
