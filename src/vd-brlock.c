/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <glib.h>

#include "vd-brlock.h"

/* Each thread keeps the slot it first drew: its read locks and unlocks
 * land on the same lock, and threads spread round-robin over the slots. */
static unsigned thread_slot(void)
{
    static unsigned next_slot;
    static __thread unsigned slot_plus_one;
    if (G_UNLIKELY(slot_plus_one == 0))
        slot_plus_one = __atomic_fetch_add(&next_slot, 1, __ATOMIC_RELAXED) % VD_BRLOCK_SLOTS + 1;
    return slot_plus_one - 1;
}

void vd_brlock_init(VdBrLock *l)
{
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* A writer must get in while readers keep coming (metadata updates
     * would otherwise starve under a steady read load). */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    for (unsigned i = 0; i < VD_BRLOCK_SLOTS; i++)
        if (pthread_rwlock_init(&l->slot[i].lock, &attr) != 0)
            g_error("pthread_rwlock_init failed");
    pthread_rwlockattr_destroy(&attr);
}

void vd_brlock_clear(VdBrLock *l)
{
    for (unsigned i = 0; i < VD_BRLOCK_SLOTS; i++)
        pthread_rwlock_destroy(&l->slot[i].lock);
}

void vd_brlock_rdlock(VdBrLock *l)
{
    pthread_rwlock_rdlock(&l->slot[thread_slot()].lock);
}

void vd_brlock_rdunlock(VdBrLock *l)
{
    pthread_rwlock_unlock(&l->slot[thread_slot()].lock);
}

void vd_brlock_wrlock(VdBrLock *l)
{
    /* Always in slot order, so two writers cannot deadlock. */
    for (unsigned i = 0; i < VD_BRLOCK_SLOTS; i++)
        pthread_rwlock_wrlock(&l->slot[i].lock);
}

void vd_brlock_wrunlock(VdBrLock *l)
{
    for (unsigned i = VD_BRLOCK_SLOTS; i-- > 0;)
        pthread_rwlock_unlock(&l->slot[i].lock);
}
