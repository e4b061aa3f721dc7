/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Bounded LRU of decoded chunks (see ro-cache.h). */
#include "config.h"

#include "formats/ro-cache.h"

typedef struct {
    uint64_t key;
    GBytes *data; /* NULL: free slot */
    uint64_t used;
} RoSlot;

struct RoCache {
    GMutex lock;   /* guards everything below */
    RoSlot *slots; /* n slots */
    unsigned n;
    uint64_t clock;
};

RoCache *ro_cache_new(uint64_t budget, uint64_t unit)
{
    RoCache *c = g_new0(RoCache, 1);
    uint64_t n = unit ? budget / unit : 2;
    c->n = (unsigned)CLAMP(n, 2, 256);
    c->slots = g_new0(RoSlot, c->n);
    g_mutex_init(&c->lock);
    return c;
}

void ro_cache_free(RoCache *c)
{
    if (c == NULL)
        return;
    for (unsigned i = 0; i < c->n; i++)
        g_clear_pointer(&c->slots[i].data, g_bytes_unref);
    g_free(c->slots);
    g_mutex_clear(&c->lock);
    g_free(c);
}

GBytes *ro_cache_get(RoCache *c, uint64_t key)
{
    GBytes *found = NULL;
    g_mutex_lock(&c->lock);
    for (unsigned i = 0; i < c->n; i++) {
        RoSlot *s = &c->slots[i];
        if (s->data != NULL && s->key == key) {
            s->used = ++c->clock;
            found = g_bytes_ref(s->data);
            break;
        }
    }
    g_mutex_unlock(&c->lock);
    return found;
}

void ro_cache_put(RoCache *c, uint64_t key, GBytes *data)
{
    GBytes *old = NULL;
    g_mutex_lock(&c->lock);
    RoSlot *victim = &c->slots[0];
    for (unsigned i = 0; i < c->n; i++) {
        RoSlot *s = &c->slots[i];
        if (s->data != NULL && s->key == key) {
            victim = s;
            break;
        }
        if (victim->data != NULL && (s->data == NULL || s->used < victim->used))
            victim = s;
    }
    old = victim->data;
    victim->key = key;
    victim->data = g_bytes_ref(data);
    victim->used = ++c->clock;
    g_mutex_unlock(&c->lock);
    if (old != NULL)
        g_bytes_unref(old);
}
