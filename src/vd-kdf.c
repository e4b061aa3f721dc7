/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Bounded, cancellable PBKDF2 and Argon2 (see vd-kdf.h). */
#include "config.h"

#include <argon2.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <string.h>

#include "vd-error.h"
#include "vd-kdf.h"
#include "vd-pool.h"

/* How often a waiting opener looks at the cancellation flag. A signal
 * handler cannot wake a GCond, so the waiter polls. */
#define KDF_SLICE_USEC (20 * G_TIME_SPAN_MILLISECOND)

/* One derivation, shared by the opener and the thread; freed by whichever
 * lets go last (the opener leaves early when cancelled). */
typedef struct {
    gint ref;
    GMutex lock;
    GCond cond;
    bool done;   /* lock */
    bool ok;     /* lock */
    bool argon2; /* else PBKDF2 */
    const EVP_MD *md;
    argon2_type argon2_type;
    uint32_t memory_kib, lanes;
    uint8_t *pass;
    size_t pass_len;
    uint8_t *salt;
    size_t salt_len;
    int iterations;
    uint8_t *out;
    size_t out_len;
} KdfJob;

static gint threads_running;

unsigned vd_kdf_threads_running(void)
{
    return (unsigned)g_atomic_int_get(&threads_running);
}

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
    vd_thread_unpin();
    /* The empty password is passed as "" rather than NULL: OpenSSL takes
     * a NULL pointer with length 0 as a request for strlen. */
    bool ok;
    if (j->argon2)
        ok = argon2_hash((uint32_t)j->iterations, j->memory_kib, j->lanes, j->pass, j->pass_len,
                         j->salt, j->salt_len, j->out, j->out_len, NULL, 0, j->argon2_type,
                         ARGON2_VERSION_13) == ARGON2_OK;
    else
        ok =
            PKCS5_PBKDF2_HMAC(j->pass_len ? (const char *)j->pass : "", (int)j->pass_len, j->salt,
                              (int)j->salt_len, j->iterations, j->md, (int)j->out_len, j->out) == 1;
    /* OpenSSL keeps per-thread state (its error queue) that it frees only
     * when told or when the thread's exit handlers run; a process that
     * ends right after the opener returns can beat those handlers, and
     * the state is then lost (LeakSanitizer saw it). Free it here, before
     * the opener can go on. */
    OPENSSL_thread_stop();
    g_mutex_lock(&j->lock);
    j->ok = ok;
    j->done = true;
    g_cond_signal(&j->cond);
    g_mutex_unlock(&j->lock);
    job_unref(j);
    g_atomic_int_dec_and_test(&threads_running);
    return NULL;
}

static KdfJob *job_new(const void *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
                       int iterations, size_t out_len);
static bool job_run(const VdContext *ctx, const char *what, KdfJob *j, uint8_t *out,
                    const char *kdf, GError **error);

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
    KdfJob *j = job_new(pass, pass_len, salt, salt_len, (int)iterations, out_len);
    j->md = md;
    return job_run(ctx, what, j, out, "PBKDF2", error);
}

bool vd_kdf_check_argon2(const char *what, uint64_t time_cost, uint64_t memory_kib, uint64_t lanes,
                         GError **error)
{
    if (time_cost == 0 || memory_kib < 8 * lanes || lanes == 0 || lanes > VD_KDF_ARGON2_MAX_LANES) {
        vd_set_error(error, EIO,
                     "%s: Argon2 with %" G_GUINT64_FORMAT " passes over %" G_GUINT64_FORMAT
                     " KiB in %" G_GUINT64_FORMAT " lanes is not possible",
                     what, time_cost, memory_kib, lanes);
        return false;
    }
    if (memory_kib > VD_KDF_ARGON2_MAX_MEMORY_KIB ||
        time_cost > VD_KDF_ARGON2_MAX_WORK / memory_kib) {
        vd_set_error(error, EACCES,
                     "%s asks for Argon2 with %" G_GUINT64_FORMAT " passes over %" G_GUINT64_FORMAT
                     " KiB, more than vdiskfs allows (%u KiB, %" G_GUINT64_FORMAT " KiB-passes)",
                     what, time_cost, memory_kib, VD_KDF_ARGON2_MAX_MEMORY_KIB,
                     (uint64_t)VD_KDF_ARGON2_MAX_WORK);
        return false;
    }
    return true;
}

bool vd_kdf_argon2(const VdContext *ctx, const char *what, bool argon2id, const void *pass,
                   size_t pass_len, const uint8_t *salt, size_t salt_len, uint32_t time_cost,
                   uint32_t memory_kib, uint32_t lanes, uint8_t *out, size_t out_len,
                   GError **error)
{
    if (!vd_kdf_check_argon2(what, time_cost, memory_kib, lanes, error))
        return false;
    if (out_len == 0 || out_len > INT_MAX || salt_len < ARGON2_MIN_SALT_LENGTH) {
        vd_set_error(error, EIO, "%s: Argon2 of this salt and key length is not possible", what);
        return false;
    }
    KdfJob *j = job_new(pass, pass_len, salt, salt_len, (int)time_cost, out_len);
    j->argon2 = true;
    j->argon2_type = argon2id ? Argon2_id : Argon2_i;
    j->memory_kib = memory_kib;
    j->lanes = lanes;
    return job_run(ctx, what, j, out, "Argon2", error);
}

static KdfJob *job_new(const void *pass, size_t pass_len, const uint8_t *salt, size_t salt_len,
                       int iterations, size_t out_len)
{
    KdfJob *j = g_new0(KdfJob, 1);
    j->ref = 2; /* the opener and the thread */
    g_mutex_init(&j->lock);
    g_cond_init(&j->cond);
    j->pass = g_memdup2(pass, pass_len);
    j->pass_len = pass_len;
    j->salt = g_memdup2(salt, salt_len);
    j->salt_len = salt_len;
    j->iterations = iterations;
    j->out = g_malloc0(out_len);
    j->out_len = out_len;
    return j;
}

/* Run j on a thread of its own and wait for it in slices, giving up when
 * ctx is cancelled (the thread then finishes alone and frees j). Takes
 * the opener's reference. */
static bool job_run(const VdContext *ctx, const char *what, KdfJob *j, uint8_t *out,
                    const char *kdf, GError **error)
{
    size_t out_len = j->out_len;
    if (vd_context_cancelled(ctx)) {
        vd_set_error(error, ECANCELED, "%s: key derivation cancelled: the mount is shutting down",
                     what);
        job_unref(j);
        job_unref(j);
        return false;
    }
    GError *terr = NULL;
    g_atomic_int_inc(&threads_running);
    GThread *t = g_thread_try_new("vd-kdf", job_thread, j, &terr);
    if (t == NULL) {
        vd_set_error(error, EAGAIN, "%s: cannot start key derivation: %s", what, terr->message);
        g_error_free(terr);
        g_atomic_int_dec_and_test(&threads_running);
        job_unref(j); /* the thread's reference */
        job_unref(j);
        return false;
    }
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
    /* A finished thread is joined, so none outlives its opener; a
     * cancelled wait leaves it detached to finish alone. */
    if (cancelled)
        g_thread_unref(t);
    else
        g_thread_join(t);
    job_unref(j);
    if (cancelled)
        vd_set_error(error, ECANCELED, "%s: key derivation cancelled: the mount is shutting down",
                     what);
    else if (!ok)
        vd_set_error(error, EIO, "%s: %s failed", what, kdf);
    return ok;
}
