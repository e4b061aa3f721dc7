/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <string.h>

#include "src/vd-context.h"
#include "src/vd-error.h"
#include "src/vd-kdf.h"

static VdContext *new_ctx(void)
{
    g_autoptr(GError) err = NULL;
    VdContext *ctx = vd_context_new(NULL, &err);
    g_assert_no_error(err);
    return ctx;
}

static char *hex(const uint8_t *p, size_t n)
{
    GString *s = g_string_new(NULL);
    for (size_t i = 0; i < n; i++)
        g_string_append_printf(s, "%02x", p[i]);
    return g_string_free(s, FALSE);
}

/* RFC 6070: PBKDF2-HMAC-SHA1 test vectors. */
static void test_rfc6070(void)
{
    static const struct {
        const char *pass;
        size_t pass_len;
        const char *salt;
        size_t salt_len;
        uint64_t iterations;
        size_t out_len;
        const char *want;
    } v[] = {
        {"password", 8, "salt", 4, 1, 20, "0c60c80f961f0e71f3a9b524af6012062fe037a6"},
        {"password", 8, "salt", 4, 2, 20, "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"},
        {"password", 8, "salt", 4, 4096, 20, "4b007901b765489abead49d926f721d065a429c1"},
        {"passwordPASSWORDpassword", 24, "saltSALTsaltSALTsaltSALTsaltSALTsalt", 36, 4096, 25,
         "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038"},
        {"pass\0word", 9, "sa\0lt", 5, 4096, 16, "56fa6aa75548099dcc37d7f03425e0c3"},
    };
    g_autoptr(VdContext) ctx = new_ctx();
    for (size_t i = 0; i < G_N_ELEMENTS(v); i++) {
        g_autoptr(GError) err = NULL;
        uint8_t out[32] = {0};
        g_assert_true(vd_kdf_pbkdf2(ctx, "vector", EVP_sha1(), v[i].pass, v[i].pass_len,
                                    (const uint8_t *)v[i].salt, v[i].salt_len, v[i].iterations, out,
                                    v[i].out_len, &err));
        g_assert_no_error(err);
        g_autofree char *got = hex(out, v[i].out_len);
        g_assert_cmpstr(got, ==, v[i].want);
    }
}

/* A finished derivation's thread is gone when the call returns: a process
 * that exits next must not race that thread's exit (OpenSSL's per-thread
 * state was lost that way, and LeakSanitizer failed CI on it). */
static void test_joined(void)
{
    g_autoptr(VdContext) ctx = new_ctx();
    for (int i = 0; i < 500; i++) {
        g_autoptr(GError) err = NULL;
        uint8_t out[20];
        g_assert_true(vd_kdf_pbkdf2(ctx, "joined", EVP_sha1(), "password", 8,
                                    (const uint8_t *)"salt", 4, 1, out, sizeof out, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(vd_kdf_threads_running(), ==, 0);
    }
}

/* Over the cap: refused before any work, naming what and the count. */
static void test_cap(void)
{
    g_autoptr(VdContext) ctx = new_ctx();
    g_assert_cmpuint(ctx->kdf_max_iterations, ==, VD_DEFAULT_KDF_MAX_ITERATIONS);
    ctx->kdf_max_iterations = 4096;
    uint8_t out[20];
    g_autoptr(GError) err = NULL;
    g_assert_true(vd_kdf_pbkdf2(ctx, "at the cap", EVP_sha1(), "password", 8,
                                (const uint8_t *)"salt", 4, 4096, out, sizeof out, &err));
    g_assert_no_error(err);
    gint64 t0 = g_get_monotonic_time();
    g_assert_false(vd_kdf_pbkdf2(ctx, "disk.qcow2: LUKS key slot 5", EVP_sha1(), "password", 8,
                                 (const uint8_t *)"salt", 4, 1u << 30, out, sizeof out, &err));
    g_assert_error(err, VD_ERROR, EACCES);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, G_USEC_PER_SEC / 10);
    g_assert_nonnull(strstr(err->message, "disk.qcow2: LUKS key slot 5"));
    g_assert_nonnull(strstr(err->message, "1073741824"));
    g_assert_nonnull(strstr(err->message, "kdf_max_iterations"));
    g_clear_error(&err);
    g_assert_false(vd_kdf_check_iterations(ctx, "x", 4097, &err));
    g_assert_error(err, VD_ERROR, EACCES);
    g_assert_true(vd_kdf_check_iterations(ctx, "x", 4096, NULL));
}

typedef struct {
    VdContext *ctx;
    int index;
    bool ok;
    uint8_t out[20];
} Parallel;

static gpointer parallel_one(gpointer data)
{
    Parallel *p = data;
    const char *salt = p->index % 2 ? "pepper" : "salt";
    p->ok = vd_kdf_pbkdf2(p->ctx, "parallel", EVP_sha1(), "password", 8, (const uint8_t *)salt,
                          strlen(salt), 4096, p->out, sizeof p->out, NULL);
    return NULL;
}

/* Several derivations at once, each with its own result. */
static void test_parallel(void)
{
    g_autoptr(VdContext) ctx = new_ctx();
    Parallel p[8];
    GThread *t[8];
    for (int i = 0; i < 8; i++) {
        p[i] = (Parallel){.ctx = ctx, .index = i};
        t[i] = g_thread_new("kdf-test", parallel_one, &p[i]);
    }
    for (int i = 0; i < 8; i++)
        g_thread_join(t[i]);
    for (int i = 0; i < 8; i++) {
        g_assert_true(p[i].ok);
        g_assert_cmpmem(p[i].out, 20, p[i % 2].out, 20);
    }
    g_autofree char *got = hex(p[0].out, 20);
    g_assert_cmpstr(got, ==, "4b007901b765489abead49d926f721d065a429c1");
    g_assert_true(memcmp(p[0].out, p[1].out, 20) != 0);
}

static gpointer cancel_thread(gpointer data)
{
    g_usleep(200 * 1000);
    vd_context_cancel(data);
    return NULL;
}

/* A derivation of many seconds is abandoned within a slice of the cancel. */
static void test_cancel(void)
{
    g_autoptr(VdContext) ctx = new_ctx();
    ctx->kdf_max_iterations = VD_KDF_MAX_ITERATIONS_LIMIT;
    uint8_t out[64];
    g_autoptr(GError) err = NULL;
    GThread *t = g_thread_new("cancel", cancel_thread, ctx);
    gint64 t0 = g_get_monotonic_time();
    /* 2^26 iterations of SHA-512 take over 20 s on any current machine. */
    g_assert_false(vd_kdf_pbkdf2(ctx, "slow.qcow2: LUKS key slot 0", EVP_sha512(), "pw", 2,
                                 (const uint8_t *)"salt", 4, 1u << 26, out, sizeof out, &err));
    gint64 took = g_get_monotonic_time() - t0;
    g_thread_join(t);
    g_assert_error(err, VD_ERROR, ECANCELED);
    g_assert_nonnull(strstr(err->message, "slow.qcow2: LUKS key slot 0"));
    g_assert_cmpint(took, >=, 150 * 1000);
    g_assert_cmpint(took, <, G_USEC_PER_SEC);
    g_assert_cmpuint(vd_kdf_threads_running(), ==, 1); /* the abandoned one */
    g_clear_error(&err);

    /* Once cancelled, nothing starts. */
    t0 = g_get_monotonic_time();
    g_assert_false(vd_kdf_pbkdf2(ctx, "x", EVP_sha1(), "password", 8, (const uint8_t *)"salt", 4,
                                 1u << 26, out, 20, &err));
    g_assert_error(err, VD_ERROR, ECANCELED);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, G_USEC_PER_SEC / 10);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/kdf/rfc6070", test_rfc6070);
    g_test_add_func("/kdf/cap", test_cap);
    g_test_add_func("/kdf/parallel", test_parallel);
    g_test_add_func("/kdf/joined", test_joined);
    /* Last: the abandoned derivation keeps a core busy until exit. */
    g_test_add_func("/kdf/cancel", test_cancel);
    return g_test_run();
}
