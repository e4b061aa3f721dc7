/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <stdbool.h>

#include <glib.h>

#include "src/vd-brlock.h"

/* More threads than slots, so some share a slot and every slot is used. */
#define READERS (VD_BRLOCK_SLOTS + 3)
#define ROUNDS  20000

typedef struct {
    VdBrLock lock;
    int writing; /* 1 while a writer holds the lock */
    int readers; /* readers inside right now */
    int max_readers;
    int violations;
    int stop;
} Shared;

static gpointer reader(gpointer data)
{
    Shared *s = data;
    while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
        vd_brlock_rdlock(&s->lock);
        int n = __atomic_add_fetch(&s->readers, 1, __ATOMIC_SEQ_CST);
        int m = __atomic_load_n(&s->max_readers, __ATOMIC_RELAXED);
        while (n > m && !__atomic_compare_exchange_n(&s->max_readers, &m, n, false,
                                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            ;
        if (__atomic_load_n(&s->writing, __ATOMIC_SEQ_CST))
            __atomic_add_fetch(&s->violations, 1, __ATOMIC_RELAXED);
        g_usleep(1);
        __atomic_sub_fetch(&s->readers, 1, __ATOMIC_SEQ_CST);
        vd_brlock_rdunlock(&s->lock);
    }
    return NULL;
}

/* A writer holding the lock sees no reader inside, and readers never see it
 * writing; readers on different threads get in together. */
static void test_exclusion(void)
{
    Shared *s = g_new0(Shared, 1);
    vd_brlock_init(&s->lock);
    GThread *t[READERS];
    for (int i = 0; i < READERS; i++)
        t[i] = g_thread_new("reader", reader, s);
    for (int r = 0; r < ROUNDS / 100; r++) {
        vd_brlock_wrlock(&s->lock);
        __atomic_store_n(&s->writing, 1, __ATOMIC_SEQ_CST);
        g_assert_cmpint(__atomic_load_n(&s->readers, __ATOMIC_SEQ_CST), ==, 0);
        g_usleep(10);
        g_assert_cmpint(__atomic_load_n(&s->readers, __ATOMIC_SEQ_CST), ==, 0);
        __atomic_store_n(&s->writing, 0, __ATOMIC_SEQ_CST);
        vd_brlock_wrunlock(&s->lock);
        g_usleep(50);
    }
    __atomic_store_n(&s->stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < READERS; i++)
        g_thread_join(t[i]);
    g_assert_cmpint(s->violations, ==, 0);
    g_assert_cmpint(s->max_readers, >, 1);
    vd_brlock_clear(&s->lock);
    g_free(s);
}

int main(int argc, char *argv[])
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/brlock/exclusion", test_exclusion);
    return g_test_run();
}
