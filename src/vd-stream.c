/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Streams read in windows (see vd-stream.h). */
#include "config.h"

#include "vd-stream.h"
#include "vd-interrupt.h"

bool vd_stream_pass(const VdStreamWindows *s, uint64_t *pos, uint64_t target, bool *stopped,
                    GError **error)
{
    *stopped = false;
    uint64_t keep_from = target - MIN(target - *pos, (uint64_t)s->keep * s->window);
    while (*pos < target) {
        if (vd_interrupted(s->ctx, s->name, error)) {
            *stopped = true;
            return false;
        }
        uint64_t at = *pos;
        GBytes *have = at >= keep_from ? vd_ro_cache_get(s->cache, at) : NULL;
        bool keep = at >= keep_from && have == NULL;
        g_clear_pointer(&have, g_bytes_unref);
        uint8_t *data = keep ? g_malloc(s->window) : NULL;
        if (!s->decode(s->user, data, s->window, error)) {
            g_free(data);
            return false;
        }
        if (keep) {
            g_autoptr(GBytes) b = g_bytes_new_take(data, s->window);
            vd_ro_cache_put(s->cache, at, b);
        }
        *pos = at + s->window;
    }
    return true;
}
