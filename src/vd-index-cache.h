/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The indexes of containers that cost a full pass to build (a gzip file's
 * restart points, a bzip2 file's blocks, a zstd file's frames when one
 * does not record its size), shared by every open of the same file.
 *
 * A listing probes a file, peeks at it, stats it and opens it, each an
 * open of the container: without sharing, each would decode the whole
 * file again. An index is keyed by what identifies the file's contents
 * (its container kind, device, inode, size, times and last bytes: times
 * are coarse and inode numbers are reused) and the context whose budget
 * it is charged to. Opens that ask for an index being built wait for that
 * build and share it (or build it again after its failure).
 *
 * Indexes no open holds are kept for VD_INDEX_KEEP_USEC, within
 * VD_INDEX_KEEP_BYTES of memory and VD_INDEX_KEEP_COUNT of them (the most
 * recently released one whatever its size), the most recently released
 * last to go: a cold `ls -l` of a directory of gzip images decodes each
 * once. Their memory stays charged to the mount's budget (mem_budget,
 * 1 GiB by default) while they are kept, so the keep limit is a quarter
 * of that.
 */
#ifndef VD_INDEX_CACHE_H
#define VD_INDEX_CACHE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include <glib.h>

#include "vd-context.h"

#define VD_INDEX_KEEP_USEC  (60 * G_USEC_PER_SEC)
#define VD_INDEX_KEEP_BYTES (256ull << 20)
#define VD_INDEX_KEEP_COUNT 256
#define VD_INDEX_TAIL       16

typedef struct {
    const char *kind; /* the container's name: a static string */
    VdContext *ctx;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    uint8_t tail[VD_INDEX_TAIL];
} VdIndexKey;

/* Build an index of the file key names: a new index and its size in
 * bytes (already charged to key->ctx's budget by the builder, released
 * by free_index), or NULL with error set. */
typedef gpointer (*VdIndexBuildFunc)(gpointer user, uint64_t *bytes, GError **error);

/* The key of the container file open at fd (fstat and its last bytes). */
bool vd_index_key_of(VdContext *ctx, const char *kind, int fd, const char *name, VdIndexKey *key,
                     GError **error);

/* A reference to the index of key: shared if built or being built, else
 * built by build(user) now and shared from then on. free_index frees an
 * index this function made (on the last release, or when it expires). */
gpointer vd_index_cache_get(const VdIndexKey *key, VdIndexBuildFunc build, gpointer user,
                            GDestroyNotify free_index, GError **error);
/* Give back a reference vd_index_cache_get returned. */
void vd_index_cache_release(gpointer index);

/* For tests: indexes held or kept now, and builds run since start. */
unsigned vd_index_cache_count(void);
uint64_t vd_index_cache_builds(void);
/* For tests and shutdown: drop every index that no open holds. */
void vd_index_cache_drop_unused(void);

#endif
