/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vd-context.h"
#include "vd-error.h"

VdContext *vd_context_new(const char *root, GError **error)
{
    g_autoptr(VdContext) ctx = g_new0(VdContext, 1);
    ctx->refcount = 1;
    ctx->backing_policy = root ? VD_BACKING_CONFINED : VD_BACKING_ANY;
    ctx->metadata_cache_bytes = VD_DEFAULT_METADATA_CACHE;
    ctx->decode_cache_bytes = VD_DEFAULT_DECODE_CACHE;
    ctx->max_chain_depth = VD_DEFAULT_CHAIN_DEPTH;
    ctx->kdf_max_iterations = VD_DEFAULT_KDF_MAX_ITERATIONS;
    ctx->mem_budget = VD_DEFAULT_MEM_BUDGET;
    ctx->root_fd = -1;
    ctx->overlay_fd = -1;
    ctx->symlink_policy = VD_BACKING_CONFINED;
    g_mutex_init(&ctx->lock_lock);
    ctx->locked_files = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    if (root != NULL) {
        ctx->root = realpath(root, NULL);
        if (ctx->root == NULL) {
            vd_set_error_errno(error, errno, "%s", root);
            return NULL;
        }
        ctx->root_fd = open(ctx->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (ctx->root_fd < 0) {
            vd_set_error_errno(error, errno, "%s", root);
            return NULL;
        }
    }
    if (!vd_context_set_raw_extensions(ctx, VD_DEFAULT_RAW_EXTENSIONS, error))
        return NULL;
    return g_steal_pointer(&ctx);
}

VdContext *vd_context_ref(VdContext *ctx)
{
    g_atomic_int_inc(&ctx->refcount);
    return ctx;
}

void vd_context_unref(VdContext *ctx)
{
    if (ctx == NULL || !g_atomic_int_dec_and_test(&ctx->refcount))
        return;
    free(ctx->root);
    if (ctx->root_fd >= 0)
        close(ctx->root_fd);
    if (ctx->overlay_fd >= 0)
        close(ctx->overlay_fd);
    free(ctx->overlay_dir);
    g_free(ctx->spill_dir);
    g_hash_table_unref(ctx->locked_files);
    g_mutex_clear(&ctx->lock_lock);
    g_strfreev(ctx->raw_extensions);
    g_clear_pointer(&ctx->keyfile, g_key_file_unref);
    g_free(ctx);
}

bool vd_context_set_overlay_dir(VdContext *ctx, const char *dir, GError **error)
{
    if (g_mkdir_with_parents(dir, 0700) < 0) {
        vd_set_error_errno(error, errno, "-o overlay=%s", dir);
        return false;
    }
    char *real = realpath(dir, NULL);
    if (real == NULL) {
        vd_set_error_errno(error, errno, "-o overlay=%s", dir);
        return false;
    }
    size_t n = ctx->root ? strlen(ctx->root) : 0;
    if (ctx->root != NULL && strncmp(real, ctx->root, n) == 0 &&
        (real[n] == '/' || real[n] == '\0')) {
        vd_set_error(error, EINVAL,
                     "-o overlay=%s lies inside the image directory %s: the images must not "
                     "change",
                     dir, ctx->root);
        free(real);
        return false;
    }
    int fd = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        vd_set_error_errno(error, errno, "-o overlay=%s", dir);
        free(real);
        return false;
    }
    free(ctx->overlay_dir);
    if (ctx->overlay_fd >= 0)
        close(ctx->overlay_fd);
    ctx->overlay_dir = real;
    ctx->overlay_fd = fd;
    return true;
}

bool vd_context_mem_reserve(VdContext *ctx, uint64_t bytes, const char *name, const char *what,
                            GError **error)
{
    if (bytes > INT64_MAX / 2) {
        vd_set_error(error, ENOMEM, "%s: a %s of %" G_GUINT64_FORMAT " bytes is too large", name,
                     what, bytes);
        return false;
    }
    gint64 now = __atomic_add_fetch(&ctx->mem_used, (gint64)bytes, __ATOMIC_RELAXED);
    if (ctx->mem_budget != 0 && (uint64_t)now > ctx->mem_budget) {
        __atomic_sub_fetch(&ctx->mem_used, (gint64)bytes, __ATOMIC_RELAXED);
        vd_set_error(error, ENOMEM,
                     "%s: its %s (%" G_GUINT64_FORMAT " KiB) does not fit in the memory budget "
                     "of the open images (mem_budget=%" G_GUINT64_FORMAT " MiB, %" G_GINT64_FORMAT
                     " MiB in use)",
                     name, what, bytes >> 10, ctx->mem_budget >> 20, (now - (gint64)bytes) >> 20);
        return false;
    }
    return true;
}

void vd_context_mem_release(VdContext *ctx, uint64_t bytes)
{
    __atomic_sub_fetch(&ctx->mem_used, (gint64)bytes, __ATOMIC_RELAXED);
}

bool vd_context_set_raw_extensions(VdContext *ctx, const char *list, GError **error)
{
    g_auto(GStrv) parts = g_strsplit(list, ",", -1);
    g_autoptr(GPtrArray) exts = g_ptr_array_new_with_free_func(g_free);
    for (char **p = parts; *p != NULL; p++) {
        const char *e = *p;
        if (*e == '.')
            e++;
        if (*e == '\0')
            continue;
        if (strchr(e, '/') != NULL) {
            vd_set_error(error, EINVAL, "raw_ext: '%s' is not a file name extension", *p);
            return false;
        }
        g_ptr_array_add(exts, g_ascii_strdown(e, -1));
    }
    g_ptr_array_add(exts, NULL);
    g_strfreev(ctx->raw_extensions);
    ctx->raw_extensions = (char **)g_ptr_array_steal(exts, NULL);
    return true;
}

bool vd_context_is_raw_name(const VdContext *ctx, const char *basename)
{
    const char *dot = strrchr(basename, '.');
    if (dot == NULL || dot == basename || ctx->raw_extensions == NULL)
        return false;
    for (char **e = ctx->raw_extensions; *e != NULL; e++) {
        if (g_ascii_strcasecmp(dot + 1, *e) == 0)
            return true;
    }
    return false;
}

#define VD_KEYFILE_MAX (1u << 20)

/* The checks and the read on one open file: what was checked is what is read. */
static bool keyfile_read(int fd, const char *path, GKeyFile *kf, GError **error)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        vd_set_error_errno(error, errno, "keyfile %s", path);
        return false;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > VD_KEYFILE_MAX) {
        vd_set_error(error, EINVAL, "keyfile %s: not a regular file of at most %u bytes", path,
                     VD_KEYFILE_MAX);
        return false;
    }
    if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        vd_set_error(error, EACCES,
                     "keyfile %s: readable by group or others (mode %04o); chmod 600 it", path,
                     (unsigned)(st.st_mode & 07777));
        return false;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        vd_set_error(error, EACCES, "keyfile %s: owned by uid %u, not by the caller or root", path,
                     (unsigned)st.st_uid);
        return false;
    }
    size_t len = (size_t)st.st_size;
    char *buf = g_malloc(len + 1);
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    GError *local = NULL;
    bool ok = got == len && g_key_file_load_from_data(kf, buf, got, G_KEY_FILE_NONE, &local);
    explicit_bzero(buf, len + 1);
    g_free(buf);
    if (!ok) {
        /* GLib's message quotes the offending line, which may be a
         * passphrase: keys are never logged, so only the kind of fault. */
        const char *why = "short read";
        if (local != NULL && local->domain == G_KEY_FILE_ERROR)
            why = local->code == G_KEY_FILE_ERROR_UNKNOWN_ENCODING
                      ? "not UTF-8 text"
                      : "not a key file (expected [image] groups with passphrase= lines)";
        else if (local != NULL)
            why = "not a key file";
        vd_set_error(error, EINVAL, "keyfile %s: %s", path, why);
        g_clear_error(&local);
    }
    return ok;
}

bool vd_context_load_keyfile(VdContext *ctx, const char *path, GError **error)
{
    /* O_NONBLOCK: a FIFO named as the key file is refused, not waited on. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        vd_set_error_errno(error, errno, "keyfile %s", path);
        return false;
    }
    g_autoptr(GKeyFile) kf = g_key_file_new();
    bool ok = keyfile_read(fd, path, kf, error);
    close(fd);
    if (!ok)
        return false;
    g_clear_pointer(&ctx->keyfile, g_key_file_unref);
    ctx->keyfile = g_steal_pointer(&kf);
    return true;
}

char *vd_context_passphrase(const VdContext *ctx, const char *image_name, GError **error)
{
    if (ctx->keyfile == NULL) {
        vd_set_error(error, EACCES, "%s: image is encrypted and no keyfile was given", image_name);
        return NULL;
    }
    char *pass = g_key_file_get_string(ctx->keyfile, image_name, "passphrase", NULL);
    if (pass == NULL) {
        vd_set_error(error, EACCES,
                     "%s: image is encrypted and the keyfile has no passphrase "
                     "for it (group [%s])",
                     image_name, image_name);
        return NULL;
    }
    return pass;
}

void vd_secret_free(char *secret)
{
    if (secret == NULL)
        return;
    /* explicit_bzero survives dead-store elimination, unlike memset. */
    explicit_bzero(secret, strlen(secret));
    g_free(secret);
}

void vd_context_cancel(VdContext *ctx)
{
    /* A lock-free atomic store: safe in a signal handler. */
    g_atomic_int_set(&ctx->cancelled, 1);
}

bool vd_context_cancelled(const VdContext *ctx)
{
    return g_atomic_int_get((gint *)&ctx->cancelled) != 0;
}
