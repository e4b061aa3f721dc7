/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vdisk check: a read-only consistency report in qemu-img check's shape
 * and exit codes (0 clean, 1 check errors, 2 corruptions, 3 leaks only,
 * 63 no check for this format). */
#include "config.h"

#include <stdio.h>

#include "src/vd-error.h"
#include "src/vd-image.h"
#include "cmd/vdisk-cmds.h"
#include "cmd/vdisk-qemu.h"

static void print_text(const VdCheckReport *r)
{
    for (guint i = 0; i < r->lines->len; i++)
        printf("%s\n", (const char *)g_ptr_array_index(r->lines, i));
    if (r->corruptions == 0 && r->leaks == 0 && r->check_errors == 0)
        printf("No errors were found on the image.\n");
    if (r->corruptions > 0)
        printf("\n%" G_GUINT64_FORMAT " errors were found on the image.\n"
               "Data may be corrupted, or further writes to the image may corrupt it.\n",
               r->corruptions);
    if (r->leaks > 0)
        printf("\n%" G_GUINT64_FORMAT " leaked clusters were found on the image.\n"
               "This means waste of disk space, but no harm to data.\n",
               r->leaks);
    if (r->check_errors > 0)
        printf("\n%" G_GUINT64_FORMAT " internal errors have occurred during the check.\n",
               r->check_errors);
    if (r->total_clusters > 0 && r->allocated_clusters > 0) { /* as qemu-img */
        double t = (double)r->total_clusters;
        double a = r->allocated_clusters ? (double)r->allocated_clusters : 1;
        printf("%" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT
               " = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed clusters\n",
               r->allocated_clusters, r->total_clusters, 100.0 * (double)r->allocated_clusters / t,
               100.0 * (double)r->fragmented_clusters / a,
               100.0 * (double)r->compressed_clusters / a);
    }
    if (r->image_end_offset > 0)
        printf("Image end offset: %" G_GUINT64_FORMAT "\n", r->image_end_offset);
}

static void add_count(JsonBuilder *b, const char *key, uint64_t v)
{
    /* qemu-img check --output=json leaves out the counts that are zero,
     * check-errors excepted. */
    if (v == 0)
        return;
    json_builder_set_member_name(b, key);
    json_builder_add_int_value(b, (gint64)MIN(v, (uint64_t)G_MAXINT64));
}

static void print_json(const VdCheckReport *r, VdImage *img, const char *filename)
{
    /* The messages go to standard error, as qemu-img's driver checks
     * print them, so that standard output stays one JSON document. */
    for (guint i = 0; i < r->lines->len; i++)
        fprintf(stderr, "%s\n", (const char *)g_ptr_array_index(r->lines, i));
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    vdq_add_string(b, "filename", filename);
    vdq_add_string(b, "format", img->driver->name);
    json_builder_set_member_name(b, "check-errors");
    json_builder_add_int_value(b, (gint64)MIN(r->check_errors, (uint64_t)G_MAXINT64));
    add_count(b, "image-end-offset", r->image_end_offset);
    add_count(b, "corruptions", r->corruptions);
    add_count(b, "leaks", r->leaks);
    add_count(b, "total-clusters", r->total_clusters);
    add_count(b, "allocated-clusters", r->allocated_clusters);
    add_count(b, "fragmented-clusters", r->fragmented_clusters);
    add_count(b, "compressed-clusters", r->compressed_clusters);
    json_builder_end_object(b);
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    vdq_print(root, true);
}

int vdisk_cmd_check(VdImage *img, const char *filename, bool json)
{
    VdCheckReport r;
    g_autoptr(GError) err = NULL;
    bool ok = vd_image_check(img, &r, &err);
    int ret;
    if (!ok) {
        fprintf(stderr, "vdisk: %s\n", err->message);
        ret = vd_error_errno(err) == ENOTSUP ? 63 : 1;
    } else if (r.failed != 0) {
        /* Like qemu-img: the messages, then why it stopped; no summary
         * and (with --json) no document, as there are no counts. */
        for (guint i = 0; i < r.lines->len; i++)
            fprintf(stderr, "%s\n", (const char *)g_ptr_array_index(r.lines, i));
        fprintf(stderr, "vdisk: Check failed: %s\n", g_strerror(r.failed));
        ret = 1;
    } else {
        if (json)
            print_json(&r, img, filename);
        else
            print_text(&r);
        ret = r.check_errors ? 1 : r.corruptions ? 2 : r.leaks ? 3 : 0;
    }
    vd_check_report_clear(&r);
    return ret;
}
