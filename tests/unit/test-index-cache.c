/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The shared container index cache: one build per file however many opens
 * ask at once, a rebuild for a changed file (key), a failed build retried
 * by the next open rather than shared, indexes kept within the keep
 * limits after their last release; and, through the zstd container, a
 * frame that does not record its size decoded once for several opens.
 */
#include "config.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

#include "src/vd-container.h"
#include "src/vd-error.h"
#include "src/vd-index-cache.h"
#include "tests/unit/test-fixtures.h"

static VdContext *ctx;

typedef struct {
    gint calls;
    gint fail; /* builds to fail before one succeeds */
    guint sleep_usec;
    uint64_t value;
} Builder;

static gint frees;

static gpointer build_value(gpointer user, uint64_t *bytes, GError **error)
{
    Builder *b = user;
    g_atomic_int_inc(&b->calls);
    if (b->sleep_usec)
        g_usleep(b->sleep_usec);
    if (g_atomic_int_get(&b->fail) > 0) {
        g_atomic_int_add(&b->fail, -1);
        vd_set_error(error, EIO, "built to fail");
        return NULL;
    }
    *bytes = sizeof(uint64_t);
    return g_memdup2(&b->value, sizeof b->value);
}

static void free_value(gpointer p)
{
    g_atomic_int_inc(&frees);
    g_free(p);
}

static VdIndexKey key_for(ino_t ino, uint8_t tail0)
{
    VdIndexKey k = {.kind = "test", .ctx = ctx, .dev = 1, .ino = ino, .size = 100};
    k.tail[0] = tail0;
    return k;
}

static void test_shared(void)
{
    vd_index_cache_drop_unused();
    Builder b = {.fail = 0, .value = 7};
    VdIndexKey k = key_for(10, 1);
    g_autoptr(GError) err = NULL;
    uint64_t *a = vd_index_cache_get(&k, build_value, &b, free_value, &err);
    g_assert_no_error(err);
    g_assert_nonnull(a);
    g_assert_cmpuint(*a, ==, 7);
    uint64_t *a2 = vd_index_cache_get(&k, build_value, &b, free_value, &err);
    g_assert_true(a2 == a);
    g_assert_cmpint(b.calls, ==, 1);
    vd_index_cache_release(a);
    vd_index_cache_release(a2);
    /* Kept after its last release: the next open of the file shares it. */
    uint64_t *a3 = vd_index_cache_get(&k, build_value, &b, free_value, &err);
    g_assert_true(a3 == a);
    g_assert_cmpint(b.calls, ==, 1);
    vd_index_cache_release(a3);
    /* Another file (or the same one rewritten): its own index. */
    VdIndexKey k2 = key_for(10, 2);
    uint64_t *c = vd_index_cache_get(&k2, build_value, &b, free_value, &err);
    g_assert_true(c != a);
    g_assert_cmpint(b.calls, ==, 2);
    vd_index_cache_release(c);
    gint before = frees;
    vd_index_cache_drop_unused();
    g_assert_cmpint(frees, ==, before + 2);
    g_assert_cmpuint(vd_index_cache_count(), ==, 0);
}

typedef struct {
    VdIndexKey key;
    Builder *b;
    gpointer got;
} Racer;

static gpointer race(gpointer p)
{
    Racer *r = p;
    g_autoptr(GError) err = NULL;
    r->got = vd_index_cache_get(&r->key, build_value, r->b, free_value, &err);
    return NULL;
}

static void test_concurrent(void)
{
    vd_index_cache_drop_unused();
    Builder b = {.fail = 0, .sleep_usec = 100000, .value = 9};
    Racer r[8];
    GThread *t[8];
    for (int i = 0; i < 8; i++) {
        r[i] = (Racer){.key = key_for(20, 0), .b = &b};
        t[i] = g_thread_new("racer", race, &r[i]);
    }
    for (int i = 0; i < 8; i++)
        g_thread_join(t[i]);
    g_assert_cmpint(b.calls, ==, 1); /* built once, shared by the others */
    for (int i = 0; i < 8; i++) {
        g_assert_true(r[i].got == r[0].got);
        vd_index_cache_release(r[i].got);
    }
    vd_index_cache_drop_unused();
}

static void test_failure_not_shared(void)
{
    vd_index_cache_drop_unused();
    Builder b = {.fail = 1, .value = 3};
    VdIndexKey k = key_for(30, 0);
    g_autoptr(GError) err = NULL;
    g_assert_null(vd_index_cache_get(&k, build_value, &b, free_value, &err));
    g_assert_error(err, VD_ERROR, EIO);
    g_clear_error(&err);
    g_assert_cmpuint(vd_index_cache_count(), ==, 0); /* nothing kept of it */
    uint64_t *v = vd_index_cache_get(&k, build_value, &b, free_value, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(*v, ==, 3);
    g_assert_cmpint(b.calls, ==, 2);
    vd_index_cache_release(v);
    vd_index_cache_drop_unused();
}

static void test_keep_count(void)
{
    vd_index_cache_drop_unused();
    Builder b = {.fail = 0, .value = 1};
    g_autoptr(GError) err = NULL;
    for (unsigned i = 0; i < VD_INDEX_KEEP_COUNT + 10; i++) {
        VdIndexKey k = key_for(1000 + i, 0);
        vd_index_cache_release(vd_index_cache_get(&k, build_value, &b, free_value, &err));
    }
    g_assert_cmpuint(vd_index_cache_count(), ==, VD_INDEX_KEEP_COUNT);
    /* The oldest went first: the last one released is still there. */
    VdIndexKey last = key_for(1000 + VD_INDEX_KEEP_COUNT + 9, 0);
    gint calls = b.calls;
    vd_index_cache_release(vd_index_cache_get(&last, build_value, &b, free_value, &err));
    g_assert_cmpint(b.calls, ==, calls);
    VdIndexKey first = key_for(1000, 0);
    vd_index_cache_release(vd_index_cache_get(&first, build_value, &b, free_value, &err));
    g_assert_cmpint(b.calls, ==, calls + 1);
    vd_index_cache_drop_unused();
}

#ifdef HAVE_ZSTD
static void test_zstd_sizeless_once(void)
{
    vd_index_cache_drop_unused();
    size_t n = 4u << 20;
    g_autofree uint8_t *data = g_malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i / 1024 + (i % 7 == 0 ? i : 0));
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    g_assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0)));
    size_t cap = ZSTD_compressBound(n);
    g_autofree uint8_t *z = g_malloc(cap);
    size_t zn = ZSTD_compress2(cc, z, cap, data, n);
    g_assert_false(ZSTD_isError(zn));
    ZSTD_freeCCtx(cc);
    g_assert_cmpuint(ZSTD_getFrameContentSize(z, zn), ==, ZSTD_CONTENTSIZE_UNKNOWN);
    g_autofree char *dir = tf_tmpdir("vdiskfs-index-XXXXXX");
    g_autofree char *path = g_build_filename(dir, "pipe.img.zst", NULL);
    tf_write_file(path, z, zn);
    const VdContainer *c = vd_container_probe(z, MIN(zn, (size_t)VD_CONTAINER_HEAD), zn);
    g_assert_nonnull(c);
    uint64_t builds = vd_index_cache_builds();
    for (int i = 0; i < 3; i++) {
        const VdSourceOps *ops;
        void *opaque;
        uint64_t size;
        g_autoptr(GError) err = NULL;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        g_assert_cmpint(fd, >=, 0);
        g_assert_true(c->open(ctx, fd, path, "pipe.img.zst", &ops, &opaque, &size, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(size, ==, n);
        uint8_t buf[4096];
        g_assert_true(ops->pread(opaque, buf, sizeof buf, n - sizeof buf, &err));
        g_assert_cmpmem(buf, sizeof buf, data + n - sizeof buf, sizeof buf);
        ops->close(opaque);
    }
    /* The frame was decoded to count it once, not at every open. */
    g_assert_cmpuint(vd_index_cache_builds(), ==, builds + 1);
    vd_index_cache_drop_unused();
    tf_rm_rf(dir);
}
#endif

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    ctx = vd_context_new(NULL, NULL);
    g_test_add_func("/index-cache/shared", test_shared);
    g_test_add_func("/index-cache/concurrent", test_concurrent);
    g_test_add_func("/index-cache/failure-not-shared", test_failure_not_shared);
    g_test_add_func("/index-cache/keep-count", test_keep_count);
#ifdef HAVE_ZSTD
    g_test_add_func("/index-cache/zstd-sizeless-once", test_zstd_sizeless_once);
#endif
    int r = g_test_run();
    vd_index_cache_drop_unused();
    g_assert_cmpint(ctx->mem_used, ==, 0);
    vd_context_unref(ctx);
    return r;
}
