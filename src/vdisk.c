/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vdisk: the block layer without FUSE (info, map, snapshots, cat). */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vd-chain.h"
#include "vd-context.h"
#include "vd-error.h"
#include "vd-info.h"
#include "vd-log.h"
#include "vdisk-cmds.h"

static gboolean opt_json;
static char *opt_keyfile;
static char *opt_format;
static gboolean opt_confined;
static gboolean opt_force_share;
static gboolean opt_version;

static const GOptionEntry entries[] = {
    {"json", 0, 0, G_OPTION_ARG_NONE, &opt_json, "Machine-readable output (JSON)", NULL},
    {"keyfile", 'k', 0, G_OPTION_ARG_FILENAME, &opt_keyfile,
     "Passphrases for encrypted images (mode 0600 key file)", "PATH"},
    {"format", 'f', 0, G_OPTION_ARG_STRING, &opt_format, "Do not probe: open as FORMAT", "FORMAT"},
    {"force-share", 'U', 0, G_OPTION_ARG_NONE, &opt_force_share,
     "Open images that another process (QEMU) is writing", NULL},
    {"confined", 0, 0, G_OPTION_ARG_NONE, &opt_confined,
     "Backing files must lie in the image's directory", NULL},
    {"version", 'V', 0, G_OPTION_ARG_NONE, &opt_version, "Print the version and exit", NULL},
    G_OPTION_ENTRY_NULL,
};

static VdImage *open_image(const char *path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    g_autoptr(VdContext) ctx = vd_context_new(dir, error);
    if (ctx == NULL)
        return NULL;
    ctx->backing_policy = opt_confined ? VD_BACKING_CONFINED : VD_BACKING_ANY;
    ctx->force_share = opt_force_share;
    ctx->open_locked = true; /* like qemu-img info: no key needed to look */
    if (opt_keyfile && !vd_context_load_keyfile(ctx, opt_keyfile, error))
        return NULL;
    VdOpenOptions o = {.read_only = true, .format = opt_format};
    return vd_image_open(ctx, path, &o, error);
}

static char *human_size(uint64_t v)
{
    return g_format_size_full(v, G_FORMAT_SIZE_IEC_UNITS);
}

static void print_snapshots_text(GPtrArray *snaps)
{
    printf("Snapshot list:\n%-10s %-20s %15s %20s\n", "ID", "TAG", "VM SIZE", "DATE");
    for (guint i = 0; i < snaps->len; i++) {
        VdSnapshotInfo *s = g_ptr_array_index(snaps, i);
        g_autoptr(GDateTime) dt = g_date_time_new_from_unix_local(s->date_sec);
        g_autofree char *date = dt ? g_date_time_format(dt, "%Y-%m-%d %H:%M:%S") : g_strdup("?");
        g_autofree char *vm = human_size(s->vm_state_size);
        printf("%-10s %-20s %15s %20s\n", s->id, s->name, vm, date);
    }
}

static void snapshots_json(GString *out, GPtrArray *snaps)
{
    g_string_append(out, "[");
    for (guint i = 0; i < snaps->len; i++) {
        VdSnapshotInfo *s = g_ptr_array_index(snaps, i);
        g_string_append(out, i ? ", {\"id\": " : "{\"id\": ");
        vd_json_string(out, s->id);
        g_string_append(out, ", \"name\": ");
        vd_json_string(out, s->name);
        g_string_append_printf(out,
                               ", \"date_sec\": %" G_GINT64_FORMAT ", \"date_nsec\": %u, "
                               "\"virtual_size\": %" G_GUINT64_FORMAT
                               ", \"vm_state_size\": %" G_GUINT64_FORMAT "}",
                               s->date_sec, s->date_nsec, s->virtual_size, s->vm_state_size);
    }
    g_string_append(out, "]");
}

static int cmd_info(VdImage *img)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) snaps = vd_image_snapshots(img, &err);
    if (snaps == NULL) {
        fprintf(stderr, "vdisk: %s\n", err->message);
        return 1;
    }
    g_autoptr(VdInfo) details = vd_info_describe(img);
    uint64_t size = vd_image_size(img), used = vd_image_host_bytes(img);
    if (opt_json) {
        GString *o = g_string_new("{\"filename\": ");
        vd_json_string(o, img->path);
        g_string_append(o, ", \"format\": ");
        vd_json_string(o, img->driver->name);
        g_string_append_printf(
            o, ", \"virtual_size\": %" G_GUINT64_FORMAT ", \"actual_size\": %" G_GUINT64_FORMAT,
            size, used);
        if (img->backing_name) {
            g_string_append(o, ", \"backing_filename\": ");
            vd_json_string(o, img->backing_name);
        }
        g_string_append(o, ", \"backing_chain\": [");
        for (VdImage *b = img->backing; b; b = b->backing) {
            if (b != img->backing)
                g_string_append(o, ", ");
            g_string_append(o, "{\"filename\": ");
            vd_json_string(o, b->path);
            g_string_append(o, ", \"format\": ");
            vd_json_string(o, b->driver->name);
            g_string_append_printf(o, ", \"virtual_size\": %" G_GUINT64_FORMAT "}",
                                   vd_image_size(b));
        }
        g_string_append(o, "], \"format_specific\": ");
        vd_info_to_json(details, o);
        g_string_append(o, ", \"snapshots\": ");
        snapshots_json(o, snaps);
        g_string_append(o, "}\n");
        fputs(o->str, stdout);
        g_string_free(o, TRUE);
        return 0;
    }
    g_autofree char *hs = human_size(size), *hu = human_size(used);
    printf("image: %s\nfile format: %s\n", img->path, img->driver->name);
    printf("virtual size: %s (%" G_GUINT64_FORMAT " bytes)\ndisk size: %s\n", hs, size, hu);
    if (img->backing_name)
        printf("backing file: %s\n", img->backing_name);
    for (VdImage *b = img->backing; b; b = b->backing)
        printf("backing chain: %s (%s)\n", b->path, b->driver->name);
    if (details->entries->len > 0) {
        printf("Format specific information:\n");
        for (guint i = 0; i < details->entries->len; i++) {
            const VdInfoEntry *e = g_ptr_array_index(details->entries, i);
            g_autofree char *v = vd_info_entry_to_string(e);
            printf("    %s: %s\n", e->key, v);
        }
    }
    if (snaps->len > 0)
        print_snapshots_text(snaps);
    return 0;
}

/* A run with one answer, in qemu-img map's terms. */
typedef struct {
    uint64_t start, length, offset;
    unsigned depth;
    bool present, zero, data, has_offset;
    const char *file;
} MapRun;

static void map_emit(const MapRun *r, bool first)
{
    if (opt_json) {
        printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64 ", \"depth\": %u, "
               "\"present\": %s, \"zero\": %s, \"data\": %s",
               first ? "[" : ",\n", r->start, r->length, r->depth, r->present ? "true" : "false",
               r->zero ? "true" : "false", r->data ? "true" : "false");
        if (r->has_offset)
            printf(", \"offset\": %" PRIu64, r->offset);
        printf("}");
    } else if (r->data && r->has_offset) {
        printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", r->start, r->length, r->offset,
               r->file);
    }
}

static int cmd_map(VdImage *img)
{
    uint64_t size = vd_image_size(img), off = 0;
    MapRun cur = {0};
    bool have = false, first = true;
    if (!opt_json)
        printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    while (off < size) {
        VdChainExtent e;
        g_autoptr(GError) err = NULL;
        if (!vd_chain_status(img, off, size - off, VD_STATUS_WANT_ZERO, &e, &err)) {
            fprintf(stderr, "vdisk: %s\n", err->message);
            return 1;
        }
        VdImage *layer = img;
        for (unsigned d = 0; d < e.depth && layer->backing; d++)
            layer = layer->backing;
        MapRun r = {
            .start = off,
            .length = e.length,
            .depth = e.depth,
            .present = e.state != VD_EXTENT_UNALLOCATED,
            .zero = e.state == VD_EXTENT_ZERO || e.state == VD_EXTENT_UNALLOCATED,
            .data = vd_chain_extent_is_data(&e),
            .has_offset = e.state == VD_EXTENT_DATA,
            .offset = e.host_offset,
            .file = layer->path,
        };
        if (have && cur.depth == r.depth && cur.present == r.present && cur.zero == r.zero &&
            cur.data == r.data && cur.has_offset == r.has_offset && cur.file == r.file &&
            (!r.has_offset || cur.offset + cur.length == r.offset)) {
            cur.length += r.length;
        } else {
            if (have) {
                map_emit(&cur, first);
                first = false;
            }
            cur = r;
            have = true;
        }
        off += e.length;
    }
    if (have)
        map_emit(&cur, first);
    if (opt_json)
        printf(first && !have ? "[]\n" : "]\n");
    return 0;
}

static int cmd_snapshots(VdImage *img)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(GPtrArray) snaps = vd_image_snapshots(img, &err);
    if (snaps == NULL) {
        fprintf(stderr, "vdisk: %s\n", err->message);
        return 1;
    }
    if (opt_json) {
        GString *o = g_string_new(NULL);
        snapshots_json(o, snaps);
        printf("%s\n", o->str);
        g_string_free(o, TRUE);
    } else {
        print_snapshots_text(snaps);
    }
    return 0;
}

/* Write the raw disk (or one snapshot of it) to stdout: a scriptable view. */
static int cmd_cat(VdImage *img)
{
    uint64_t size = vd_image_size(img), off = 0;
    g_autofree uint8_t *buf = g_malloc(1 << 20);
    while (off < size) {
        size_t n = (size_t)MIN(size - off, (uint64_t)(1 << 20));
        g_autoptr(GError) err = NULL;
        if (!vd_image_pread(img, buf, n, off, &err)) {
            fprintf(stderr, "vdisk: %s\n", err->message);
            return 1;
        }
        if (fwrite(buf, 1, n, stdout) != n) {
            perror("vdisk: write");
            return 1;
        }
        off += n;
    }
    return 0;
}

/* The driver table: name, capabilities, description. */
static int cmd_formats(void)
{
    for (const VdDriver *const *d = vd_drivers; *d != NULL; d++) {
        const VdDriver *drv = *d;
        printf("%-18s %-5s %-7s %-9s %s\n", drv->name, (drv->caps & VD_CAP_WRITE) ? "rw" : "ro",
               (drv->caps & VD_CAP_BACKING) ? "backing" : "-",
               (drv->caps & VD_CAP_SNAPSHOTS) ? "snapshots" : "-", drv->description);
    }
    return 0;
}

int main(int argc, char *argv[])
{
    g_autoptr(GOptionContext) oc = g_option_context_new("COMMAND IMAGE [SNAPSHOT]");
    g_option_context_set_summary(
        oc, "Commands:\n"
            "  info IMAGE        format, sizes, backing chain, format details, snapshots\n"
            "  map IMAGE         allocation map (like qemu-img map)\n"
            "  snapshots IMAGE   the internal snapshot table\n"
            "  check IMAGE       read-only consistency check (like qemu-img check)\n"
            "  partitions IMAGE  the partition table, numbered as .partitions/ shows it\n"
            "  cat IMAGE [SNAP]  the raw disk (or one snapshot) on stdout\n"
            "  formats           the supported formats");
    g_option_context_add_main_entries(oc, entries, NULL);
    g_autoptr(GError) err = NULL;
    if (!g_option_context_parse(oc, &argc, &argv, &err)) {
        fprintf(stderr, "vdisk: %s\n", err->message);
        return 2;
    }
    if (opt_version) {
        printf("vdisk %s\n", PACKAGE_VERSION);
        return 0;
    }
    vd_log_init("vdisk", false);
    if (argc == 2 && strcmp(argv[1], "formats") == 0)
        return cmd_formats();
    if (argc < 3 || (argc > 3 && strcmp(argv[1], "cat") != 0) || argc > 4) {
        g_autofree char *help = g_option_context_get_help(oc, TRUE, NULL);
        fputs(help, stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "info") && strcmp(cmd, "map") && strcmp(cmd, "snapshots") &&
        strcmp(cmd, "cat") && strcmp(cmd, "check") && strcmp(cmd, "partitions")) {
        fprintf(stderr,
                "vdisk: unknown command '%s' (info, map, snapshots, check, partitions, cat)\n",
                cmd);
        return 2;
    }
    g_autoptr(VdImage) img = open_image(argv[2], &err);
    if (img == NULL) {
        fprintf(stderr, "vdisk: %s\n", err->message);
        return 1;
    }
    if (strcmp(cmd, "info") == 0)
        return cmd_info(img);
    if (strcmp(cmd, "map") == 0)
        return cmd_map(img);
    if (strcmp(cmd, "snapshots") == 0)
        return cmd_snapshots(img);
    if (strcmp(cmd, "check") == 0)
        return vdisk_cmd_check(img);
    if (strcmp(cmd, "partitions") == 0)
        return vdisk_cmd_partitions(img);
    if (argc == 4) {
        g_autoptr(GPtrArray) snaps = vd_image_snapshots(img, &err);
        const char *id = NULL;
        for (guint i = 0; snaps && i < snaps->len; i++) {
            VdSnapshotInfo *s = g_ptr_array_index(snaps, i);
            if (strcmp(s->id, argv[3]) == 0 || g_strcmp0(s->name, argv[3]) == 0)
                id = s->id;
        }
        if (id == NULL) {
            fprintf(stderr, "vdisk: %s: no snapshot '%s'\n", img->name, argv[3]);
            return 1;
        }
        g_autoptr(VdImage) snap = vd_image_open_snapshot(img, id, &err);
        if (snap == NULL) {
            fprintf(stderr, "vdisk: %s\n", err->message);
            return 1;
        }
        return cmd_cat(snap);
    }
    return cmd_cat(img);
}
