/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Test image generators for qcow (v1) and QED; see test-qed-gen.h. */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zlib.h>

#include "src/vd-chain.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "tests/unit/test-qed-gen.h"
#include "tests/unit/test-fixtures.h"

static void ensure(GByteArray *b, uint64_t len)
{
    if (b->len < len) {
        guint old = b->len;
        g_byte_array_set_size(b, (guint)len);
        memset(b->data + old, 0, len - old);
    }
}

void tgen_fill(uint8_t *buf, size_t len, uint64_t off, uint8_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = tgen_pat(off + i, seed);
}

TGen *tgen_qcow1(uint64_t size, unsigned cluster_bits, unsigned l2_bits, const char *backing,
                 const char *passphrase)
{
    TGen *g = g_new0(TGen, 1);
    g->b = g_byte_array_new();
    g->size = size;
    g->cluster_bits = cluster_bits;
    g->cluster_size = 1ull << cluster_bits;
    g->l2_bits = l2_bits;
    g->l2_entries = 1ull << l2_bits;
    g->table_bytes = g->l2_entries * 8;
    unsigned shift = cluster_bits + l2_bits;
    g->l1_entries = (size + (1ull << shift) - 1) >> shift;
    size_t blen = backing ? strlen(backing) : 0;
    g->l1_offset = (48 + blen + 7) / 8 * 8;
    ensure(g->b, g->l1_offset + g->l1_entries * 8);
    uint8_t *h = g->b->data;
    memcpy(h, "QFI\xfb", 4);
    vd_put_be32(h + 4, 1);
    if (backing) {
        vd_put_be64(h + 8, 48);
        vd_put_be32(h + 16, (uint32_t)blen);
        memcpy(h + 48, backing, blen);
    }
    vd_put_be32(h + 20, 0x5f000000);
    vd_put_be64(h + 24, size);
    h[32] = (uint8_t)cluster_bits;
    h[33] = (uint8_t)l2_bits;
    if (passphrase) {
        g->encrypt = true;
        vd_put_be32(h + 36, 1);
        memcpy(g->key, passphrase, MIN(strlen(passphrase), sizeof g->key));
    }
    vd_put_be64(h + 40, g->l1_offset);
    return g;
}

TGen *tgen_qed(uint64_t size, uint32_t cluster_size, uint32_t table_size, const char *backing,
               uint64_t features)
{
    TGen *g = g_new0(TGen, 1);
    g->qed = true;
    g->b = g_byte_array_new();
    g->size = size;
    g->cluster_size = cluster_size;
    g->cluster_bits = (unsigned)__builtin_ctz(cluster_size);
    g->table_bytes = (uint64_t)cluster_size * table_size;
    g->l2_entries = g->table_bytes / 8;
    g->l2_bits = (unsigned)__builtin_ctzll(g->l2_entries);
    unsigned shift = g->cluster_bits + g->l2_bits;
    g->l1_entries = (size + (1ull << shift) - 1) >> shift;
    g->l1_offset = cluster_size;
    ensure(g->b, g->l1_offset + g->table_bytes);
    uint8_t *h = g->b->data;
    memcpy(h, "QED\0", 4);
    vd_put_le32(h + 4, cluster_size);
    vd_put_le32(h + 8, table_size);
    vd_put_le32(h + 12, 1);
    if (backing) {
        features |= 1;
        vd_put_le32(h + 56, 64);
        vd_put_le32(h + 60, (uint32_t)strlen(backing));
        memcpy(h + 64, backing, strlen(backing));
    }
    vd_put_le64(h + 16, features);
    vd_put_le64(h + 40, g->l1_offset);
    vd_put_le64(h + 48, size);
    return g;
}

void tgen_free(TGen *g)
{
    if (g == NULL)
        return;
    g_byte_array_unref(g->b);
    g_free(g);
}

uint64_t tgen_append(TGen *g, const void *data, size_t len)
{
    uint64_t off = (g->b->len + g->cluster_size - 1) / g->cluster_size * g->cluster_size;
    ensure(g->b, off + len);
    if (data != NULL)
        memcpy(g->b->data + off, data, len);
    return off;
}

uint64_t tgen_get64(const TGen *g, uint64_t off)
{
    return g->qed ? vd_le64(g->b->data + off) : vd_be64(g->b->data + off);
}

void tgen_put64(TGen *g, uint64_t off, uint64_t v)
{
    ensure(g->b, off + 8);
    if (g->qed)
        vd_put_le64(g->b->data + off, v);
    else
        vd_put_be64(g->b->data + off, v);
}

uint64_t tgen_l2(TGen *g, uint64_t ci)
{
    uint64_t l1e = g->l1_offset + (ci >> g->l2_bits) * 8;
    uint64_t t = tgen_get64(g, l1e);
    if (t == 0) {
        t = tgen_append(g, NULL, g->table_bytes);
        tgen_put64(g, l1e, t);
    }
    return t;
}

uint64_t tgen_entry_offset(TGen *g, uint64_t ci)
{
    return tgen_l2(g, ci) + (ci & (g->l2_entries - 1)) * 8;
}

static void encrypt_cluster(const TGen *g, uint8_t *buf, uint64_t guest)
{
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    for (uint64_t s = 0; s < g->cluster_size; s += 512) {
        uint8_t iv[16] = {0};
        vd_put_le64(iv, (guest + s) / 512);
        int n = 0;
        g_assert_cmpint(EVP_EncryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, g->key, iv), ==, 1);
        EVP_CIPHER_CTX_set_padding(ctx, 0);
        g_assert_cmpint(EVP_EncryptUpdate(ctx, buf + s, &n, buf + s, 512), ==, 1);
        g_assert_cmpint(n, ==, 512);
    }
    EVP_CIPHER_CTX_free(ctx);
}

uint64_t tgen_data(TGen *g, uint64_t ci, const uint8_t *data)
{
    uint64_t ent = tgen_entry_offset(g, ci);
    g_autofree uint8_t *c = g_memdup2(data, g->cluster_size);
    if (g->encrypt)
        encrypt_cluster(g, c, ci << g->cluster_bits);
    uint64_t off = tgen_append(g, c, g->cluster_size);
    tgen_put64(g, ent, off);
    return off;
}

void tgen_compressed(TGen *g, uint64_t ci, const uint8_t *data)
{
    uint64_t ent = tgen_entry_offset(g, ci);
    z_stream z = {0};
    g_assert_cmpint(deflateInit2(&z, 9, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY), ==, Z_OK);
    g_autofree uint8_t *out = g_malloc(g->cluster_size * 2);
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)g->cluster_size;
    z.next_out = out;
    z.avail_out = (uInt)g->cluster_size * 2;
    g_assert_cmpint(deflate(&z, Z_FINISH), ==, Z_STREAM_END);
    uint64_t len = z.total_out;
    deflateEnd(&z);
    g_assert_cmpuint(len, <, g->cluster_size);
    /* Compressed streams are packed, not cluster-aligned. */
    uint64_t off = g->b->len;
    ensure(g->b, off + len);
    memcpy(g->b->data + off, out, len);
    unsigned shift = 63 - g->cluster_bits;
    tgen_put64(g, ent, (1ull << 63) | (len << shift) | off);
}

void tgen_zero(TGen *g, uint64_t ci)
{
    tgen_put64(g, tgen_entry_offset(g, ci), 1);
}

bool tgen_write(const TGen *g, const char *path)
{
    return g_file_set_contents(path, (const char *)g->b->data, (gssize)g->b->len, NULL);
}

void qfix_setup(QFixture *f, gconstpointer data)
{
    f->dir = tf_tmpdir("vdtest-qed-XXXXXX");
    g_assert_nonnull(f->dir);
    g_autoptr(GError) err = NULL;
    f->ctx = vd_context_new(f->dir, &err);
    g_assert_no_error(err);
}

void qfix_teardown(QFixture *f, gconstpointer data)
{
    tf_rm_rf(f->dir);
    g_free(f->dir);
    vd_context_unref(f->ctx);
}

char *qfix_write(QFixture *f, const char *name, const TGen *g)
{
    char *p = g_build_filename(f->dir, name, NULL);
    g_assert_true(tgen_write(g, p));
    return p;
}

VdImage *qfix_open(QFixture *f, const char *path, const char *format, bool rw, GError **err)
{
    VdOpenOptions o = {.read_only = !rw, .format = format};
    return vd_image_open(f->ctx, path, &o, err);
}

void qfix_expect_refused(QFixture *f, const TGen *g, const char *format, int code, const char *what)
{
    g_autofree char *p = qfix_write(f, "hostile.img", g);
    g_autoptr(GError) err = NULL;
    VdImage *img = qfix_open(f, p, format, false, &err);
    g_test_message("%s: %s", what, err ? err->message : "(opened)");
    if (img != NULL) {
        vd_image_unref(img);
        g_test_fail();
        return;
    }
    g_assert_error(err, VD_ERROR, code);
}

bool qfix_read_all(VdImage *img, uint8_t *buf, GError **err)
{
    uint64_t size = vd_image_size(img);
    for (uint64_t off = 0; off < size;) {
        VdChainExtent e;
        if (!vd_chain_status(img, off, size - off, VD_STATUS_WANT_ZERO, &e, err))
            return false;
        off += e.length;
    }
    return vd_image_pread(img, buf, size, 0, err);
}

void qfix_assert_disk(VdImage *img, const uint8_t *expect, uint64_t size)
{
    g_autofree uint8_t *buf = g_malloc(size);
    g_autoptr(GError) err = NULL;
    g_assert_cmpuint(vd_image_size(img), ==, size);
    g_assert_true(qfix_read_all(img, buf, &err));
    g_assert_no_error(err);
    tf_assert_same(buf, expect, size, NULL);
}

void qfix_write_both(VdImage *img, uint8_t *model, uint64_t off, size_t len, uint8_t seed)
{
    g_autofree uint8_t *buf = g_malloc(len);
    if (seed == 0)
        memset(buf, 0, len);
    else
        tgen_fill(buf, len, off, seed);
    g_autoptr(GError) err = NULL;
    g_assert_true(vd_image_pwrite(img, buf, len, off, &err));
    g_assert_no_error(err);
    memcpy(model + off, buf, len);
}

uint8_t *qfix_base_file(QFixture *f, const char *name, uint64_t size)
{
    uint8_t *base = g_malloc(size);
    tgen_fill(base, size, 0, 0x99);
    g_autofree char *bp = g_build_filename(f->dir, name, NULL);
    g_assert_true(g_file_set_contents(bp, (const char *)base, (gssize)size, NULL));
    return base;
}
