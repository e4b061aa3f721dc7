/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vdisk partitions: the partition table vdiskfs shows under .partitions/,
 * numbered as Linux numbers them, without mounting. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "vd-error.h"
#include "vd-partition.h"
#include "vdisk-cmds.h"

int vdisk_cmd_partitions(VdImage *img)
{
    g_autoptr(GError) err = NULL;
    g_autoptr(VdPartitionTable) t = vd_partition_table_read(img, img->logical_sector, &err);
    if (t == NULL) {
        fprintf(stderr, "vdisk: %s\n", err->message);
        return 1;
    }
    if (t->error != NULL)
        fprintf(stderr, "vdisk: %s: %s\n", img->name, t->error);
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
