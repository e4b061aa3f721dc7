/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Which host units (clusters, grains, blocks) of an image's file the
 * mapping tables reference, one bit each: the consistency walk of a
 * format without refcounts (QED, qcow v1, VMDK, Parallels, VDI) claims
 * every unit a table entry or a table itself uses, and a unit claimed
 * twice is two guest ranges sharing host bytes, where a write to one
 * would silently change the other. Built at a read-write open (or a
 * repair), so that allocation at the end of the file and in-place writes
 * can trust the tables. Not thread-safe: the walk runs during open.
 */
#ifndef VD_CLAIMS_H
#define VD_CLAIMS_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

typedef struct VdImage VdImage;
typedef struct VdClaims VdClaims;

/* A map of units host units, all free; its memory is charged to img's
 * memory budget (NULL and ENOMEM-style error when it does not fit). */
VdClaims *vd_claims_new(VdImage *img, uint64_t units, GError **error);
void vd_claims_free(VdClaims *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VdClaims, vd_claims_free)

/* Claim units [first, first + n): false when one of them was claimed
 * already or lies past the end (all in range are claimed all the same). */
bool vd_claims_take(VdClaims *c, uint64_t first, uint64_t n);

bool vd_claims_is_taken(const VdClaims *c, uint64_t unit);

/* Units in [from, to) nobody claimed (leaks, for a report). */
uint64_t vd_claims_count_free(const VdClaims *c, uint64_t from, uint64_t to);

uint64_t vd_claims_units(const VdClaims *c);

#endif
