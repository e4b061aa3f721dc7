/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers shared by the VHD (vpc) and VHDX drivers: UTF-16 strings,
 * GUIDs, CRC-32C and turning recorded Windows/Mac parent paths into
 * host path candidates.
 */
#ifndef VHD_UTIL_H
#define VHD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

/* UTF-16 (little- or big-endian) bytes to a UTF-8 string, stopping at the
 * first NUL; NULL when the bytes are not valid UTF-16. */
char *vhd_utf16_to_utf8(const uint8_t *p, size_t len, bool big_endian);
/* UTF-8 to UTF-16LE bytes (no NUL); *out_len in bytes. */
uint8_t *vhd_utf8_to_utf16le(const char *s, size_t *out_len);

/* CRC-32C (Castagnoli), as VHDX uses it: initial ~0, final xor ~0. */
uint32_t vhd_crc32c(const void *buf, size_t len);
/* CRC-32C of buf with the 4 bytes at csum_off taken as zero. */
uint32_t vhd_crc32c_skip(const uint8_t *buf, size_t len, size_t csum_off);

/* A Microsoft GUID on disk: Data1..3 little-endian, Data4 as bytes. */
char *vhd_guid_to_string(const uint8_t g[16]);           /* "8b7ca206-4790-..." lower case */
bool vhd_guid_from_string(const char *s, uint8_t g[16]); /* accepts {braces} */
/* A big-endian UUID (VHD footer): bytes in order. */
char *vhd_uuid_to_string(const uint8_t u[16]);
void vhd_random_guid(uint8_t g[16]);
bool vhd_guid_is_zero(const uint8_t g[16]);

/*
 * A recorded parent path ("..\\dir\\p.vhd", "C:\\x\\p.vhd",
 * "\\\\?\\Volume{...}\\x\\p.vhd", "/abs/p.vhd") as host path candidates
 * appended to out (char *): the path with '/' separators when it is
 * relative or a POSIX absolute path, then its last component (tried next
 * to the child). Drive letters and volume names cannot be mapped and only
 * contribute the last component.
 */
void vhd_path_candidates(const char *recorded, GPtrArray *out);

typedef struct VdImage VdImage;
/* Record the parent: shown as `recorded`, opened with `format`, looked
 * for at each of `candidates` in turn (duplicates dropped). */
void vhd_set_parent(VdImage *img, const char *recorded, const char *format,
                    const GPtrArray *candidates);

#endif
