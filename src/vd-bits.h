/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Runs in allocation bitmaps (VHD's MSB-first sector bitmaps, VHDX's
 * LSB-first ones): the one scanner the formats share.
 */
#ifndef VD_BITS_H
#define VD_BITS_H

#include <stdbool.h>
#include <stdint.h>

/* Bit i of bits, counting from bit 0 of byte 0: the least significant bit
 * of each byte first (lsb_first), or the most significant. */
static inline bool vd_bit(const uint8_t *bits, uint64_t i, bool lsb_first)
{
    unsigned shift = lsb_first ? (unsigned)(i % 8) : 7u - (unsigned)(i % 8);
    return (bits[i / 8] >> shift) & 1;
}

/* How many bits from bit first (at most count, > 0) have the value bit
 * first has, which goes to *value. Whole bytes of equal bits are skipped
 * a byte at a time. */
static inline uint64_t vd_bit_run(const uint8_t *bits, uint64_t first, uint64_t count,
                                  bool lsb_first, bool *value)
{
    bool v = vd_bit(bits, first, lsb_first);
    uint8_t same = v ? 0xff : 0x00;
    uint64_t i = first + 1, end = first + count;
    while (i < end) {
        if (i % 8 == 0 && end - i >= 8 && bits[i / 8] == same) {
            i += 8;
            continue;
        }
        if (vd_bit(bits, i, lsb_first) != v)
            break;
        i++;
    }
    *value = v;
    return i - first;
}

#endif
