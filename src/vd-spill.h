/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Spill files: where a container whose first open decodes all it holds
 * anyway (a gzip stream, which records no size) writes what it decodes,
 * so that later reads are reads of a host file (and its page cache)
 * instead of inflates from a restart point - what nbdkit's gzip filter
 * does with its temporary file. An unlinked file (O_TMPFILE) in
 * VdContext's spill_dir, mode 0600 and O_EXCL (it can never be given a
 * name), gone with its descriptor; all-zero 4 KiB blocks are left as
 * holes. Opportunistic: when the directory cannot take one,
 * or its free space would fall under VD_SPILL_RESERVE (or a twentieth of
 * the filesystem, whichever is more), the spill is given up, said once,
 * and the container goes on without it.
 */
#ifndef VD_SPILL_H
#define VD_SPILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vd-context.h"

#define VD_SPILL_RESERVE (1ull << 30)

typedef struct VdSpill VdSpill;

/* A spill for name's contents, or NULL (no spill_dir, or it refuses one:
 * said in the log). */
VdSpill *vd_spill_new(VdContext *ctx, const char *name);
/* The next len bytes of the contents (written in order from offset 0).
 * False when the spill is given up (said in the log): free it. */
bool vd_spill_append(VdSpill *s, const void *buf, size_t len);
/* After the last append: the file holds size bytes. Its descriptor
 * (owned by the caller from now on, read-only use), or -1 when it was
 * given up. Frees s. */
int vd_spill_finish(VdSpill *s, uint64_t size);
void vd_spill_free(VdSpill *s);

#endif
