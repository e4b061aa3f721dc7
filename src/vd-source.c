/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "vd-error.h"
#include "vd-source.h"

typedef struct {
    const VdSourceOps *ops;
    void *opaque;
    uint64_t size;
} Source;

/* fd -> Source. Looked up only while a source exists anywhere, so plain
 * files pay one relaxed load. An entry is used outside the lock: only the
 * image that owns the descriptor detaches it, and not while it reads. */
static GRWLock table_lock;
static GHashTable *table;
static gint attached;

static Source *lookup(int fd)
{
    if (g_atomic_int_get(&attached) == 0 || fd < 0)
        return NULL;
    g_rw_lock_reader_lock(&table_lock);
    Source *s = table ? g_hash_table_lookup(table, GINT_TO_POINTER(fd + 1)) : NULL;
    g_rw_lock_reader_unlock(&table_lock);
    return s;
}

void vd_source_attach(int fd, const VdSourceOps *ops, void *opaque, uint64_t size)
{
    Source *s = g_new0(Source, 1);
    s->ops = ops;
    s->opaque = opaque;
    s->size = size;
    g_rw_lock_writer_lock(&table_lock);
    if (table == NULL)
        table = g_hash_table_new(g_direct_hash, g_direct_equal);
    g_hash_table_insert(table, GINT_TO_POINTER(fd + 1), s);
    g_atomic_int_inc(&attached);
    g_rw_lock_writer_unlock(&table_lock);
}

void vd_source_detach(int fd)
{
    Source *s = NULL;
    g_rw_lock_writer_lock(&table_lock);
    if (table != NULL && (s = g_hash_table_lookup(table, GINT_TO_POINTER(fd + 1))) != NULL) {
        g_hash_table_remove(table, GINT_TO_POINTER(fd + 1));
        g_atomic_int_add(&attached, -1);
    }
    g_rw_lock_writer_unlock(&table_lock);
    if (s != NULL) {
        if (s->ops->close != NULL)
            s->ops->close(s->opaque);
        g_free(s);
    }
}

bool vd_source_is(int fd)
{
    return lookup(fd) != NULL;
}

bool vd_source_pread(int fd, const char *name, void *buf, size_t len, uint64_t offset,
                     bool zero_past_eof, bool *ok, GError **error)
{
    Source *s = lookup(fd);
    if (s == NULL)
        return false;
    uint8_t *p = buf;
    size_t inside = offset >= s->size ? 0 : (size_t)MIN((uint64_t)len, s->size - offset);
    if (inside < len && !zero_past_eof) {
        vd_set_error(error, EIO, "%s: unexpected end of %s data at 0x%" G_GINT64_MODIFIER "x", name,
                     s->ops->name, offset + inside);
        *ok = false;
        return true;
    }
    memset(p + inside, 0, len - inside);
    *ok = inside == 0 || s->ops->pread(s->opaque, p, inside, offset, error);
    return true;
}

bool vd_source_size(int fd, uint64_t *size)
{
    Source *s = lookup(fd);
    if (s == NULL)
        return false;
    *size = s->size;
    return true;
}

bool vd_source_seek(int fd, uint64_t offset, int whence, int64_t *result)
{
    Source *s = lookup(fd);
    if (s == NULL)
        return false;
    *result = -1;
    if (offset >= s->size) {
        errno = ENXIO;
        return true;
    }
    /* Without a zero map everything is data, as on a file system without
     * holes. */
    uint64_t pos = offset;
    while (pos < s->size) {
        bool zero = false;
        uint64_t run = s->size - pos;
        if (s->ops->is_zero != NULL && !s->ops->is_zero(s->opaque, pos, s->size - pos, &zero, &run))
            zero = false, run = s->size - pos;
        if (run == 0)
            run = 1;
        if (zero != (whence == SEEK_DATA)) {
            *result = (int64_t)pos;
            return true;
        }
        pos += MIN(run, s->size - pos);
    }
    if (whence == SEEK_HOLE)
        *result = (int64_t)s->size;
    else
        errno = ENXIO;
    return true;
}

int vd_source_host_range(int fd, uint64_t off, uint64_t len, uint64_t *host_off)
{
    Source *s = lookup(fd);
    if (s == NULL || s->ops->host_range == NULL || off > s->size || len > s->size - off)
        return -1;
    return s->ops->host_range(s->opaque, off, len, host_off);
}

const char *const *vd_source_members(int fd)
{
    Source *s = lookup(fd);
    return s != NULL && s->ops->members != NULL ? s->ops->members(s->opaque) : NULL;
}

bool vd_source_lock(int fd, GError **error)
{
    Source *s = lookup(fd);
    return s == NULL || s->ops->lock == NULL || s->ops->lock(s->opaque, error);
}

bool vd_source_describe(int fd, struct VdInfo *info)
{
    Source *s = lookup(fd);
    if (s == NULL || s->ops->describe == NULL)
        return false;
    s->ops->describe(s->opaque, info);
    return true;
}

uint64_t vd_source_unit(int fd)
{
    Source *s = lookup(fd);
    return s != NULL && s->ops->unit != NULL ? s->ops->unit(s->opaque) : 0;
}

const char *vd_source_inner_name(int fd)
{
    Source *s = lookup(fd);
    return s != NULL && s->ops->inner_name != NULL ? s->ops->inner_name(s->opaque) : NULL;
}

bool vd_source_host_bytes(int fd, uint64_t *bytes)
{
    Source *s = lookup(fd);
    return s != NULL && s->ops->host_bytes != NULL && s->ops->host_bytes(s->opaque, bytes);
}

bool vd_source_verify(int fd, GError **error)
{
    Source *s = lookup(fd);
    return s == NULL || s->ops->verify == NULL || s->ops->verify(s->opaque, error);
}

bool vd_source_costly_at(int fd, uint64_t off)
{
    Source *s = lookup(fd);
    return s != NULL && s->ops->costly_at != NULL && s->ops->costly_at(s->opaque, off);
}
