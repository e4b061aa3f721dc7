/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target for the text parsers that take a whole buffer: the
 * VMDK descriptor, Parallels' DiskDescriptor.xml and DMG's plist, and the
 * partition table reader (the input is a whole small disk). The parser
 * comes from VD_FUZZ_PARSER (vmdk-descriptor, parallels-xml, dmg-plist,
 * partition-table); make fuzz-smoke runs each.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/dmg.h"
#include "formats/parallels.h"
#include "formats/vmdk.h"
#include "src/vd-partition.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum { P_VMDK, P_PARALLELS, P_DMG, P_PARTITION } parser;

typedef struct {
    const uint8_t *data;
    size_t size;
} FuzzDisk;

static bool disk_read(void *opaque, void *buf, size_t len, uint64_t offset, GError **error)
{
    const FuzzDisk *d = opaque;
    if (offset > d->size || len > d->size - offset)
        abort(); /* the parser must stay inside the disk it was given */
    memcpy(buf, d->data + offset, len);
    return true;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *p = getenv("VD_FUZZ_PARSER");
    if (p != NULL && strcmp(p, "vmdk-descriptor") == 0)
        parser = P_VMDK;
    else if (p != NULL && strcmp(p, "parallels-xml") == 0)
        parser = P_PARALLELS;
    else if (p != NULL && strcmp(p, "dmg-plist") == 0)
        parser = P_DMG;
    else if (p != NULL && strcmp(p, "partition-table") == 0)
        parser = P_PARTITION;
    else {
        fprintf(stderr, "set VD_FUZZ_PARSER to vmdk-descriptor, parallels-xml, dmg-plist or "
                        "partition-table\n");
        exit(2);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GError) err = NULL;
    switch (parser) {
    case P_VMDK: {
        g_autoptr(VmdkDescriptor) d = vmdk_descriptor_parse((const char *)data, size, "fuzz", &err);
        if (d != NULL) {
            size_t n = 0;
            g_free(vmdk_descriptor_set_cid((const char *)data, size, 0x12345678, &n));
            (void)vmdk_descriptor_ddb(d, "ddb.adapterType");
        }
        break;
    }
    case P_PARALLELS: {
        PrlDescriptor *d = prl_descriptor_parse((const char *)data, size, "fuzz", &err);
        if (d != NULL)
            prl_descriptor_free(d);
        break;
    }
    case P_PARTITION: {
        FuzzDisk d = {data, size};
        VdPartitionTable *t = vd_partition_table_parse(disk_read, &d, size, 0, &err);
        for (guint i = 0; t != NULL && i < t->parts->len; i++) {
            const VdPartition *x = g_ptr_array_index(t->parts, i);
            if (x->length == 0 || x->start + x->length > size)
                abort();
        }
        vd_partition_table_free(t);
        break;
    }
    case P_DMG: {
        GPtrArray *blobs = NULL;
        if (dmg_plist_blkx("fuzz", (const char *)data, size, &blobs, &err) && blobs != NULL)
            g_ptr_array_unref(blobs);
        break;
    }
    }
    return 0;
}
