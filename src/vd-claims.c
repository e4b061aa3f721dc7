/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <errno.h>

#include "vd-claims.h"
#include "vd-error.h"
#include "vd-image.h"

struct VdClaims {
    VdImage *img; /* whose budget the bitmap is charged to */
    uint64_t units;
    uint64_t bytes;
    uint64_t *bits;
};

VdClaims *vd_claims_new(VdImage *img, uint64_t units, GError **error)
{
    uint64_t words = units / 64 + 1;
    if (words > G_MAXSIZE / 8) {
        vd_set_error(error, EFBIG, "%s: %" G_GUINT64_FORMAT " units are too many to check",
                     img->name, units);
        return NULL;
    }
    if (!vd_image_mem_reserve(img, words * 8, "allocation check", error))
        return NULL;
    VdClaims *c = g_new0(VdClaims, 1);
    c->img = img;
    c->units = units;
    c->bytes = words * 8;
    c->bits = g_new0(uint64_t, words);
    return c;
}

void vd_claims_free(VdClaims *c)
{
    if (c == NULL)
        return;
    vd_image_mem_release(c->img, c->bytes);
    g_free(c->bits);
    g_free(c);
}

bool vd_claims_take(VdClaims *c, uint64_t first, uint64_t n)
{
    bool fresh = first <= c->units && n <= c->units - first;
    uint64_t end = first + MIN(n, c->units - MIN(first, c->units));
    for (uint64_t k = first; k < end; k++) {
        uint64_t bit = 1ull << (k % 64);
        if (c->bits[k / 64] & bit)
            fresh = false;
        c->bits[k / 64] |= bit;
    }
    return fresh;
}

bool vd_claims_is_taken(const VdClaims *c, uint64_t unit)
{
    return unit < c->units && (c->bits[unit / 64] >> (unit % 64) & 1);
}

uint64_t vd_claims_count_free(const VdClaims *c, uint64_t from, uint64_t to)
{
    uint64_t n = 0;
    for (uint64_t k = from; k < MIN(to, c->units); k++)
        n += !vd_claims_is_taken(c, k);
    return n;
}

uint64_t vd_claims_units(const VdClaims *c)
{
    return c->units;
}
