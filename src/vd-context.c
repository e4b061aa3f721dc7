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
    if (root != NULL) {
        ctx->root = realpath(root, NULL);
        if (ctx->root == NULL) {
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
    g_strfreev(ctx->raw_extensions);
    g_clear_pointer(&ctx->keyfile, g_key_file_unref);
    g_free(ctx);
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

bool vd_context_load_keyfile(VdContext *ctx, const char *path, GError **error)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        vd_set_error_errno(error, errno, "keyfile %s", path);
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        vd_set_error_errno(error, errno, "keyfile %s", path);
        close(fd);
        return false;
    }
    close(fd);
    if (!S_ISREG(st.st_mode)) {
        vd_set_error(error, EINVAL, "keyfile %s: not a regular file", path);
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
    g_autoptr(GKeyFile) kf = g_key_file_new();
    GError *local = NULL;
    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &local)) {
        vd_set_error(error, EINVAL, "keyfile %s: %s", path, local->message);
        g_error_free(local);
        return false;
    }
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
