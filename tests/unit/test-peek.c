/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/unit/test-peek.h"

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
