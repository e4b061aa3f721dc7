/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <string.h>

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
