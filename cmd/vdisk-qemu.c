/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "src/vd-driver.h"
#include "cmd/vdisk-qemu.h"

/* JSON must be UTF-8: names and descriptions come from images and may not be. */
static char *valid_utf8(const char *s)
{
    return g_utf8_make_valid(s != NULL ? s : "", -1);
}

void vdq_add_string(JsonBuilder *b, const char *key, const char *s)
{
    if (key != NULL) {
        g_autofree char *k = valid_utf8(key);
        json_builder_set_member_name(b, k);
    }
    g_autofree char *v = valid_utf8(s);
    json_builder_add_string_value(b, v);
}

static void add_int(JsonBuilder *b, const char *key, uint64_t v)
{
    json_builder_set_member_name(b, key);
    /* JSON numbers here are qemu-img's int64; nothing an image holds that
     * we print comes near 2^63, but do not let it wrap negative. */
    json_builder_add_int_value(b, (gint64)MIN(v, (uint64_t)G_MAXINT64));
}

static void add_bool(JsonBuilder *b, const char *key, bool v)
{
    json_builder_set_member_name(b, key);
    json_builder_add_boolean_value(b, v);
}

static void add_entry_value(JsonBuilder *b, const VdInfoEntry *e)
{
    switch (e->type) {
    case VD_INFO_STR:
        vdq_add_string(b, NULL, e->str);
        break;
    case VD_INFO_U64:
        json_builder_add_int_value(b, (gint64)MIN(e->u64, (uint64_t)G_MAXINT64));
        break;
    case VD_INFO_BOOL:
        json_builder_add_boolean_value(b, e->b);
        break;
    case VD_INFO_LIST:
        json_builder_begin_array(b);
        for (guint i = 0; i < e->list->len; i++)
            vdq_add_string(b, NULL, e->list->pdata[i]);
        json_builder_end_array(b);
        break;
    }
}

JsonNode *vdq_info_object(const VdInfo *info)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    for (guint i = 0; i < info->entries->len; i++) {
        const VdInfoEntry *e = g_ptr_array_index(info->entries, i);
        g_autofree char *k = valid_utf8(e->key);
        json_builder_set_member_name(b, k);
        add_entry_value(b, e);
    }
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

JsonNode *vdq_snapshot_list(GPtrArray *snaps)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_array(b);
    for (guint i = 0; i < snaps->len; i++) {
        const VdSnapshotInfo *s = g_ptr_array_index(snaps, i);
        json_builder_begin_object(b);
        vdq_add_string(b, "id", s->id);
        vdq_add_string(b, "name", s->name);
        json_builder_set_member_name(b, "date-sec");
        json_builder_add_int_value(b, s->date_sec);
        add_int(b, "date-nsec", s->date_nsec);
        add_int(b, "vm-clock-sec", s->vm_clock_nsec / 1000000000);
        add_int(b, "vm-clock-nsec", s->vm_clock_nsec % 1000000000);
        add_int(b, "vm-state-size", s->vm_state_size);
        if (s->has_icount)
            add_int(b, "icount", s->icount);
        json_builder_set_member_name(b, "vdiskfs");
        json_builder_begin_object(b);
        add_int(b, "virtual-size", s->virtual_size);
        json_builder_end_object(b);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    return json_builder_get_root(b);
}

char *vdq_full_backing_name(const char *filename, const char *backing)
{
    /* Relative names are relative to the directory of the image naming
     * them, and qemu-img spells the result by prefixing that image's name
     * up to its last slash: "top.qcow2" names "base.qcow2" as "base.qcow2". */
    if (backing[0] == '/' || strstr(backing, "://") != NULL)
        return g_strdup(backing);
    const char *slash = strrchr(filename, '/');
    if (slash == NULL)
        return g_strdup(backing);
    return g_strdup_printf("%.*s%s", (int)(slash - filename + 1), filename, backing);
}

static const VdInfoEntry *entry(const VdInfo *d, const char *key, VdInfoType type)
{
    const VdInfoEntry *e = vd_info_get(d, key);
    return e != NULL && e->type == type ? e : NULL;
}

/* Drivers whose QEMU counterpart answers bdrv_get_info: only those print
 * dirty-flag and cluster-size (parallels, dmg, bochs, cloop do not). */
static bool qemu_has_get_info(const char *fmt)
{
    static const char *const names[] = {"qcow2", "qcow", "vmdk", "vhdx",
                                        "vdi",   "vpc",  "qed",  "raw"};
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        if (strcmp(fmt, names[i]) == 0)
            return true;
    }
    return false;
}

/* QEMU counts a qcow2 image's own file only, not its external data file;
 * it sums every file of a VMDK. */
static uint64_t actual_size(VdImage *img)
{
    if (strcmp(img->driver->name, "qcow2") == 0)
        return vd_image_file_bytes(img->fd);
    return vd_image_host_bytes(img);
}

bool vdq_supports_backing(const char *fmt)
{
    static const char *const names[] = {"qcow2", "qcow", "qed", "vmdk", "parallels"};
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        if (strcmp(fmt, names[i]) == 0)
            return true;
    }
    return false;
}

/* QEMU splits the LUKS mode "xts-plain64" or "cbc-essiv:sha256" into the
 * cipher mode, the IV generator and its hash. */
static void luks_specific(JsonBuilder *b, const VdInfo *d)
{
    const VdInfoEntry *e;
    if ((e = entry(d, "encryption_cipher", VD_INFO_STR)) != NULL)
        vdq_add_string(b, "cipher-alg", e->str);
    if ((e = entry(d, "encryption_mode", VD_INFO_STR)) != NULL) {
        g_autofree char *mode = g_strdup(e->str);
        char *iv = strchr(mode, '-'), *ivhash = NULL;
        if (iv != NULL) {
            *iv++ = '\0';
            if ((ivhash = strchr(iv, ':')) != NULL)
                *ivhash++ = '\0';
        }
        vdq_add_string(b, "cipher-mode", mode);
        if (iv != NULL)
            vdq_add_string(b, "ivgen-alg", iv);
        if (ivhash != NULL)
            vdq_add_string(b, "ivgen-hash-alg", ivhash);
    }
    if ((e = entry(d, "encryption_hash", VD_INFO_STR)) != NULL)
        vdq_add_string(b, "hash-alg", e->str);
    if ((e = entry(d, "encryption_uuid", VD_INFO_STR)) != NULL)
        vdq_add_string(b, "uuid", e->str);
    if ((e = entry(d, "encryption_payload_offset", VD_INFO_U64)) != NULL)
        add_int(b, "payload-offset", e->u64);
    if ((e = entry(d, "encryption_master_key_iterations", VD_INFO_U64)) != NULL)
        add_int(b, "master-key-iters", e->u64);
    if ((e = entry(d, "encryption_key_slots", VD_INFO_LIST)) == NULL)
        return;
    json_builder_set_member_name(b, "slots");
    json_builder_begin_array(b);
    for (guint i = 0; i < e->list->len; i++) {
        /* "active iterations=N stripes=N key_offset=N" or
         * "inactive key_offset=N", as qcow2-crypto.c describes a slot. */
        const char *item = e->list->pdata[i];
        unsigned iters = 0, stripes = 0;
        uint64_t key_offset = 0;
        json_builder_begin_object(b);
        if (sscanf(item, "active iterations=%u stripes=%u key_offset=%" SCNu64, &iters, &stripes,
                   &key_offset) == 3) {
            add_bool(b, "active", true);
            add_int(b, "iters", iters);
            add_int(b, "key-offset", key_offset);
            add_int(b, "stripes", stripes);
        } else {
            sscanf(item, "inactive key_offset=%" SCNu64, &key_offset);
            add_bool(b, "active", false);
            add_int(b, "key-offset", key_offset);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
}

static void qcow2_specific(JsonBuilder *b, const VdInfo *d)
{
    const VdInfoEntry *e;
    bool v3 = (e = entry(d, "version", VD_INFO_U64)) != NULL && e->u64 >= 3;
    if ((e = entry(d, "compat", VD_INFO_STR)) != NULL)
        vdq_add_string(b, "compat", e->str);
    if ((e = entry(d, "data_file", VD_INFO_STR)) != NULL)
        vdq_add_string(b, "data-file", e->str);
    if ((e = entry(d, "data_file_raw", VD_INFO_BOOL)) != NULL)
        add_bool(b, "data-file-raw", e->b);
    /* Version 2 headers have no room for these: qemu-img leaves them out. */
    if (v3) {
        if ((e = entry(d, "extended_l2", VD_INFO_BOOL)) != NULL)
            add_bool(b, "extended-l2", e->b);
        if ((e = entry(d, "lazy_refcounts", VD_INFO_BOOL)) != NULL)
            add_bool(b, "lazy-refcounts", e->b);
        if ((e = entry(d, "corrupt", VD_INFO_BOOL)) != NULL)
            add_bool(b, "corrupt", e->b);
    }
    if ((e = entry(d, "refcount_bits", VD_INFO_U64)) != NULL)
        add_int(b, "refcount-bits", e->u64);
    if ((e = entry(d, "encryption", VD_INFO_STR)) != NULL && strcmp(e->str, "none") != 0) {
        json_builder_set_member_name(b, "encrypt");
        json_builder_begin_object(b);
        vdq_add_string(b, "format", e->str);
        if (strcmp(e->str, "luks") == 0)
            luks_specific(b, d);
        json_builder_end_object(b);
    }
    if ((e = entry(d, "compression_type", VD_INFO_STR)) != NULL)
        vdq_add_string(b, "compression-type", e->str);
    if ((e = entry(d, "bitmaps", VD_INFO_LIST)) != NULL) {
        json_builder_set_member_name(b, "bitmaps");
        json_builder_begin_array(b);
        for (guint i = 0; i < e->list->len; i++) {
            /* "GRANULARITY FLAGS NAME", as qcow2-meta.c describes one. */
            const char *item = e->list->pdata[i];
            uint64_t gran = 0;
            char flags[32] = "";
            int n = 0;
            if (sscanf(item, "%" SCNu64 " %31s %n", &gran, flags, &n) < 2 || n == 0)
                continue;
            json_builder_begin_object(b);
            json_builder_set_member_name(b, "flags");
            json_builder_begin_array(b);
            g_auto(GStrv) fl = g_strsplit(flags, ",", -1);
            for (char **f = fl; *f != NULL; f++)
                if (strcmp(*f, "-") != 0)
                    json_builder_add_string_value(b, *f);
            json_builder_end_array(b);
            vdq_add_string(b, "name", item + n);
            add_int(b, "granularity", gran);
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
    }
}

static uint64_t parse_hex(const char *s)
{
    return g_ascii_strtoull(s, NULL, 16);
}

/* One descriptor line: ACCESS SECTORS TYPE "FILE" [OFFSET]. */
static void vmdk_extent(JsonBuilder *b, const VdInfo *d, const char *line, const char *filename,
                        bool hosted)
{
    char access[16], type[32];
    uint64_t sectors;
    /* Fields are separated by any run of blanks; the name is quoted. */
    if (sscanf(line, "%15s %" SCNu64 " %31s", access, &sectors, type) != 3)
        return;
    bool flat = g_ascii_strcasecmp(type, "FLAT") == 0 || g_ascii_strcasecmp(type, "VMFS") == 0 ||
                g_ascii_strcasecmp(type, "ZERO") == 0 || g_ascii_strncasecmp(type, "VMFSR", 5) == 0;
    const char *q1 = strchr(line, '"'), *q2 = q1 ? strchr(q1 + 1, '"') : NULL;
    g_autofree char *name = q2 ? g_strndup(q1 + 1, (gsize)(q2 - q1 - 1)) : g_strdup("");
    const VdInfoEntry *e;
    json_builder_begin_object(b);
    if (!flat && (e = entry(d, "compression", VD_INFO_STR)) != NULL && strcmp(e->str, "none") != 0)
        add_bool(b, "compressed", true);
    add_int(b, "virtual-size", sectors > G_MAXUINT64 / 512 ? G_MAXUINT64 : sectors * 512);
    /* A hosted sparse extent is the image file itself, which QEMU opens
     * without a descriptor type: it reports the type as "". */
    g_autofree char *path = hosted ? g_strdup(filename) : vdq_full_backing_name(filename, name);
    vdq_add_string(b, "filename", path);
    if (!flat && (e = entry(d, "grain_size", VD_INFO_U64)) != NULL)
        add_int(b, "cluster-size", e->u64);
    vdq_add_string(b, "format", hosted ? "" : type);
    json_builder_end_object(b);
}

static void vmdk_specific(JsonBuilder *b, const VdInfo *d, const char *filename)
{
    const VdInfoEntry *e, *ct = entry(d, "create_type", VD_INFO_STR);
    if ((e = entry(d, "cid", VD_INFO_STR)) != NULL)
        add_int(b, "cid", parse_hex(e->str));
    if ((e = entry(d, "parent_cid", VD_INFO_STR)) != NULL)
        add_int(b, "parent-cid", parse_hex(e->str));
    if (ct != NULL)
        vdq_add_string(b, "create-type", ct->str);
    bool hosted = ct != NULL && (strcmp(ct->str, "monolithicSparse") == 0 ||
                                 strcmp(ct->str, "streamOptimized") == 0);
    json_builder_set_member_name(b, "extents");
    json_builder_begin_array(b);
    if ((e = entry(d, "extents", VD_INFO_LIST)) != NULL) {
        for (guint i = 0; i < e->list->len; i++)
            vmdk_extent(b, d, e->list->pdata[i], filename, hosted);
    }
    json_builder_end_array(b);
}

/* backing-filename-format is what the image records (QEMU's VMDK driver
 * names "vmdk" itself; QED records only "do not probe: raw"). */
static const char *backing_format(VdImage *img, const VdInfo *d)
{
    const char *fmt = img->driver->name;
    const VdInfoEntry *e = entry(d, "backing_format", VD_INFO_STR);
    if (strcmp(fmt, "qcow2") == 0)
        return e != NULL ? e->str : NULL;
    if (strcmp(fmt, "qed") == 0)
        return e != NULL && strcmp(e->str, "raw") == 0 ? "raw" : NULL;
    if (strcmp(fmt, "vmdk") == 0)
        return "vmdk";
    if (strcmp(fmt, "qcow") == 0)
        return NULL;
    return img->backing_format;
}

JsonNode *vdq_image_info(VdImage *img, const char *filename, GError **error)
{
    g_autoptr(GPtrArray) snaps = vd_image_snapshots(img, error);
    if (snaps == NULL)
        return NULL;
    g_autoptr(VdInfo) d = vd_info_describe(img);
    const char *fmt = img->driver->name;
    const VdInfoEntry *e;
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    vdq_add_string(b, "filename", filename);
    vdq_add_string(b, "format", fmt);
    add_int(b, "virtual-size", vd_image_size(img));
    add_int(b, "actual-size", actual_size(img));
    if (qemu_has_get_info(fmt)) {
        bool dirty = false;
        if ((e = entry(d, "dirty", VD_INFO_BOOL)) != NULL)
            dirty = e->b;
        if (strcmp(fmt, "qed") == 0 && vd_info_get(d, "need_check") != NULL)
            dirty = true;
        add_bool(b, "dirty-flag", dirty);
        if ((e = entry(d, "cluster_size", VD_INFO_U64)) != NULL && e->u64 != 0)
            add_int(b, "cluster-size", e->u64);
    }
    if ((e = entry(d, "encryption", VD_INFO_STR)) != NULL && strcmp(e->str, "none") != 0)
        add_bool(b, "encrypted", true);
    if (img->backing_name != NULL) {
        vdq_add_string(b, "backing-filename", img->backing_name);
        g_autofree char *full = vdq_full_backing_name(filename, img->backing_name);
        vdq_add_string(b, "full-backing-filename", full);
        const char *bf = backing_format(img, d);
        if (bf != NULL)
            vdq_add_string(b, "backing-filename-format", bf);
    }
    if (snaps->len > 0) {
        json_builder_set_member_name(b, "snapshots");
        json_builder_add_value(b, vdq_snapshot_list(snaps));
    }
    bool qcow2 = strcmp(fmt, "qcow2") == 0, vmdk = strcmp(fmt, "vmdk") == 0;
    if (qcow2 || vmdk) {
        json_builder_set_member_name(b, "format-specific");
        json_builder_begin_object(b);
        vdq_add_string(b, "type", fmt);
        json_builder_set_member_name(b, "data");
        json_builder_begin_object(b);
        if (qcow2)
            qcow2_specific(b, d);
        else
            vmdk_specific(b, d, filename);
        json_builder_end_object(b);
        json_builder_end_object(b);
    }
    json_builder_set_member_name(b, "vdiskfs");
    json_builder_add_value(b, vdq_info_object(d));
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

char *vdq_size_to_str(uint64_t v)
{
    /* qemu-img's rule: the largest binary unit the value reaches 1000/1024
     * of, three significant digits ("0.977 KiB" for 1000 bytes). */
    static const char *const units[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    unsigned i = 0;
    while (i + 1 < G_N_ELEMENTS(units) && (double)v >= 1000.0 * (double)(1ull << (10 * i)))
        i++;
    return g_strdup_printf("%0.3g %sB", (double)v / (double)(1ull << (10 * i)), units[i]);
}

static gint64 member_int(JsonObject *o, const char *key, gint64 dflt)
{
    return json_object_has_member(o, key) ? json_object_get_int_member(o, key) : dflt;
}

void vdq_print_snapshots_text(JsonNode *snapshots)
{
    static const char row[] = "%-9s %-17s %7s %19s %12s %10s\n";
    printf("Snapshot list:\n");
    printf(row, "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
    JsonArray *a = json_node_get_array(snapshots);
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonObject *s = json_array_get_object_element(a, i);
        g_autoptr(GDateTime) dt = g_date_time_new_from_unix_local(member_int(s, "date-sec", 0));
        g_autofree char *date = dt ? g_date_time_format(dt, "%Y-%m-%d %H:%M:%S") : g_strdup("?");
        g_autofree char *vm = vdq_size_to_str((uint64_t)member_int(s, "vm-state-size", 0));
        gint64 secs = member_int(s, "vm-clock-sec", 0);
        g_autofree char *clock = g_strdup_printf(
            "%02" G_GINT64_FORMAT ":%02d:%02d.%03d", secs / 3600, (int)(secs / 60 % 60),
            (int)(secs % 60), (int)(member_int(s, "vm-clock-nsec", 0) / 1000000));
        g_autofree char *icount =
            json_object_has_member(s, "icount")
                ? g_strdup_printf("%" G_GINT64_FORMAT, member_int(s, "icount", 0))
                : g_strdup("");
        printf(row, json_object_get_string_member(s, "id"),
               json_object_get_string_member(s, "name"), vm, date, clock, icount);
    }
}

static void print_tree(JsonNode *node, int indent)
{
    if (JSON_NODE_HOLDS_OBJECT(node)) {
        JsonObject *o = json_node_get_object(node);
        g_autoptr(GList) keys = json_object_get_members(o);
        for (GList *l = keys; l != NULL; l = l->next) {
            JsonNode *v = json_object_get_member(o, l->data);
            /* qemu-img's text spells its keys with spaces. */
            g_autofree char *k = g_strdelimit(g_strdup(l->data), "-", ' ');
            if (JSON_NODE_HOLDS_VALUE(v)) {
                g_autofree char *s = json_node_get_value_type(v) == G_TYPE_STRING
                                         ? g_strdup(json_node_get_string(v))
                                         : json_to_string(v, FALSE);
                printf("%*s%s: %s\n", indent, "", k, s);
            } else {
                printf("%*s%s:\n", indent, "", k);
                print_tree(v, indent + 4);
            }
        }
    } else if (JSON_NODE_HOLDS_ARRAY(node)) {
        JsonArray *a = json_node_get_array(node);
        for (guint i = 0; i < json_array_get_length(a); i++) {
            printf("%*s[%u]:\n", indent, "", i);
            print_tree(json_array_get_element(a, i), indent + 4);
        }
    }
}

void vdq_print_info_text(JsonNode *info, const char *const *extra)
{
    JsonObject *o = json_node_get_object(info);
    gint64 size = member_int(o, "virtual-size", 0);
    g_autofree char *hs = vdq_size_to_str((uint64_t)size);
    g_autofree char *hu = vdq_size_to_str((uint64_t)member_int(o, "actual-size", 0));
    printf("image: %s\nfile format: %s\n", json_object_get_string_member(o, "filename"),
           json_object_get_string_member(o, "format"));
    printf("virtual size: %s (%" G_GINT64_FORMAT " bytes)\ndisk size: %s\n", hs, size, hu);
    if (json_object_has_member(o, "cluster-size"))
        printf("cluster_size: %" G_GINT64_FORMAT "\n", member_int(o, "cluster-size", 0));
    if (json_object_has_member(o, "encrypted"))
        printf("encrypted: yes\n");
    if (json_object_has_member(o, "backing-filename")) {
        const char *bn = json_object_get_string_member(o, "backing-filename");
        const char *full = json_object_get_string_member(o, "full-backing-filename");
        if (strcmp(bn, full) != 0)
            printf("backing file: %s (actual path: %s)\n", bn, full);
        else
            printf("backing file: %s\n", bn);
    }
    if (json_object_has_member(o, "backing-filename-format"))
        printf("backing file format: %s\n",
               json_object_get_string_member(o, "backing-filename-format"));
    if (json_object_has_member(o, "snapshots"))
        vdq_print_snapshots_text(json_object_get_member(o, "snapshots"));
    if (json_object_has_member(o, "format-specific")) {
        JsonObject *fs = json_object_get_object_member(o, "format-specific");
        printf("Format specific information:\n");
        print_tree(json_object_get_member(fs, "data"), 4);
    }
    /* The driver's own keys, as before the qemu-img layout, for people:
     * lists on one line, as vd_info_entry_to_string spells them. */
    JsonObject *v =
        json_object_has_member(o, "vdiskfs") ? json_object_get_object_member(o, "vdiskfs") : NULL;
    if ((v == NULL || json_object_get_size(v) == 0) && (extra == NULL || extra[0] == NULL))
        return;
    printf("vdiskfs information:\n");
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++)
        printf("    %s\n", extra[i]);
    if (v == NULL)
        return;
    g_autoptr(GList) keys = json_object_get_members(v);
    for (GList *l = keys; l != NULL; l = l->next) {
        JsonNode *n = json_object_get_member(v, l->data);
        g_autofree char *text = NULL;
        if (JSON_NODE_HOLDS_ARRAY(n)) {
            JsonArray *a = json_node_get_array(n);
            GString *s = g_string_new(NULL);
            for (guint i = 0; i < json_array_get_length(a); i++)
                g_string_append_printf(s, "%s%s", i ? ", " : "",
                                       json_array_get_string_element(a, i));
            text = g_string_free(s, FALSE);
        } else if (json_node_get_value_type(n) == G_TYPE_STRING) {
            text = g_strdup(json_node_get_string(n));
        } else {
            text = json_to_string(n, FALSE);
        }
        printf("    %s: %s\n", (const char *)l->data, text);
    }
}

void vdq_print(JsonNode *node, bool pretty)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    json_generator_set_root(gen, node);
    json_generator_set_pretty(gen, pretty);
    json_generator_set_indent(gen, 4);
    g_autofree char *s = json_generator_to_data(gen, NULL);
    printf("%s\n", s);
}
