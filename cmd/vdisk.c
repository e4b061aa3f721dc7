/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vdisk: the block layer without FUSE (info, map, snapshots, cat). */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "src/vd-chain.h"
#include "src/vd-context.h"
#include "src/vd-error.h"
#include "src/vd-file.h"
#include "src/vd-info.h"
#include "src/vd-log.h"
#include "cmd/vdisk-cmds.h"
#include "cmd/vdisk-qemu.h"

static gboolean opt_json;
static char *opt_output;
static gboolean opt_backing_chain;
static char *opt_keyfile;
static char *opt_format;
static gboolean opt_confined;
static gboolean opt_force_share;
static gboolean opt_version;

static const GOptionEntry entries[] = {
    {"json", 0, 0, G_OPTION_ARG_NONE, &opt_json, "Machine-readable output (qemu-img's JSON)", NULL},
    {"output", 0, 0, G_OPTION_ARG_STRING, &opt_output,
     "Output as qemu-img spells it: human or json", "FORMAT"},
    {"backing-chain", 0, 0, G_OPTION_ARG_NONE, &opt_backing_chain,
     "info: every image of the backing chain (a JSON list)", NULL},
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

static VdImage *open_image(const char *path, bool for_check, GError **error)
{
    /* Confined to the image's directory (an archive's, for ARCHIVE/MEMBER). */
    g_autofree char *dir = vd_file_directory_of(path);
    g_autoptr(VdContext) ctx = vd_context_new(dir, error);
    if (ctx == NULL)
        return NULL;
    ctx->backing_policy = opt_confined ? VD_BACKING_CONFINED : VD_BACKING_ANY;
    ctx->force_share = opt_force_share;
    ctx->open_locked = true; /* like qemu-img info: no key needed to look */
    if (opt_keyfile && !vd_context_load_keyfile(ctx, opt_keyfile, error))
        return NULL;
    VdOpenOptions o = {.read_only = true, .format = opt_format, .for_check = for_check};
    return vd_image_open(ctx, path, &o, error);
}

static int fail(GError *err)
{
    fprintf(stderr, "vdisk: %s\n", err->message);
    return 1;
}

/* qemu-img info: one object, or with --backing-chain a list of every
 * layer's, each named as qemu-img names it. */
static int cmd_info(VdImage *img, const char *filename)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(JsonArray) chain = json_array_new();
    g_autofree char *name = g_strdup(filename);
    for (VdImage *layer = img; layer != NULL; layer = opt_backing_chain ? layer->backing : NULL) {
        JsonNode *info = vdq_image_info(layer, name, &err);
        if (info == NULL)
            return fail(err);
        json_array_add_element(chain, info);
        char *next = layer->backing_name != NULL ? vdq_full_backing_name(name, layer->backing_name)
                     : layer->backing != NULL    ? g_strdup(layer->backing->path)
                                                 : NULL;
        g_free(name);
        name = next;
    }
    if (opt_json) {
        if (opt_backing_chain) {
            g_autoptr(JsonNode) root = json_node_init_array(json_node_alloc(), chain);
            vdq_print(root, true);
        } else {
            vdq_print(json_array_get_element(chain, 0), true);
        }
        return 0;
    }
    /* The layers as opened (host path, driver), which qemu-img does not
     * print: where a probe or a search found the backing file. */
    g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
    for (VdImage *b = img->backing; b != NULL && !opt_backing_chain; b = b->backing)
        g_ptr_array_add(lines, g_strdup_printf("backing chain: %s (%s)", b->path, b->driver->name));
    g_ptr_array_add(lines, NULL);
    for (guint i = 0; i < json_array_get_length(chain); i++) {
        if (i > 0)
            printf("\n");
        vdq_print_info_text(json_array_get_element(chain, i), (const char *const *)lines->pdata);
    }
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
        /* One entry a line, as qemu-img prints them: line-oriented tools
         * that read qemu-img's map read ours. */
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "start");
        json_builder_add_int_value(b, (gint64)r->start);
        json_builder_set_member_name(b, "length");
        json_builder_add_int_value(b, (gint64)r->length);
        json_builder_set_member_name(b, "depth");
        json_builder_add_int_value(b, r->depth);
        json_builder_set_member_name(b, "present");
        json_builder_add_boolean_value(b, r->present);
        json_builder_set_member_name(b, "zero");
        json_builder_add_boolean_value(b, r->zero);
        json_builder_set_member_name(b, "data");
        json_builder_add_boolean_value(b, r->data);
        if (r->has_offset) {
            json_builder_set_member_name(b, "offset");
            json_builder_add_int_value(b, (gint64)r->offset);
        }
        json_builder_end_object(b);
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        g_autofree char *text = json_to_string(root, FALSE);
        printf("%s%s", first ? "[" : ",\n", text);
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
    bool all_present = img->backing == NULL && !vdq_supports_backing(img->driver->name);
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
            .present = all_present || e.state != VD_EXTENT_UNALLOCATED,
            .zero = e.state == VD_EXTENT_ZERO || e.state == VD_EXTENT_UNALLOCATED,
            .data = vd_chain_extent_is_data(&e),
            .has_offset = e.state == VD_EXTENT_DATA,
            .offset = e.host_offset,
            .file = layer->path,
        };
        /* A raw file's holes are still at their own offset: qemu-img
         * gives it (data stays false). */
        if (e.state == VD_EXTENT_ZERO && strcmp(layer->driver->name, "raw") == 0) {
            r.has_offset = true;
            r.offset = off;
        }
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
    g_autoptr(JsonNode) list = vdq_snapshot_list(snaps);
    if (opt_json)
        vdq_print(list, true);
    else
        vdq_print_snapshots_text(list);
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
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_array(b);
    for (const VdDriver *const *d = vd_drivers; *d != NULL; d++) {
        const VdDriver *drv = *d;
        if (!opt_json) {
            printf("%-18s %-5s %-7s %-9s %s\n", drv->name, (drv->caps & VD_CAP_WRITE) ? "rw" : "ro",
                   (drv->caps & VD_CAP_BACKING) ? "backing" : "-",
                   (drv->caps & VD_CAP_SNAPSHOTS) ? "snapshots" : "-", drv->description);
            continue;
        }
        json_builder_begin_object(b);
        vdq_add_string(b, "name", drv->name);
        json_builder_set_member_name(b, "writable");
        json_builder_add_boolean_value(b, (drv->caps & VD_CAP_WRITE) != 0);
        json_builder_set_member_name(b, "capabilities");
        json_builder_begin_array(b);
        if (drv->caps & VD_CAP_WRITE)
            json_builder_add_string_value(b, "write");
        if (drv->caps & VD_CAP_BACKING)
            json_builder_add_string_value(b, "backing");
        if (drv->caps & VD_CAP_SNAPSHOTS)
            json_builder_add_string_value(b, "snapshots");
        json_builder_end_array(b);
        vdq_add_string(b, "description", drv->description);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    if (opt_json) {
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        vdq_print(root, true);
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
    if (opt_output != NULL) {
        if (strcmp(opt_output, "json") == 0) {
            opt_json = TRUE;
        } else if (strcmp(opt_output, "human") == 0) {
            opt_json = FALSE;
        } else {
            fprintf(stderr, "vdisk: --output must be human or json, not '%s'\n", opt_output);
            return 2;
        }
    }
    if (opt_version) {
        if (opt_json) {
            g_autoptr(JsonBuilder) b = json_builder_new();
            json_builder_begin_object(b);
            vdq_add_string(b, "version", PACKAGE_VERSION);
            json_builder_end_object(b);
            g_autoptr(JsonNode) root = json_builder_get_root(b);
            vdq_print(root, true);
        } else {
            printf("vdisk %s\n", PACKAGE_VERSION);
        }
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
    g_autoptr(VdImage) img = open_image(argv[2], strcmp(cmd, "check") == 0, &err);
    if (img == NULL) {
        fprintf(stderr, "vdisk: %s\n", err->message);
        return 1;
    }
    if (strcmp(cmd, "info") == 0)
        return cmd_info(img, argv[2]);
    if (strcmp(cmd, "map") == 0)
        return cmd_map(img);
    if (strcmp(cmd, "snapshots") == 0)
        return cmd_snapshots(img);
    if (strcmp(cmd, "check") == 0)
        return vdisk_cmd_check(img, argv[2], opt_json);
    if (strcmp(cmd, "partitions") == 0)
        return vdisk_cmd_partitions(img, opt_json);
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
