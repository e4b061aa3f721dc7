/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * DiskDescriptor.xml of a Parallels bundle, parsed with GMarkup into a
 * PrlDescriptor: the disk size, the storages (ranges of the disk, each
 * with one .hds per image GUID) and the snapshot tree (<Shot> GUID and
 * ParentGUID, and <TopGUID> where recorded). No I/O here: the parser is a
 * function of the buffer, so that it can be fuzzed.
 */
#include "config.h"

#include <string.h>

#include "formats/parallels.h"
#include "src/vd-error.h"

#define ROOT      "Parallels_disk_image"
#define MAX_DEPTH 32
#define MAX_ITEMS 4096  /* storages, images per storage, shots */
#define MAX_TEXT  65536 /* characters of one element's text */

typedef struct {
    const char *name;
    PrlDescriptor *d;
    GPtrArray *stack; /* element names (char *) */
    GString *text;
    PrlDescStorage *storage;
    PrlDescImage *image;
    PrlDescShot *shot;
    bool have_disk_size;
    GArray *storage_fields; /* per storage: bit 0 start, bit 1 end */
} ParseState;

static void image_free(gpointer p)
{
    PrlDescImage *i = p;
    g_free(i->guid);
    g_free(i->type);
    g_free(i->file);
    g_free(i);
}

static void storage_free(gpointer p)
{
    PrlDescStorage *s = p;
    g_ptr_array_unref(s->images);
    g_free(s);
}

static void shot_free(gpointer p)
{
    PrlDescShot *s = p;
    g_free(s->guid);
    g_free(s->parent);
    g_free(s);
}

void prl_descriptor_free(PrlDescriptor *d)
{
    if (d == NULL)
        return;
    g_free(d->uid);
    g_free(d->name);
    g_free(d->encryption_engine);
    g_free(d->top_guid);
    g_clear_pointer(&d->storages, g_ptr_array_unref);
    g_clear_pointer(&d->shots, g_ptr_array_unref);
    g_free(d);
}

/* The current element path below the root, e.g. "StorageData/Storage/Start". */
static char *current_path(ParseState *st)
{
    GString *p = g_string_new(NULL);
    for (guint i = 1; i < st->stack->len; i++) {
        if (i > 1)
            g_string_append_c(p, '/');
        g_string_append(p, g_ptr_array_index(st->stack, i));
    }
    return g_string_free(p, FALSE);
}

static void set_parse_error(GError **error, ParseState *st, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
static void set_parse_error(GError **error, ParseState *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT, "%s", msg);
}

static void on_start(GMarkupParseContext *ctx, const char *element, const char **names,
                     const char **values, gpointer data, GError **error)
{
    ParseState *st = data;
    if (st->stack->len == 0 && strcmp(element, ROOT) != 0) {
        set_parse_error(error, st, "root element is <%s>, not <" ROOT ">", element);
        return;
    }
    if (st->stack->len >= MAX_DEPTH) {
        set_parse_error(error, st, "elements nested too deeply");
        return;
    }
    g_ptr_array_add(st->stack, g_strdup(element));
    g_string_truncate(st->text, 0);
    g_autofree char *path = current_path(st);
    PrlDescriptor *d = st->d;
    if (strcmp(path, "StorageData/Storage") == 0) {
        if (d->storages->len >= MAX_ITEMS) {
            set_parse_error(error, st, "too many storages");
            return;
        }
        st->storage = g_new0(PrlDescStorage, 1);
        st->storage->images = g_ptr_array_new_with_free_func(image_free);
        g_ptr_array_add(d->storages, st->storage);
        unsigned zero = 0;
        g_array_append_val(st->storage_fields, zero);
    } else if (strcmp(path, "StorageData/Storage/Image") == 0) {
        if (st->storage->images->len >= MAX_ITEMS) {
            set_parse_error(error, st, "too many images in a storage");
            return;
        }
        st->image = g_new0(PrlDescImage, 1);
        g_ptr_array_add(st->storage->images, st->image);
    } else if (strcmp(path, "Snapshots/Shot") == 0) {
        if (d->shots->len >= MAX_ITEMS) {
            set_parse_error(error, st, "too many snapshots");
            return;
        }
        st->shot = g_new0(PrlDescShot, 1);
        g_ptr_array_add(d->shots, st->shot);
    }
}

static void on_text(GMarkupParseContext *ctx, const char *text, gsize len, gpointer data,
                    GError **error)
{
    ParseState *st = data;
    if (st->text->len + len > MAX_TEXT) {
        set_parse_error(error, st, "element text too long");
        return;
    }
    g_string_append_len(st->text, text, (gssize)len);
}

static bool parse_u64(ParseState *st, const char *what, uint64_t max, uint64_t *out, GError **error)
{
    g_autofree char *t = g_strstrip(g_strdup(st->text->str));
    g_autoptr(GError) e = NULL;
    guint64 v;
    if (!g_ascii_string_to_unsigned(t, 10, 0, max, &v, &e)) {
        set_parse_error(error, st, "<%s> is not a number up to %" G_GUINT64_FORMAT ": \"%.40s\"",
                        what, max, t);
        return false;
    }
    *out = v;
    return true;
}

/* Replace *slot with the element's trimmed text. */
static void take_text(ParseState *st, char **slot)
{
    g_free(*slot);
    *slot = g_strstrip(g_strdup(st->text->str));
}

static void on_end(GMarkupParseContext *ctx, const char *element, gpointer data, GError **error)
{
    ParseState *st = data;
    g_autofree char *path = current_path(st);
    PrlDescriptor *d = st->d;
    uint64_t v;
    const uint64_t max_sectors = INT64_MAX / 512;
    if (strcmp(path, "Disk_Parameters/Disk_size") == 0) {
        if (!parse_u64(st, "Disk_size", max_sectors, &d->disk_size, error))
            return;
        st->have_disk_size = true;
    } else if (strcmp(path, "Disk_Parameters/LogicSectorSize") == 0) {
        if (!parse_u64(st, "LogicSectorSize", 1u << 20, &v, error))
            return;
        d->logic_sector_size = (uint32_t)v;
    } else if (strcmp(path, "Disk_Parameters/UID") == 0) {
        take_text(st, &d->uid);
    } else if (strcmp(path, "Disk_Parameters/Name") == 0) {
        take_text(st, &d->name);
    } else if (strcmp(path, "Disk_Parameters/Encryption/Engine") == 0) {
        take_text(st, &d->encryption_engine);
    } else if (strcmp(path, "StorageData/Storage/Start") == 0) {
        if (!parse_u64(st, "Start", max_sectors, &st->storage->start, error))
            return;
        g_array_index(st->storage_fields, unsigned, st->storage_fields->len - 1) |= 1;
    } else if (strcmp(path, "StorageData/Storage/End") == 0) {
        if (!parse_u64(st, "End", max_sectors, &st->storage->end, error))
            return;
        g_array_index(st->storage_fields, unsigned, st->storage_fields->len - 1) |= 2;
    } else if (strcmp(path, "StorageData/Storage/Blocksize") == 0) {
        if (!parse_u64(st, "Blocksize", UINT32_MAX, &v, error))
            return;
        st->storage->blocksize = (uint32_t)v;
    } else if (strcmp(path, "StorageData/Storage/Image/GUID") == 0) {
        take_text(st, &st->image->guid);
    } else if (strcmp(path, "StorageData/Storage/Image/Type") == 0) {
        take_text(st, &st->image->type);
    } else if (strcmp(path, "StorageData/Storage/Image/File") == 0) {
        take_text(st, &st->image->file);
    } else if (strcmp(path, "Snapshots/TopGUID") == 0) {
        take_text(st, &d->top_guid);
    } else if (strcmp(path, "Snapshots/Shot/GUID") == 0) {
        take_text(st, &st->shot->guid);
    } else if (strcmp(path, "Snapshots/Shot/ParentGUID") == 0) {
        take_text(st, &st->shot->parent);
    } else if (strcmp(path, "StorageData/Storage/Image") == 0) {
        st->image = NULL;
    } else if (strcmp(path, "StorageData/Storage") == 0) {
        st->storage = NULL;
    } else if (strcmp(path, "Snapshots/Shot") == 0) {
        st->shot = NULL;
    }
    g_ptr_array_remove_index(st->stack, st->stack->len - 1);
    g_string_truncate(st->text, 0);
}

/* Structure that every use relies on. */
static bool check_descriptor(ParseState *st, GError **error)
{
    PrlDescriptor *d = st->d;
    if (!st->have_disk_size) {
        vd_set_error(error, EIO, "%s: no <Disk_size>", st->name);
        return false;
    }
    if (d->storages->len == 0) {
        vd_set_error(error, EIO, "%s: no <Storage>", st->name);
        return false;
    }
    for (guint i = 0; i < d->storages->len; i++) {
        PrlDescStorage *s = g_ptr_array_index(d->storages, i);
        if (g_array_index(st->storage_fields, unsigned, i) != 3 || s->end <= s->start) {
            vd_set_error(error, EIO, "%s: storage %u has no valid <Start>/<End>", st->name, i);
            return false;
        }
        if (s->images->len == 0) {
            vd_set_error(error, EIO, "%s: storage %u has no <Image>", st->name, i);
            return false;
        }
        for (guint j = 0; j < s->images->len; j++) {
            PrlDescImage *im = g_ptr_array_index(s->images, j);
            if (im->guid == NULL || im->file == NULL || im->file[0] == '\0') {
                vd_set_error(error, EIO, "%s: an <Image> of storage %u lacks <GUID> or <File>",
                             st->name, i);
                return false;
            }
            if (im->type == NULL)
                im->type = g_strdup("Compressed");
        }
    }
    for (guint i = 0; i < d->shots->len; i++) {
        PrlDescShot *s = g_ptr_array_index(d->shots, i);
        if (s->guid == NULL) {
            vd_set_error(error, EIO, "%s: a <Shot> has no <GUID>", st->name);
            return false;
        }
        if (s->parent == NULL)
            s->parent = g_strdup(PRL_NULL_GUID);
    }
    return true;
}

PrlDescriptor *prl_descriptor_parse(const char *buf, size_t len, const char *name, GError **error)
{
    if (len > PRL_MAX_DESCRIPTOR) {
        vd_set_error(error, EIO, "%s: descriptor of %zu bytes is too large", name, len);
        return NULL;
    }
    g_autoptr(PrlDescriptor) d = g_new0(PrlDescriptor, 1);
    d->storages = g_ptr_array_new_with_free_func(storage_free);
    d->shots = g_ptr_array_new_with_free_func(shot_free);
    ParseState st = {
        .name = name,
        .d = d,
        .stack = g_ptr_array_new_with_free_func(g_free),
        .text = g_string_new(NULL),
        .storage_fields = g_array_new(FALSE, FALSE, sizeof(unsigned)),
    };
    static const GMarkupParser parser = {on_start, on_end, on_text, NULL, NULL};
    GMarkupParseContext *ctx = g_markup_parse_context_new(&parser, 0, &st, NULL);
    GError *perr = NULL;
    bool ok = g_markup_parse_context_parse(ctx, buf, (gssize)len, &perr) &&
              g_markup_parse_context_end_parse(ctx, &perr);
    g_markup_parse_context_free(ctx);
    if (!ok) {
        vd_set_error(error, EIO, "%s: %s", name, perr ? perr->message : "malformed XML");
        g_clear_error(&perr);
    } else if (st.stack->len != 0 || !check_descriptor(&st, error)) {
        if (st.stack->len != 0)
            vd_set_error(error, EIO, "%s: unterminated XML", name);
        ok = false;
    }
    g_ptr_array_unref(st.stack);
    g_string_free(st.text, TRUE);
    g_array_unref(st.storage_fields);
    return ok ? g_steal_pointer(&d) : NULL;
}

static bool guid_eq(const char *a, const char *b)
{
    return a != NULL && b != NULL && g_ascii_strcasecmp(a, b) == 0;
}

static const PrlDescShot *find_shot(const PrlDescriptor *d, const char *guid)
{
    for (guint i = 0; i < d->shots->len; i++) {
        const PrlDescShot *s = g_ptr_array_index(d->shots, i);
        if (guid_eq(s->guid, guid))
            return s;
    }
    return NULL;
}

const char *prl_descriptor_top(const PrlDescriptor *d)
{
    if (d->top_guid != NULL && d->top_guid[0] != '\0')
        return d->top_guid;
    if (d->shots->len == 0) {
        const PrlDescStorage *s = g_ptr_array_index(d->storages, 0);
        return s->images->len == 1 ? ((PrlDescImage *)g_ptr_array_index(s->images, 0))->guid : NULL;
    }
    /* The one snapshot nobody has as a parent. */
    const char *leaf = NULL;
    for (guint i = 0; i < d->shots->len; i++) {
        const PrlDescShot *s = g_ptr_array_index(d->shots, i);
        bool is_parent = false;
        for (guint j = 0; j < d->shots->len && !is_parent; j++)
            is_parent = guid_eq(((PrlDescShot *)g_ptr_array_index(d->shots, j))->parent, s->guid);
        if (!is_parent) {
            if (leaf != NULL)
                return NULL; /* several branches and no TopGUID: ambiguous */
            leaf = s->guid;
        }
    }
    return leaf;
}

GPtrArray *prl_descriptor_chain(const PrlDescriptor *d, const char *guid, const char *name,
                                GError **error)
{
    if (guid == NULL)
        guid = prl_descriptor_top(d);
    if (guid == NULL) {
        vd_set_error(error, EIO, "%s: cannot tell which image is the current one", name);
        return NULL;
    }
    g_autoptr(GPtrArray) chain = g_ptr_array_new_with_free_func(g_free);
    const char *cur = guid;
    while (!guid_eq(cur, PRL_NULL_GUID)) {
        if (chain->len > d->shots->len) {
            vd_set_error(error, ELOOP, "%s: the snapshot chain from %s loops", name, guid);
            return NULL;
        }
        g_ptr_array_add(chain, g_strdup(cur));
        const PrlDescShot *s = find_shot(d, cur);
        if (s == NULL) {
            if (d->shots->len == 0)
                break; /* no snapshot tree: a single image */
            vd_set_error(error, EIO, "%s: image %s is not in <Snapshots>", name, cur);
            return NULL;
        }
        cur = s->parent;
    }
    return g_steal_pointer(&chain);
}
