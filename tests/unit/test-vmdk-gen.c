/* SPDX-License-Identifier: GPL-2.0-or-later */
/* VMDK image generators for the unit tests (see test-vmdk-gen.h). */
#include "config.h"

#include <string.h>
#include <zlib.h>

#include <fcntl.h>
#include <glib/gstdio.h>
#include <unistd.h>

#include "src/vd-chain.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "tests/unit/test-vmdk-gen.h"
#include "tests/unit/test-fixtures.h"

void setup(Fixture *f, gconstpointer data)
{
    f->dir = tf_tmpdir("vdvmdk-XXXXXX");
    g_autoptr(GError) err = NULL;
    f->ctx = vd_context_new(f->dir, &err);
    g_assert_no_error(err);
}

void teardown(Fixture *f, gconstpointer data)
{
    tf_rm_rf(f->dir);
    g_free(f->dir);
    vd_context_unref(f->ctx);
}

char *fpath(Fixture *f, const char *name)
{
    return g_build_filename(f->dir, name, NULL);
}

void put_file(Fixture *f, const char *name, const char *text)
{
    g_autofree char *p = fpath(f, name);
    g_assert_true(g_file_set_contents(p, text, -1, NULL));
}

void put_gen(Fixture *f, const char *name, GenBuf *b)
{
    g_autofree char *p = fpath(f, name);
    gen_write_file(b, p);
    gen_free(b);
}

VdImage *open_img(Fixture *f, const char *name, GError **err)
{
    g_autofree char *p = fpath(f, name);
    VdOpenOptions o = {.read_only = true};
    return vd_image_open(f->ctx, p, &o, err);
}

void expect_open_error(Fixture *f, const char *name, int code, const char *what)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_img(f, name, &err);
    if (img != NULL)
        g_error("%s: %s opened", what, name);
    if (!g_error_matches(err, VD_ERROR, code))
        g_error("%s: expected errno %d, got %d: %s", what, code, err ? err->code : 0,
                err ? err->message : "(none)");
    g_test_message("%s: %s", what, err->message);
}

void check_content(VdImage *img, ExpectFn expect, gconstpointer data)
{
    uint64_t size = vd_image_size(img);
    g_autofree uint8_t *buf = g_malloc(MiB);
    g_autoptr(GError) err = NULL;
    for (uint64_t off = 0; off < size; off += MiB) {
        size_t n = (size_t)MIN((uint64_t)MiB, size - off);
        g_assert_true(vd_image_pread(img, buf, n, off, &err));
        g_assert_no_error(err);
        for (size_t i = 0; i < n; i++) {
            uint8_t want = expect(off + i, data);
            if (buf[i] != want)
                g_error("byte 0x%" G_GINT64_MODIFIER "x: expected 0x%02x, got 0x%02x", off + i,
                        want, buf[i]);
        }
    }
}

VdExtentState state_at(VdImage *img, uint64_t off, uint64_t *len)
{
    VdChainExtent e;
    g_autoptr(GError) err = NULL;
    g_assert_true(
        vd_chain_status(img, off, vd_image_size(img) - off, VD_STATUS_WANT_ZERO, &e, &err));
    if (len != NULL)
        *len = e.length;
    return e.state;
}

VdImage *open_rw(Fixture *f, const char *name)
{
    g_autofree char *p = fpath(f, name);
    VdOpenOptions o = {.read_only = false};
    g_autoptr(GError) err = NULL;
    VdImage *img = vd_image_open(f->ctx, p, &o, &err);
    g_assert_no_error(err);
    return img;
}

void gen_put(GenBuf *b, uint64_t off, const void *src, size_t len)
{
    if (off + len > b->len) {
        b->data = g_realloc(b->data, off + len);
        memset(b->data + b->len, 0, off + len - b->len);
        b->len = off + len;
    }
    memcpy(b->data + off, src, len);
}

void gen_le32(GenBuf *b, uint64_t off, uint32_t v)
{
    uint8_t x[4];
    vd_put_le32(x, v);
    gen_put(b, off, x, 4);
}

void gen_le64(GenBuf *b, uint64_t off, uint64_t v)
{
    uint8_t x[8];
    vd_put_le64(x, v);
    gen_put(b, off, x, 8);
}

static void gen_pad(GenBuf *b, uint64_t to)
{
    if (b->len < to) {
        uint8_t z = 0;
        gen_put(b, to - 1, &z, 1);
    }
}

void gen_write_file(const GenBuf *b, const char *path)
{
    /* Not g_file_set_contents: no fsync per file, the fuzz test writes many. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, b->data, b->len), ==, (ssize_t)b->len);
    close(fd);
}

void gen_free(GenBuf *b)
{
    g_clear_pointer(&b->data, g_free);
    b->len = 0;
}

uint8_t gen_pattern(uint64_t off, unsigned seed)
{
    uint64_t x = off / 7 * 2654435761u + seed * 40503u + off;
    return (uint8_t)(x ^ (x >> 11) ^ (x >> 23)) | 1; /* never zero */
}

void gen_fill(uint8_t *buf, size_t len, uint64_t off, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = gen_pattern(off + i, seed);
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

static void kdmv_header(GenBuf *b, uint64_t at, uint32_t version, uint32_t flags, uint64_t cap,
                        uint64_t grain, uint64_t desc_off, uint64_t desc_size, uint32_t gtes,
                        uint64_t rgd, uint64_t gd, uint64_t overhead, uint16_t compress)
{
    gen_put(b, at, "KDMV", 4);
    gen_le32(b, at + 4, version);
    gen_le32(b, at + 8, flags);
    gen_le64(b, at + 12, cap);
    gen_le64(b, at + 20, grain);
    gen_le64(b, at + 28, desc_off);
    gen_le64(b, at + 36, desc_size);
    gen_le32(b, at + 44, gtes);
    gen_le64(b, at + 48, rgd);
    gen_le64(b, at + 56, gd);
    gen_le64(b, at + 64, overhead);
    gen_put(b, at + 73, "\n \r\n", 4);
    uint8_t c[2];
    vd_put_le16(c, compress);
    gen_put(b, at + 77, c, 2);
    gen_pad(b, at + SECTOR);
}

void gen_kdmv(GenBuf *b, GenKdmv *k)
{
    uint64_t per_gt = (uint64_t)k->gtes * k->grain;
    k->gd_count = (uint32_t)div_up(k->capacity, per_gt);
    uint64_t gd_sectors = div_up((uint64_t)k->gd_count * 4, SECTOR);
    uint64_t gt_sectors = div_up((uint64_t)k->gtes * 4, SECTOR);
    uint64_t next = k->desc ? 21 : 1;
    if (k->rgd) {
        k->rgd_off = next * SECTOR;
        next += gd_sectors;
        k->rgt_off = next * SECTOR;
        if (k->prealloc_gts)
            next += k->gd_count * gt_sectors;
    }
    k->gd_off = next * SECTOR;
    next += gd_sectors;
    k->gt_off = next * SECTOR;
    if (k->prealloc_gts)
        next += k->gd_count * gt_sectors;
    uint64_t overhead = div_up(next, k->grain) * k->grain;
    kdmv_header(b, 0, k->version, k->flags | (k->rgd ? 2u : 0u), k->capacity, k->grain,
                k->desc ? 1 : 0, k->desc ? 20 : 0, k->gtes, k->rgd ? k->rgd_off / SECTOR : 0,
                k->gd_off / SECTOR, overhead, k->compress);
    if (k->desc)
        gen_put(b, SECTOR, k->desc, strlen(k->desc));
    for (uint32_t i = 0; k->prealloc_gts && i < k->gd_count; i++) {
        gen_le32(b, k->gd_off + i * 4u, (uint32_t)(k->gt_off / SECTOR + i * gt_sectors));
        if (k->rgd)
            gen_le32(b, k->rgd_off + i * 4u, (uint32_t)(k->rgt_off / SECTOR + i * gt_sectors));
    }
    gen_pad(b, overhead * SECTOR);
}

void gen_kdmv_gte(GenBuf *b, const GenKdmv *k, uint64_t g, uint32_t v)
{
    uint64_t gt_bytes = div_up((uint64_t)k->gtes * 4, SECTOR) * SECTOR;
    uint64_t gdi = g / k->gtes, gti = g % k->gtes;
    gen_le32(b, k->gt_off + gdi * gt_bytes + gti * 4, v);
    if (k->rgd)
        gen_le32(b, k->rgt_off + gdi * gt_bytes + gti * 4, v);
}

void gen_kdmv_grain(GenBuf *b, const GenKdmv *k, uint64_t g, const uint8_t *data)
{
    uint64_t host = div_up(b->len, SECTOR) * SECTOR;
    gen_put(b, host, data, k->grain * SECTOR);
    gen_kdmv_gte(b, k, g, (uint32_t)(host / SECTOR));
}

static uint64_t marker(GenBuf *b, uint64_t at, uint64_t val, uint32_t type)
{
    gen_le64(b, at, val);
    gen_le32(b, at + 8, 0);
    gen_le32(b, at + 12, type);
    gen_pad(b, at + SECTOR);
    return at + SECTOR;
}

void gen_stream(GenBuf *b, uint64_t capacity, const uint64_t *grains, size_t n, unsigned seed,
                const char *desc)
{
    const uint64_t grain = 128, gtes = 512;
    uint32_t gd_count = (uint32_t)div_up(capacity, grain * gtes);
    uint64_t overhead = 128;
    uint32_t flags = 1u | (1u << 16) | (1u << 17);
    kdmv_header(b, 0, 3, flags, capacity, grain, desc ? 1 : 0, desc ? 20 : 0, (uint32_t)gtes, 0,
                UINT64_MAX, overhead, 1);
    if (desc)
        gen_put(b, SECTOR, desc, strlen(desc));
    gen_pad(b, overhead * SECTOR);
    g_autofree uint32_t *gte = g_new0(uint32_t, (size_t)gd_count * gtes);
    g_autofree uint8_t *raw = g_malloc(grain * SECTOR);
    uLongf cap = compressBound(grain * SECTOR);
    g_autofree uint8_t *z = g_malloc(cap);
    uint64_t at = b->len;
    for (size_t i = 0; i < n; i++) {
        gen_fill(raw, grain * SECTOR, grains[i] * grain * SECTOR, seed);
        uLongf zlen = cap;
        g_assert_cmpint(compress2(z, &zlen, raw, grain * SECTOR, 6), ==, Z_OK);
        gte[grains[i]] = (uint32_t)(at / SECTOR);
        gen_le64(b, at, grains[i] * grain);
        gen_le32(b, at + 8, (uint32_t)zlen);
        gen_put(b, at + 12, z, zlen);
        at = div_up(b->len, SECTOR) * SECTOR;
        gen_pad(b, at);
    }
    g_autofree uint32_t *gd = g_new0(uint32_t, gd_count);
    for (uint32_t t = 0; t < gd_count; t++) {
        bool used = false;
        for (uint64_t j = 0; j < gtes; j++)
            used |= gte[t * gtes + j] != 0;
        if (!used)
            continue;
        at = marker(b, at, 4, 1);
        gd[t] = (uint32_t)(at / SECTOR);
        for (uint64_t j = 0; j < gtes; j++)
            gen_le32(b, at + j * 4, gte[t * gtes + j]);
        at += 4 * SECTOR;
    }
    uint64_t gd_sectors = div_up((uint64_t)gd_count * 4, SECTOR);
    at = marker(b, at, gd_sectors, 2);
    uint64_t gd_off = at;
    for (uint32_t t = 0; t < gd_count; t++)
        gen_le32(b, at + t * 4u, gd[t]);
    at += gd_sectors * SECTOR;
    gen_pad(b, at);
    at = marker(b, at, 1, 3);
    kdmv_header(b, at, 3, flags, capacity, grain, desc ? 1 : 0, desc ? 20 : 0, (uint32_t)gtes, 0,
                gd_off / SECTOR, overhead, 1);
    at += SECTOR;
    marker(b, at, 0, 0);
}

void gen_cowd(GenBuf *b, uint32_t capacity, uint32_t grain, const uint64_t *grains, size_t n,
              unsigned seed)
{
    const uint32_t gtes = 4096;
    uint32_t gd_count = (uint32_t)div_up(capacity, (uint64_t)gtes * grain);
    uint64_t gd_sectors = div_up((uint64_t)gd_count * 4, SECTOR);
    uint64_t gt_off = (4 + gd_sectors) * SECTOR;
    gen_put(b, 0, "COWD", 4);
    gen_le32(b, 4, 1);
    gen_le32(b, 8, 3);
    gen_le32(b, 12, capacity);
    gen_le32(b, 16, grain);
    gen_le32(b, 20, 4);
    gen_le32(b, 24, gd_count);
    for (uint32_t i = 0; i < gd_count; i++)
        gen_le32(b, 4 * SECTOR + i * 4u, (uint32_t)(gt_off / SECTOR + i * 32u));
    uint64_t next = gt_off + (uint64_t)gd_count * gtes * 4;
    gen_pad(b, next);
    g_autofree uint8_t *raw = g_malloc((size_t)grain * SECTOR);
    for (size_t i = 0; i < n; i++) {
        uint64_t g = grains[i];
        gen_fill(raw, (size_t)grain * SECTOR, g * grain * SECTOR, seed);
        uint64_t host = b->len;
        gen_put(b, host, raw, (size_t)grain * SECTOR);
        gen_le32(b, gt_off + (g / gtes) * gtes * 4 + (g % gtes) * 4, (uint32_t)(host / SECTOR));
    }
    gen_le32(b, 28, (uint32_t)(b->len / SECTOR));
}

void gen_sesparse(GenBuf *b, GenSe *s)
{
    const uint64_t gtes = 4096, gt_sectors = 64, grain = 8;
    uint64_t gd_count = s->capacity / (gtes * grain);
    uint64_t gd_sectors = div_up(gd_count * 8, SECTOR);
    s->gd_off = 2 * SECTOR;
    s->gt_off = s->gd_off + gd_sectors * SECTOR;
    s->grains_off = s->gt_off + gd_count * gt_sectors * SECTOR;
    uint64_t max_idx = 0;
    for (size_t i = 0; i < s->n_data; i++)
        max_idx = MAX(max_idx, s->data_idx[i] + 1);
    gen_le64(b, 0, 0xcafebabe);
    gen_le64(b, 8, UINT64_C(0x0000000200000001));
    gen_le64(b, 16, s->capacity);
    gen_le64(b, 24, grain);
    gen_le64(b, 32, gt_sectors);
    gen_le64(b, 80, 1); /* volatile header */
    gen_le64(b, 88, 1);
    gen_le64(b, 96, 2); /* journal header and journal: empty */
    gen_le64(b, 112, 2);
    gen_le64(b, 128, s->gd_off / SECTOR);
    gen_le64(b, 136, gd_sectors);
    gen_le64(b, 144, s->gt_off / SECTOR);
    gen_le64(b, 152, gd_count * gt_sectors);
    gen_le64(b, 160, s->grains_off / SECTOR); /* free bitmap, backmap: empty */
    gen_le64(b, 176, s->grains_off / SECTOR);
    gen_le64(b, 192, s->grains_off / SECTOR);
    gen_le64(b, 200, max_idx * grain);
    gen_le64(b, SECTOR, 0xcafecafe);
    gen_pad(b, s->grains_off + max_idx * grain * SECTOR);

    g_autofree bool *used = g_new0(bool, gd_count);
    g_autofree uint8_t *raw = g_malloc(grain * SECTOR);
#define SET_GTE(g, v)                                                                              \
    do {                                                                                           \
        uint64_t g_ = (g);                                                                         \
        used[g_ / gtes] = true;                                                                    \
        gen_le64(b, s->gt_off + (g_ / gtes) * gt_sectors * SECTOR + (g_ % gtes) * 8, (v));         \
    } while (0)
    for (size_t i = 0; i < s->n_data; i++) {
        uint64_t idx = s->data_idx[i];
        gen_fill(raw, grain * SECTOR, s->data[i] * grain * SECTOR, s->seed);
        gen_put(b, s->grains_off + idx * grain * SECTOR, raw, grain * SECTOR);
        SET_GTE(s->data[i], UINT64_C(0x3000000000000000) | ((idx & 0xfff) << 48) | (idx >> 12));
    }
    for (size_t i = 0; i < s->n_zero; i++)
        SET_GTE(s->zero[i], UINT64_C(0x2000000000000000));
    for (size_t i = 0; i < s->n_unmapped; i++)
        SET_GTE(s->unmapped[i], UINT64_C(0x1000000000000000));
#undef SET_GTE
    for (uint64_t t = 0; t < gd_count; t++) {
        if (used[t])
            gen_le64(b, s->gd_off + t * 8, UINT64_C(0x1000000000000000) | t);
    }
}
