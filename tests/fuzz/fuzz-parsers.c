/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target for the text parsers that take a whole buffer: the
 * VMDK descriptor, Parallels' DiskDescriptor.xml and DMG's plist. The
 * parser comes from VD_FUZZ_PARSER (vmdk-descriptor, parallels-xml,
 * dmg-plist); make fuzz-smoke runs each.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/dmg.h"
#include "formats/parallels.h"
#include "formats/vmdk.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum { P_VMDK, P_PARALLELS, P_DMG } parser;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *p = getenv("VD_FUZZ_PARSER");
    if (p != NULL && strcmp(p, "vmdk-descriptor") == 0)
        parser = P_VMDK;
    else if (p != NULL && strcmp(p, "parallels-xml") == 0)
        parser = P_PARALLELS;
    else if (p != NULL && strcmp(p, "dmg-plist") == 0)
        parser = P_DMG;
    else {
        fprintf(stderr, "set VD_FUZZ_PARSER to vmdk-descriptor, parallels-xml or dmg-plist\n");
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
    case P_DMG: {
        GPtrArray *blobs = NULL;
        if (dmg_plist_blkx("fuzz", (const char *)data, size, &blobs, &err) && blobs != NULL)
            g_ptr_array_unref(blobs);
        break;
    }
    }
    return 0;
}
