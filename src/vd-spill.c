/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "vd-io.h"
#include "vd-spill.h"

#define SPILL_STAGE (1u << 20)
#define SPILL_BLOCK 4096u
#define SPILL_CHECK (64ull << 20) /* free space looked at every this many bytes */

struct VdSpill {
    char *name;
    char *dir;
    int fd;
    uint8_t *stage; /* the contents from base on, fill bytes of them */
    size_t fill;
    uint64_t base;
    uint64_t next_check;
};

static void spill_give_up(VdSpill *s, const char *why)
{
    g_message("%s: not spilled to %s (%s): its reads decode it again", s->name, s->dir, why);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

VdSpill *vd_spill_new(VdContext *ctx, const char *name)
{
    if (ctx->spill_dir == NULL)
        return NULL;
    VdSpill *s = g_new0(VdSpill, 1);
    s->name = g_strdup(name);
    s->dir = g_strdup(ctx->spill_dir);
    s->fd = open(s->dir, O_TMPFILE | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (s->fd < 0) {
        spill_give_up(s, g_strerror(errno));
        vd_spill_free(s);
        return NULL;
    }
    s->stage = g_malloc(SPILL_STAGE);
    return s;
}

static bool room_left(VdSpill *s)
{
    struct statvfs v;
    if (fstatvfs(s->fd, &v) != 0) {
        spill_give_up(s, g_strerror(errno));
        return false;
    }
    uint64_t avail = (uint64_t)v.f_bavail * v.f_frsize;
    uint64_t reserve = MAX(VD_SPILL_RESERVE, (uint64_t)v.f_blocks * v.f_frsize / 20);
    if (avail < reserve + SPILL_CHECK) {
        g_autofree char *why =
            g_strdup_printf("%" G_GUINT64_FORMAT " MiB free, %" G_GUINT64_FORMAT " MiB kept free",
                            avail >> 20, reserve >> 20);
        spill_give_up(s, why);
        return false;
    }
    return true;
}

/* Whether the staged block at off (SPILL_BLOCK, or what is left) is zero. */
static bool stage_block_zero(const VdSpill *s, size_t off)
{
    return vd_buffer_is_zero(s->stage + off, MIN((size_t)SPILL_BLOCK, s->fill - off));
}

/* The staged bytes to the file, each run of non-zero blocks in one write,
 * the zero blocks left as holes. */
static bool stage_flush(VdSpill *s)
{
    if (s->base + s->fill > s->next_check) {
        if (!room_left(s))
            return false;
        s->next_check = s->base + SPILL_CHECK;
    }
    for (size_t at = 0, end; at < s->fill; at = end) {
        end = MIN(at + SPILL_BLOCK, s->fill);
        if (stage_block_zero(s, at))
            continue;
        while (end < s->fill && !stage_block_zero(s, end))
            end = MIN(end + SPILL_BLOCK, s->fill);
        g_autoptr(GError) err = NULL;
        if (!vd_host_pwrite(s->fd, s->name, s->stage + at, end - at, s->base + at, &err)) {
            spill_give_up(s, err->message);
            return false;
        }
    }
    s->base += s->fill;
    s->fill = 0;
    return true;
}

bool vd_spill_append(VdSpill *s, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0 && s->fd >= 0) {
        size_t n = MIN(len, SPILL_STAGE - s->fill);
        memcpy(s->stage + s->fill, p, n);
        s->fill += n;
        p += n;
        len -= n;
        if (s->fill == SPILL_STAGE && !stage_flush(s))
            return false;
    }
    return s->fd >= 0;
}

int vd_spill_finish(VdSpill *s, uint64_t size)
{
    int fd = -1;
    if (s->fd >= 0 && stage_flush(s)) {
        if (ftruncate(s->fd, (off_t)size) != 0) {
            spill_give_up(s, g_strerror(errno));
        } else {
            fd = s->fd;
            s->fd = -1;
        }
    }
    vd_spill_free(s);
    return fd;
}

void vd_spill_free(VdSpill *s)
{
    if (s == NULL)
        return;
    if (s->fd >= 0)
        close(s->fd);
    g_free(s->stage);
    g_free(s->name);
    g_free(s->dir);
    g_free(s);
}
