/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The consistency walk of a hosted sparse extent opened for writing.
 * VMDK has no refcounts: nothing on disk says that a grain belongs to one
 * grain table entry only, or that no entry points past the end of the
 * file, where the writer allocates new grains and tables. Both would make
 * a write to one guest range silently change another (or the metadata),
 * so before the first write every sector that the header, the embedded
 * descriptor, both directories, every grain table and every allocated
 * grain uses is claimed once (vd_claims). Anything claimed twice or past
 * the end of the file: the image is served read-only, reads keep working,
 * and the reason is logged and kept for user.vdiskfs.error.
 */
#include "config.h"

#include <errno.h>

#include "formats/vmdk.h"
#include "src/vd-claims.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

typedef struct {
    VdImage *img;
    VmdkExtent *e;
    const char *name;   /* the image, or the image and the extent file */
    uint64_t gt_bytes;  /* one grain table as stored */
    uint64_t grain_sec; /* sectors per grain */
    uint64_t grains;    /* grains the header's capacity covers */
    uint8_t *gt;        /* one table's worth of buffer */
} Walk;

static uint64_t sectors_of(uint64_t bytes)
{
    return bytes / VMDK_SECTOR + (bytes % VMDK_SECTOR != 0);
}

/* Grain table entry j of directory entry i, as a grain's first sector; 0
 * when the entry allocates nothing (unallocated, or a zeroed grain). */
static uint64_t entry_sector(const Walk *w, uint32_t j)
{
    uint64_t v = vd_le32(w->gt + (size_t)j * 4);
    if (v == 1 && w->e->zero_grain)
        return 0;
    return v;
}

static bool read_table(Walk *w, uint32_t i, GError **error)
{
    return vd_host_pread(w->e->fd, w->e->path, w->gt, (size_t)w->gt_bytes, w->e->gd[i], false,
                         error);
}

/* The grain other than number self whose sectors overlap [first, +n): for
 * the message only, so a second pass over the tables is fine. */
static bool find_other_grain(Walk *w, uint64_t self, uint64_t first, uint64_t n, uint64_t *other,
                             GError **error)
{
    VmdkExtent *e = w->e;
    for (uint32_t i = 0; i < e->gd_count; i++) {
        if (e->gd[i] == 0)
            continue;
        if (!read_table(w, i, error))
            return false;
        for (uint32_t j = 0; j < e->gtes; j++) {
            uint64_t g = (uint64_t)i * e->gtes + j, s = entry_sector(w, j);
            if (g >= w->grains)
                break;
            if (g != self && s != 0 && s < first + n && first < s + w->grain_sec) {
                *other = g;
                return true;
            }
        }
    }
    *other = self; /* not found: cannot happen, the bitmap saw it */
    return true;
}

/* Why grain g at sector s cannot be trusted, as the error to record. */
static bool explain_collision(Walk *w, uint64_t g, uint64_t s, GError **reason, GError **error)
{
    uint64_t host = s * VMDK_SECTOR, bytes = w->e->grain;
    VdMetaRange hit;
    if (w->e->meta != NULL && vd_meta_map_find(w->e->meta, host, bytes, &hit)) {
        vd_set_error(reason, EIO,
                     "%s: grain %" G_GUINT64_FORMAT " at 0x%" G_GINT64_MODIFIER
                     "x overlaps the %s at 0x%" G_GINT64_MODIFIER "x; opening it read-only",
                     w->name, g, host, hit.what, hit.start);
        return true;
    }
    uint64_t other;
    if (!find_other_grain(w, g, s, w->grain_sec, &other, error))
        return false;
    /* Restore the table being walked: the search reused the buffer. */
    if (!read_table(w, (uint32_t)(g / w->e->gtes), error))
        return false;
    vd_set_error(reason, EIO,
                 "%s: grains %" G_GUINT64_FORMAT " and %" G_GUINT64_FORMAT
                 " share host sectors at 0x%" G_GINT64_MODIFIER
                 "x (two guest ranges on the same data); opening it read-only",
                 w->name, MIN(g, other), MAX(g, other), host);
    return true;
}

/* The header, the descriptor, the directories and the tables, which
 * vmdk_check_layout has found disjoint and inside the file already. */
static void claim_metadata(Walk *w, VdClaims *c)
{
    VmdkExtent *e = w->e;
    uint64_t gd_sec = sectors_of((uint64_t)e->gd_count * 4);
    uint64_t gt_sec = sectors_of(w->gt_bytes);
    vd_claims_take(c, 0, 1);
    if (e->desc_len > 0 && vd_range_within(e->desc_offset, e->desc_len, e->file_size))
        vd_claims_take(c, e->desc_offset / VMDK_SECTOR, sectors_of(e->desc_len));
    vd_claims_take(c, e->gd_offset / VMDK_SECTOR, gd_sec);
    if (e->rgd != NULL)
        vd_claims_take(c, e->rgd_offset / VMDK_SECTOR, gd_sec);
    for (uint32_t i = 0; i < e->gd_count; i++) {
        if (e->gd[i] != 0)
            vd_claims_take(c, e->gd[i] / VMDK_SECTOR, gt_sec);
        if (e->rgd != NULL && e->rgd[i] != 0)
            vd_claims_take(c, e->rgd[i] / VMDK_SECTOR, gt_sec);
    }
}

/* Every allocated grain once: the first that cannot be claimed becomes
 * *reason (left NULL when all can). */
static bool claim_grains(Walk *w, VdClaims *c, GError **reason, GError **error)
{
    VmdkExtent *e = w->e;
    uint64_t units = vd_claims_units(c);
    for (uint32_t i = 0; i < e->gd_count; i++) {
        if (e->gd[i] == 0)
            continue;
        if (!read_table(w, i, error))
            return false;
        for (uint32_t j = 0; j < e->gtes; j++) {
            uint64_t g = (uint64_t)i * e->gtes + j, s = entry_sector(w, j);
            if (g >= w->grains)
                break;
            if (s == 0)
                continue;
            if (s > units || w->grain_sec > units - s) {
                /* Where the next grain or table would be allocated. */
                vd_set_error(reason, EIO,
                             "%s: grain %" G_GUINT64_FORMAT " at 0x%" G_GINT64_MODIFIER
                             "x %s the end of the file (0x%" G_GINT64_MODIFIER
                             "x), where new grains go; opening it read-only",
                             w->name, g, s * VMDK_SECTOR, s >= units ? "lies beyond" : "runs past",
                             e->file_size);
                return true;
            }
            if (!vd_claims_take(c, s, w->grain_sec))
                return explain_collision(w, g, s, reason, error);
        }
    }
    return true;
}

bool vmdk_check_allocations(VdImage *img, VmdkExtent *e, GError **error)
{
    g_autofree char *name = e->fd == img->fd ? g_strdup(img->name)
                                             : g_strdup_printf("%s: extent %s", img->name, e->path);
    Walk w = {
        .img = img,
        .e = e,
        .name = name,
        .gt_bytes = (uint64_t)e->gtes * 4,
        .grain_sec = e->grain / VMDK_SECTOR,
        .grains = e->capacity / e->grain + (e->capacity % e->grain != 0),
    };
    g_autoptr(GError) reason = NULL;
    g_autoptr(GError) no_room = NULL;
    /* The writer allocates at the end of the file rounded up to a sector
     * (e->next_alloc): every sector below it is one unit. */
    g_autoptr(VdClaims) c = vd_claims_new(img, sectors_of(e->file_size), &no_room);
    if (c == NULL) {
        vd_set_error(&reason, EIO,
                     "%s: cannot check which grains are in use (%s); opening it read-only", name,
                     no_room->message);
    } else {
        g_autofree uint8_t *gt = g_malloc(w.gt_bytes);
        w.gt = gt;
        claim_metadata(&w, c);
        if (!claim_grains(&w, c, &reason, error))
            return false;
    }
    if (reason != NULL) {
        img->read_only = true;
        vd_image_record_error(img, reason);
    }
    return true;
}

/* vdisk check, counted as qemu-img check counts for VMDK: there are no
 * leaks and no shared grains in its terms, only a grain (or the start of
 * a flat extent) at or past the end of its file, where the check stops at
 * the first one, in guest order, naming the guest sector of the grain. */
typedef struct {
    VdCheckReport *report;
    uint64_t file_size; /* of the extent being checked, as it is now */
    bool stop;
} Report;

static void check_host(Report *r, uint64_t sector, uint64_t host)
{
    if (host < r->file_size)
        return;
    g_ptr_array_add(r->report->lines,
                    g_strdup_printf("ERROR: cluster offset for sector %" G_GUINT64_FORMAT
                                    " points after EOF",
                                    sector));
    r->report->failed = EINVAL;
    r->stop = true;
}

static bool check_sparse_extent(VdImage *img, VmdkExtent *e, Report *r, GError **error)
{
    uint64_t grains = e->length / e->grain + (e->length % e->grain != 0);
    for (uint64_t g = 0; g < grains && !r->stop; g++) {
        uint64_t v, host;
        if (!vmdk_gte_get(e, g, &v, error))
            return false;
        if (e->kind == VMDK_EXT_SESPARSE) {
            VdExtentState st;
            if (!vmdk_sesparse_gte(img, e, v, &st, &host, error))
                return false;
            if (st != VD_EXTENT_DATA)
                continue;
        } else {
            if (v == 0 || (v == 1 && e->zero_grain))
                continue;
            host = v * VMDK_SECTOR;
        }
        check_host(r, (e->start + g * e->grain) / VMDK_SECTOR, host);
    }
    return true;
}

bool vmdk_check_report(VdImage *img, VdCheckReport *report, GError **error)
{
    VmdkState *s = img->opaque;
    Report r = {.report = report};
    for (guint i = 0; i < s->extents->len && !r.stop; i++) {
        VmdkExtent *e = g_ptr_array_index(s->extents, i);
        if (e->kind == VMDK_EXT_ZERO)
            continue;
        if (!vd_host_size(e->fd, e->path, &r.file_size, error))
            return false;
        if (e->kind == VMDK_EXT_FLAT)
            check_host(&r, e->start / VMDK_SECTOR, e->flat_offset);
        else if (!check_sparse_extent(img, e, &r, error))
            return false;
    }
    return true;
}
