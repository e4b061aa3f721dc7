/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/test-peek.h"
#include <malloc.h>

static int cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The members as a sorted, comma-separated string, for comparison. */
static char *members_of(VdImage *img)
{
    if (img->members == NULL || img->members->len == 0)
        return g_strdup("");
    g_autoptr(GPtrArray) v = g_ptr_array_new();
    for (guint i = 0; i < img->members->len; i++)
        g_ptr_array_add(v, g_ptr_array_index(img->members, i));
    g_ptr_array_sort(v, cmp_str);
    g_ptr_array_add(v, NULL);
    return g_strjoinv(",", (char **)v->pdata);
}

void peek_assert_like_open(VdContext *ctx, const char *path)
{
    g_autoptr(GError) err = NULL;
    const VdDriver *drv = vd_probe_path(ctx, path, &err);
    g_assert_no_error(err);
    g_assert_nonnull(drv);
    g_assert_nonnull(drv->peek);
    g_autoptr(VdImage) p = vd_image_peek(ctx, path, &err);
    g_assert_no_error(err);
    g_assert_true(p->peeked);
    g_assert_null(p->opaque);
    VdOpenOptions o = {.read_only = false, .no_backing = true};
    g_autoptr(VdImage) img = vd_image_open(ctx, path, &o, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(vd_image_size(p), ==, vd_image_size(img));
    g_autofree char *pm = members_of(p), *om = members_of(img);
    g_assert_cmpstr(pm, ==, om);
    g_assert_cmpint(p->format_read_only, ==, img->format_read_only);
}

/* Bytes of address space in use now. */
static uint64_t vm_size(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    g_assert_nonnull(f);
    g_assert_cmpint(fscanf(f, "%lu", &pages), ==, 1);
    fclose(f);
    return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

void peek_assert_bounded(VdContext *ctx, const char *path, uint64_t want_size, unsigned limit_mib)
{
#if defined(__SANITIZE_ADDRESS__)
    const bool limit = false;
#else
    const bool limit = true;
#endif
    fflush(NULL);
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        if (limit) {
            rlim_t cap = vm_size() + ((rlim_t)limit_mib << 20);
            struct rlimit rl = {cap, cap};
            if (setrlimit(RLIMIT_AS, &rl) != 0)
                _exit(3);
        }
        GError *err = NULL;
        VdImage *p = vd_image_peek(ctx, path, &err);
        if (p == NULL) {
            fprintf(stderr, "peek %s: %s\n", path, err->message);
            _exit(1);
        }
        _exit(vd_image_size(p) == want_size ? 0 : 2);
    }
    int status = 0;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        g_test_message("peek of %s in a bounded child: %s %d", path,
                       WIFEXITED(status) ? "exit" : "signal",
                       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
}

void peek_write_sparse(const char *path, const void *head, size_t head_len, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pwrite(fd, head, head_len, 0), ==, (ssize_t)head_len);
    g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
    close(fd);
}

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
