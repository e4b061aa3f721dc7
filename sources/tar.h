/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The tar header walk of sources/tar.c, apart so that the unit tests and
 * the fuzzer reach it without a file: ustar, GNU (././@LongLink names,
 * base-256 sizes) and pax (path and size records) headers.
 */
#ifndef VD_TAR_H
#define VD_TAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#define TAR_BLOCK 512
/* A long name or a pax header larger than this is refused, so that what a
 * header declares never decides how much is allocated. */
#define TAR_META_MAX (1u << 20)
#define TAR_NAME_MAX 4096

typedef struct {
    const char *name; /* the member's path in the archive, valid during the call */
    uint64_t header;  /* archive offset of its (last) header */
    uint64_t offset;  /* archive offset of its data */
    uint64_t size;
} TarMember;

/* Read len bytes at off of the archive (off + len <= its size). */
typedef bool (*TarReadFn)(void *opaque, void *buf, size_t len, uint64_t off, GError **error);
/* Called for every regular-file member; false (with error) stops the walk. */
typedef bool (*TarMemberFn)(void *opaque, const TarMember *m, GError **error);

/* Walk the headers of an archive of file_size bytes, named name in
 * messages: EIO naming the member for a bad header checksum, a size that
 * runs past the end, a header cut short, a malformed pax record, or a
 * member kind that is not one contiguous byte range (GNU sparse,
 * multi-volume). Memory used is bounded by TAR_META_MAX, whatever the
 * number of members. */
bool tar_walk(TarReadFn read, void *ropaque, uint64_t file_size, const char *name, TarMemberFn fn,
              void *fopaque, GError **error);

/* Whether a 512-byte block is a ustar/GNU header with a good checksum. */
bool tar_header_valid(const uint8_t *block);

/* The digest a manifest (.mf, as OVF tools write: "SHA256(disk1.vmdk)= hex")
 * records for file, as its GChecksumType and lower-case hex (g_free), or
 * false when it records none. */
bool tar_manifest_lookup(const char *mf, size_t len, const char *file, GChecksumType *type,
                         char **hex);

#endif
