/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vdisk partitions: the partition table vdiskfs shows under .partitions/,
 * numbered as Linux numbers them, without mounting. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "src/vd-error.h"
#include "src/vd-partition.h"
#include "cmd/vdisk-cmds.h"
#include "cmd/vdisk-qemu.h"

/* {"type": "mbr"|"gpt"|null, "sector-size", "partitions": [...]}: numbers
 * as numbers, names as valid UTF-8. */
static void print_json(const VdPartitionTable *t)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "type");
    if (t->kind != NULL)
        json_builder_add_string_value(b, t->kind);
    else
        json_builder_add_null_value(b);
    if (t->error != NULL)
        vdq_add_string(b, "error", t->error);
    json_builder_set_member_name(b, "sector-size");
    json_builder_add_int_value(b, t->sector_size);
    json_builder_set_member_name(b, "partitions");
    json_builder_begin_array(b);
    for (guint i = 0; t->kind != NULL && i < t->parts->len; i++) {
        const VdPartition *p = g_ptr_array_index(t->parts, i);
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "number");
        json_builder_add_int_value(b, p->number);
        json_builder_set_member_name(b, "start");
        json_builder_add_int_value(b, (gint64)p->start);
        json_builder_set_member_name(b, "length");
        json_builder_add_int_value(b, (gint64)p->length);
        json_builder_set_member_name(b, "sectors");
        json_builder_add_int_value(b, (gint64)(p->length / t->sector_size));
        vdq_add_string(b, "type", p->type);
        if (p->name != NULL)
            vdq_add_string(b, "name", p->name);
        if (p->uuid != NULL)
            vdq_add_string(b, "uuid", p->uuid);
        if (strcmp(t->kind, "mbr") == 0) {
            json_builder_set_member_name(b, "bootable");
            json_builder_add_boolean_value(b, p->bootable);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    vdq_print(root, true);
}

int vdisk_cmd_partitions(VdImage *img, bool json)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VdPartitionTable) t = vd_partition_table_read(img, img->logical_sector, &err);
    if (t == NULL) {
        fprintf(stderr, "vdisk: %s\n", err->message);
        return 1;
    }
    if (t->error != NULL)
        fprintf(stderr, "vdisk: %s: %s\n", img->name, t->error);
    if (json) {
        print_json(t);
        return 0;
    }
    if (t->kind == NULL) {
        printf("No partition table.\n");
        return 0;
    }
    printf("Partition table: %s, %u-byte sectors\n", t->kind, t->sector_size);
    printf("%-4s %14s %14s %14s %-36s %s\n", "part", "start", "length", "sectors", "type",
           strcmp(t->kind, "gpt") == 0 ? "name" : "boot");
    for (guint i = 0; i < t->parts->len; i++) {
        const VdPartition *p = g_ptr_array_index(t->parts, i);
        printf("p%-3u %14" G_GUINT64_FORMAT " %14" G_GUINT64_FORMAT " %14" G_GUINT64_FORMAT
               " %-36s %s\n",
               p->number, p->start, p->length, p->length / t->sector_size, p->type,
               p->name != NULL ? p->name
               : p->bootable   ? "*"
                               : "");
    }
    return 0;
}
