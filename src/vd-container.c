/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "vd-container.h"

#define VD_CONTAINER(n) extern const VdContainer vd_##n##_container;
#include "sources/containers.h"
#undef VD_CONTAINER

#define VD_CONTAINER(n) &vd_##n##_container,
const VdContainer *const vd_containers[] = {
#include "sources/containers.h"
    NULL,
};
#undef VD_CONTAINER

const VdContainer *vd_container_probe(const uint8_t *head, size_t len, uint64_t file_size)
{
    for (const VdContainer *const *c = vd_containers; *c != NULL; c++) {
        if ((*c)->probe(head, len, file_size))
            return *c;
    }
    return NULL;
}

static char *strip_suffix(const char *basename, const char *suffix)
{
    size_t n = strlen(basename), k = suffix ? strlen(suffix) : 0;
    if (k == 0 || n <= k || g_ascii_strcasecmp(basename + n - k, suffix) != 0)
        return NULL;
    return g_strndup(basename, n - k);
}

char *vd_container_shown_name(const VdContainer *c, const char *basename)
{
    char *shown = strip_suffix(basename, c->suffix);
    for (const char *const *s = c->more_suffixes; shown == NULL && s != NULL && *s != NULL; s++)
        shown = strip_suffix(basename, *s);
    return shown;
}

/* The decoded head a probe reads. */
typedef struct {
    int fd;
    size_t len;
    uint8_t data[];
} HeadSource;

static bool head_pread(void *opaque, void *buf, size_t len, uint64_t off, GError **error)
{
    (void)error;
    const HeadSource *h = opaque;
    memcpy(buf, h->data + off, len); /* within the size, by the source layer */
    return true;
}

static void head_close(void *opaque)
{
    HeadSource *h = opaque;
    close(h->fd);
    g_free(h);
}

static const VdSourceOps head_ops = {
    .name = "decoded head",
    .pread = head_pread,
    .close = head_close,
};

bool vd_container_open_head(const VdContainer *c, VdContext *ctx, int fd, const char *name,
                            const VdSourceOps **ops, void **opaque, uint64_t *size, bool *partial,
                            bool *declined, GError **error)
{
    *declined = false;
    if (c->head == NULL) {
        *declined = true;
        return false;
    }
    HeadSource *h = g_malloc(sizeof *h + VD_CONTAINER_PROBE_SPAN);
    h->fd = fd;
    bool all = false;
    if (!c->head(ctx, fd, name, h->data, VD_CONTAINER_PROBE_SPAN, &h->len, &all, error)) {
        head_close(h);
        return false;
    }
    if (h->len == 0) {
        /* It cannot tell, or holds nothing: the whole open says which. */
        g_free(h);
        *declined = true;
        return false;
    }
    *ops = &head_ops;
    *opaque = h;
    *size = h->len;
    *partial = !all;
    return true;
}
