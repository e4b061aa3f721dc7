/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Bounded, cancellable PBKDF2 (see vd-kdf.h). */
#include "config.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <string.h>

#include "vd-error.h"
#include "vd-kdf.h"

/* How often a waiting opener looks at the cancellation flag. A signal
 * handler cannot wake a GCond, so the waiter polls. */
#define KDF_SLICE_USEC (20 * G_TIME_SPAN_MILLISECOND)

/* One derivation, shared by the opener and the thread; freed by whichever
 * lets go last (the opener leaves early when cancelled). */
typedef struct {
    gint ref;
    GMutex lock;
    GCond cond;
    bool done; /* lock */
    bool ok;   /* lock */
    const EVP_MD *md;
    uint8_t *pass;
    size_t pass_len;
    uint8_t *salt;
    size_t salt_len;
    int iterations;
    uint8_t *out;
    size_t out_len;
} KdfJob;

static void job_unref(KdfJob *j)
{
    if (!g_atomic_int_dec_and_test(&j->ref))
        return;
    OPENSSL_cleanse(j->pass, j->pass_len);
    OPENSSL_cleanse(j->out, j->out_len);
    g_free(j->pass);
    g_free(j->salt);
    g_free(j->out);
    g_mutex_clear(&j->lock);
    g_cond_clear(&j->cond);
    g_free(j);
}

static gpointer job_thread(gpointer data)
{
    KdfJob *j = data;
    /* The empty password is passed as "" rather than NULL: OpenSSL takes
     * a NULL pointer with length 0 as a request for strlen. */
    bool ok =
        PKCS5_PBKDF2_HMAC(j->pass_len ? (const char *)j->pass : "", (int)j->pass_len, j->salt,
                          (int)j->salt_len, j->iterations, j->md, (int)j->out_len, j->out) == 1;
    g_mutex_lock(&j->lock);
    j->ok = ok;
    j->done = true;
    g_cond_signal(&j->cond);
    g_mutex_unlock(&j->lock);
    job_unref(j);
    return NULL;
}

bool vd_kdf_check_iterations(const VdContext *ctx, const char *what, uint64_t iterations,
                             GError **error)
{
    if (iterations <= ctx->kdf_max_iterations)
        return true;
    vd_set_error(error, EACCES,
                 "%s asks for %" G_GUINT64_FORMAT
                 " PBKDF2 iterations, more than the %" G_GUINT32_FORMAT
                 " allowed (-o kdf_max_iterations)",
                 what, iterations, ctx->kdf_max_iterations);
    return false;
}

bool vd_kdf_pbkdf2(const VdContext *ctx, const char *what, const EVP_MD *md, const void *pass,
                   size_t pass_len, const uint8_t *salt, size_t salt_len, uint64_t iterations,
                   uint8_t *out, size_t out_len, GError **error)
{
    if (!vd_kdf_check_iterations(ctx, what, iterations, error))
        return false;
    if (md == NULL || iterations == 0 || iterations > INT_MAX || pass_len > INT_MAX ||
        salt_len > INT_MAX || out_len == 0 || out_len > INT_MAX) {
        vd_set_error(error, EIO, "%s: PBKDF2 of %" G_GUINT64_FORMAT " iterations is not possible",
                     what, iterations);
        return false;
    }
    if (vd_context_cancelled(ctx)) {
        vd_set_error(error, ECANCELED, "%s: key derivation cancelled: the mount is shutting down",
                     what);
        return false;
    }
    KdfJob *j = g_new0(KdfJob, 1);
    j->ref = 2; /* the opener and the thread */
    g_mutex_init(&j->lock);
    g_cond_init(&j->cond);
    j->md = md;
    j->pass = g_memdup2(pass, pass_len);
    j->pass_len = pass_len;
    j->salt = g_memdup2(salt, salt_len);
    j->salt_len = salt_len;
    j->iterations = (int)iterations;
    j->out = g_malloc0(out_len);
    j->out_len = out_len;

    GError *terr = NULL;
    GThread *t = g_thread_try_new("vd-kdf", job_thread, j, &terr);
    if (t == NULL) {
        vd_set_error(error, EAGAIN, "%s: cannot start key derivation: %s", what, terr->message);
        g_error_free(terr);
        job_unref(j); /* the thread's reference */
        job_unref(j);
        return false;
    }
    g_thread_unref(t); /* detached: a cancelled wait does not join it */

    bool cancelled = false, ok = false;
    g_mutex_lock(&j->lock);
    while (!j->done) {
        if (vd_context_cancelled(ctx)) {
            cancelled = true;
            break;
        }
        g_cond_wait_until(&j->cond, &j->lock, g_get_monotonic_time() + KDF_SLICE_USEC);
    }
    if (j->done) {
        ok = j->ok;
        cancelled = false;
        if (ok)
            memcpy(out, j->out, out_len);
    }
    g_mutex_unlock(&j->lock);
    job_unref(j);
    if (cancelled)
        vd_set_error(error, ECANCELED, "%s: key derivation cancelled: the mount is shutting down",
                     what);
    else if (!ok)
        vd_set_error(error, EIO, "%s: PBKDF2 failed", what);
    return ok;
}
