/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Host file I/O that never returns short and always names the file on error. */
#ifndef VD_IO_H
#define VD_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <glib.h>

/*
 * Read exactly len bytes at offset. Bytes past the end of the host file
 * read as zeros when zero_past_eof is set; otherwise hitting EOF is an
 * error ("<name>: short read at 0x...").
 */
bool vd_host_pread(int fd, const char *name, void *buf, size_t len, uint64_t offset,
                   bool zero_past_eof, GError **error);
bool vd_host_pwrite(int fd, const char *name, const void *buf, size_t len, uint64_t offset,
                    GError **error);
bool vd_host_fdatasync(int fd, const char *name, GError **error);
bool vd_host_size(int fd, const char *name, uint64_t *size, GError **error);
/* lseek(2) for SEEK_DATA, SEEK_HOLE and SEEK_END that also answers for
 * sources (src/vd-source.h). */
off_t vd_host_lseek(int fd, off_t offset, int whence);

/* Deallocate host space (FALLOC_FL_PUNCH_HOLE); false with EOPNOTSUPP where unsupported. */
bool vd_host_punch_hole(int fd, const char *name, uint64_t offset, uint64_t len, GError **error);

/* Checked offset + length <= limit, without overflow. */
static inline bool vd_range_within(uint64_t offset, uint64_t len, uint64_t limit)
{
    uint64_t end;
    return !__builtin_add_overflow(offset, len, &end) && end <= limit;
}

static inline uint64_t vd_min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static inline bool vd_is_pow2(uint64_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

/* True when every byte of buf is zero. */
bool vd_buffer_is_zero(const void *buf, size_t len);

#endif
