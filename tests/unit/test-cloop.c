/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The cloop driver through the block layer: V2 images written from the
 * format facts, reads across blocks, the decode cache under parallel
 * readers, and hostile headers, tables and streams (bombs included).
 */
#include "config.h"

#include <glib/gstdio.h>
#include <string.h>
#include <zlib.h>

#include "src/vd-chain.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "tests/unit/test-peek.h"
#include "tests/unit/test-fixtures.h"

#define BLOCK  (16 * 1024u)
#define BLOCKS 9u

static const char PREAMBLE[] = "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t "
                               "iso9660 /dev/cloop $1\nexit $?\n";

typedef struct {
    char *dir;
    VdContext *ctx;
} Fixture;

static uint8_t pat(uint64_t off)
{
    return (uint64_t)off / BLOCK == 4 ? 0 : (uint8_t)("cloop!"[off % 6] + off / 4096);
}

static void put_stream(GByteArray *f, const uint8_t *d, size_t len)
{
    uLongf n = compressBound(len);
    g_autofree uint8_t *z = g_malloc(n);
    g_assert_cmpint(compress2(z, &n, d, len, 9), ==, Z_OK);
    g_byte_array_append(f, z, (guint)n);
}

static GByteArray *build(void)
{
    GByteArray *f = g_byte_array_new();
    g_byte_array_set_size(f, 136 + 8 * (BLOCKS + 1));
    memset(f->data, 0, f->len);
    memcpy(f->data, PREAMBLE, sizeof PREAMBLE - 1);
    vd_put_be32(f->data + 128, BLOCK);
    vd_put_be32(f->data + 132, BLOCKS);
    uint8_t blk[BLOCK];
    for (uint32_t i = 0; i <= BLOCKS; i++) {
        vd_put_be64(f->data + 136 + 8 * i, f->len);
        if (i == BLOCKS)
            break;
        for (uint32_t k = 0; k < BLOCK; k++)
            blk[k] = pat((uint64_t)i * BLOCK + k);
        put_stream(f, blk, BLOCK);
    }
    return f;
}

static void fixture_setup(Fixture *f, gconstpointer data)
{
    f->dir = tf_tmpdir("vdtest-cloop-XXXXXX");
    g_autoptr(GError) err = NULL;
    f->ctx = vd_context_new(f->dir, &err);
    g_assert_no_error(err);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    g_autofree char *p = g_build_filename(f->dir, "c.cloop", NULL);
    g_unlink(p);
    g_rmdir(f->dir);
    g_free(f->dir);
    vd_context_unref(f->ctx);
}

static VdImage *open_bytes(Fixture *f, const GByteArray *b, GError **error)
{
    g_autofree char *p = g_build_filename(f->dir, "c.cloop", NULL);
    g_assert_true(g_file_set_contents(p, (const char *)b->data, b->len, NULL));
    VdOpenOptions o = {.read_only = true};
    return vd_image_open(f->ctx, p, &o, error);
}

static void test_read(Fixture *f, gconstpointer data)
{
    g_autoptr(GByteArray) b = build();
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = open_bytes(f, b, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(img->driver->name, ==, "cloop");
    uint64_t size = (uint64_t)BLOCK * BLOCKS;
    g_assert_cmpuint(vd_image_size(img), ==, size);
    g_autofree uint8_t *buf = g_malloc(size);
    g_assert_true(vd_image_pread(img, buf, size, 0, &err));
    for (uint64_t i = 0; i < size; i++)
        g_assert_cmpuint(buf[i], ==, pat(i));
    for (uint64_t off = 3; off + 5000 < size; off += 4099) {
        g_assert_true(vd_image_pread(img, buf, 5000, off, &err));
        for (uint64_t i = 0; i < 5000; i++)
            g_assert_cmpuint(buf[i], ==, pat(off + i));
    }
    /* Every block is data (cloop has no holes), as qemu-img map says. */
    uint64_t bytes;
    g_assert_true(vd_chain_data_bytes(img, &bytes, &err));
    g_assert_cmpuint(bytes, ==, size);
    g_autoptr(VdInfo) info = vd_info_describe(img);
    g_assert_cmpuint(vd_info_get(info, "block_size")->u64, ==, BLOCK);
    g_assert_cmpuint(vd_info_get(info, "blocks")->u64, ==, BLOCKS);
}

typedef struct {
    VdImage *img;
    int seed;
    int bad;
} Reader;

static gpointer reader(gpointer p)
{
    Reader *r = p;
    GRand *rnd = g_rand_new_with_seed((guint32)r->seed);
    uint8_t buf[6000];
    uint64_t size = (uint64_t)BLOCK * BLOCKS;
    for (int i = 0; i < 300; i++) {
        uint64_t off = (uint64_t)g_rand_int_range(rnd, 0, (gint)(size - sizeof buf));
        if (!vd_image_pread(r->img, buf, sizeof buf, off, NULL)) {
            r->bad++;
            continue;
        }
        for (size_t k = 0; k < sizeof buf; k++)
            r->bad += buf[k] != pat(off + k);
    }
    g_rand_free(rnd);
    return NULL;
}

static void test_parallel(Fixture *f, gconstpointer data)
{
    g_autoptr(GByteArray) b = build();
    g_autoptr(GError) err = NULL;
    f->ctx->decode_cache_bytes = 2 * BLOCK; /* force evictions */
    g_autoptr(VdImage) img = open_bytes(f, b, &err);
    g_assert_no_error(err);
    Reader rs[6];
    GThread *t[6];
    for (int i = 0; i < 6; i++) {
        rs[i] = (Reader){img, i + 1, 0};
        t[i] = g_thread_new("reader", reader, &rs[i]);
    }
    for (int i = 0; i < 6; i++) {
        g_thread_join(t[i]);
        g_assert_cmpint(rs[i].bad, ==, 0);
    }
}

static void test_hostile(Fixture *f, gconstpointer data)
{
    struct {
        const char *what;
        uint32_t at;
        int width;
        uint64_t value;
        bool at_open;
    } cases[] = {
        {"block size zero", 128, 4, 0, true},
        {"block size not sectors", 128, 4, 1000, true},
        {"block size huge", 128, 4, 1u << 30, true},
        {"block count huge", 132, 4, 0xffffffff, true},
        {"block count past the file", 132, 4, 1u << 20, true},
        {"first block inside the table", 136, 8, 64, true},
        {"offset past the end", 136 + 8 * 3, 8, 1ull << 40, true},
        {"offsets going back", 136 + 8 * 4, 8, 200, true},
        {"stream too large", 136 + 8 * BLOCKS, 8, 1ull << 32, true},
        {"last offset past the end", 136 + 8 * BLOCKS, 8, 1u << 30, true},
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GByteArray) b = build();
        if (cases[i].width == 8)
            vd_put_be64(b->data + cases[i].at, cases[i].value);
        else
            vd_put_be32(b->data + cases[i].at, (uint32_t)cases[i].value);
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = open_bytes(f, b, &err);
        if (img != NULL)
            g_error("%s: opened", cases[i].what);
        g_assert_error(err, VD_ERROR, EIO);
        g_test_message("%s: %s", cases[i].what, err->message);
    }
    /* A block whose stream inflates to more than a block (a bomb), one
     * truncated, and one corrupt: reads fail, other blocks still read. */
    {
        g_autoptr(GByteArray) b = build();
        uint64_t o2 = vd_be64(b->data + 136 + 16);
        g_autoptr(GByteArray) bomb = g_byte_array_new();
        g_autofree uint8_t *zeros = g_malloc0(64u << 20);
        put_stream(bomb, zeros, 64u << 20);
        /* Append the bomb and point block 7 at it. */
        uint64_t at = b->len;
        g_byte_array_append(b, bomb->data, bomb->len);
        vd_put_be64(b->data + 136 + 8 * 7, at);
        g_assert_cmpuint(bomb->len, >, BLOCK + 100);
        vd_put_be64(b->data + 136 + 8 * 8, at + BLOCK);
        vd_put_be64(b->data + 136 + 8 * 9, at + BLOCK + 100);
        b->data[o2 + 5] ^= 0xff; /* corrupt block 2 */
        g_autoptr(GError) err = NULL;
        g_autoptr(VdImage) img = open_bytes(f, b, &err);
        g_assert_no_error(err);
        uint8_t buf[512];
        g_assert_true(vd_image_pread(img, buf, sizeof buf, 0, &err));
        g_assert_false(vd_image_pread(img, buf, sizeof buf, 2 * BLOCK, &err));
        g_assert_error(err, VD_ERROR, EIO);
        g_test_message("corrupt: %s", err->message);
        g_clear_error(&err);
        g_assert_false(vd_image_pread(img, buf, sizeof buf, 7 * BLOCK, &err));
        g_assert_error(err, VD_ERROR, EIO);
        g_test_message("bomb: %s", err->message);
    }
    /* Other versions are refused as unsupported. */
    g_autoptr(GByteArray) b = build();
    memcpy(b->data + 10, "#V4.0", 5);
    g_autofree char *p = g_build_filename(f->dir, "c.cloop", NULL);
    g_assert_true(g_file_set_contents(p, (const char *)b->data, b->len, NULL));
    VdOpenOptions o = {.read_only = true, .format = "cloop"};
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = vd_image_open(f->ctx, p, &o, &err);
    g_assert_null(img);
    g_assert_error(err, VD_ERROR, ENOTSUP);
}

static void test_peek(Fixture *f, gconstpointer data)
{
    g_autoptr(GByteArray) b = build();
    g_autofree char *p = g_build_filename(f->dir, "c.cloop", NULL);
    g_assert_true(g_file_set_contents(p, (const char *)b->data, b->len, NULL));
    peek_assert_like_open(f->ctx, p);
    /* A header claiming a 512 MiB offset table (2^26 blocks). */
    vd_put_be32(b->data + 132, 1u << 26);
    peek_write_sparse(p, b->data, 136, 136 + ((1ull << 26) + 1) * 8);
    peek_assert_bounded(f->ctx, p, (1ull << 26) * BLOCK, 64);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/cloop/read", Fixture, NULL, fixture_setup, test_read, fixture_teardown);
    g_test_add("/cloop/parallel", Fixture, NULL, fixture_setup, test_parallel, fixture_teardown);
    g_test_add("/cloop/hostile", Fixture, NULL, fixture_setup, test_hostile, fixture_teardown);
    g_test_add("/cloop/peek", Fixture, NULL, fixture_setup, test_peek, fixture_teardown);
    return g_test_run();
}
