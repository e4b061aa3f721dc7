/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The host ranges an image's own metadata occupies (headers, L1/L2 tables,
 * refcount structures, grain tables, BATs, logs...), so that a data write
 * a hostile or corrupt mapping points at metadata is refused before it
 * lands (QEMU: "Preventing invalid write on metadata").
 *
 * Ranges are kept sorted and disjoint: a lookup is a binary search, never
 * a scan. Adding a range that overlaps another is refused (two metadata
 * structures sharing host bytes is itself corruption), except an identical
 * range added again (an L2 table shared by several L1 tables), which is
 * counted. During open, ranges may be added in any order; the map sorts
 * and checks them once at vd_meta_map_seal().
 *
 * Thread safety: add/remove run under the image's write_lock held for
 * writing (serialised write callbacks) or during open; lookups may run
 * concurrently with each other (pwrite_fast) and take an internal reader
 * lock, so a lookup is also safe against a concurrent add.
 */
#ifndef VD_METAMAP_H
#define VD_METAMAP_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

typedef struct VdMetaMap VdMetaMap;

typedef struct {
    uint64_t start;
    uint64_t end;     /* exclusive */
    const char *what; /* a static string: "L1 table", "refcount block" */
} VdMetaRange;

VdMetaMap *vd_meta_map_new(const char *image_name);
void vd_meta_map_free(VdMetaMap *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VdMetaMap, vd_meta_map_free)

/* Record [start, start+len) as metadata called what (a static string).
 * Before seal: always succeeds (checked at seal). After: EIO with a
 * message naming both structures when it overlaps a different range. */
bool vd_meta_map_add(VdMetaMap *m, uint64_t start, uint64_t len, const char *what, GError **error);
/* Forget the range that starts at start (one reference of it); false if
 * there is none. */
bool vd_meta_map_remove(VdMetaMap *m, uint64_t start);
/* Sort what was added during open and check that nothing overlaps. */
bool vd_meta_map_seal(VdMetaMap *m, GError **error);

/* The first metadata range that [start, start+len) touches: true and *hit
 * filled, or false when the range is free of metadata. */
bool vd_meta_map_find(VdMetaMap *m, uint64_t start, uint64_t len, VdMetaRange *hit);

/* Number of distinct ranges (tests, accounting). */
guint vd_meta_map_count(VdMetaMap *m);

#endif
