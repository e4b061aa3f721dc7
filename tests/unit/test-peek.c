/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <malloc.h>
#include <string.h>

#include "tests/unit/test-peek.h"

void peek_expect_same(VdContext *ctx, const char *path)
{
    g_autoptr(GError) err = NULL;
    VdOpenOptions o = {.read_only = true, .no_backing = true};
    g_autoptr(VdImage) full = vd_image_open(ctx, path, &o, &err);
    g_assert_no_error(err);
    g_autoptr(VdImage) peek = vd_image_peek(ctx, path, &err);
    g_assert_no_error(err);
    g_assert_true(peek->peeked);
    g_assert_null(peek->opaque);
    g_assert_true(peek->driver == full->driver);
    g_assert_cmpuint(vd_image_size(peek), ==, vd_image_size(full));
    g_assert_cmpint(peek->format_read_only, ==, full->format_read_only);
    guint n = full->members != NULL ? full->members->len : 0;
    g_assert_cmpuint(peek->members != NULL ? peek->members->len : 0, ==, n);
    for (guint i = 0; i < n; i++)
        g_assert_cmpstr(g_ptr_array_index(peek->members, i), ==,
                        g_ptr_array_index(full->members, i));
    g_test_message("%s: peeked %s, %" G_GUINT64_FORMAT " bytes, %u members%s", path,
                   peek->driver->name, vd_image_size(peek), n,
                   peek->format_read_only ? ", read-only" : "");
}

static size_t heap_in_use(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

/* Heap kept by img = open(ctx, path) while it lives. */
static size_t kept(VdContext *ctx, const char *path, bool peek, uint64_t size)
{
    g_autoptr(GError) err = NULL;
    VdOpenOptions o = {.read_only = true, .no_backing = true};
    size_t before = heap_in_use();
    VdImage *img = peek ? vd_image_peek(ctx, path, &err) : vd_image_open(ctx, path, &o, &err);
    size_t after = heap_in_use();
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(img), ==, size);
    vd_image_unref(img);
    return after > before ? after - before : 0;
}

void peek_expect_small(VdContext *ctx, const char *path, uint64_t size, size_t table_bytes,
                       bool open_loads)
{
    size_t p = kept(ctx, path, true, size), o = kept(ctx, path, false, size);
    g_test_message("%s: a %zu-byte table; peek keeps %zu bytes, open %zu", path, table_bytes, p, o);
    if (heap_in_use() == 0)
        return; /* no statistics from this allocator */
    if (open_loads)
        g_assert_cmpuint(o, >=, table_bytes / 2);
    g_assert_cmpuint(p, <, table_bytes / 16);
}
