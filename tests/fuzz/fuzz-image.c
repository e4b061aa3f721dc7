/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target for one format driver: open + block_status over the
 * whole disk + bounded reads + the snapshot table and each snapshot.
 * The format comes from VD_FUZZ_FORMAT (make fuzz-smoke sets it), so one
 * binary is the target for every driver in the table.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/vd-chain.h"
#include "src/vd-image.h"
#include "src/vd-info.h"

#define READ_BUDGET   (4u << 20) /* bytes read per input, to keep runs fast */
#define STATUS_BUDGET 4096       /* block_status calls per input */

static VdContext *fuzz_ctx;
static char *fuzz_path;
static const char *fuzz_format;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_format = getenv("VD_FUZZ_FORMAT");
    if (fuzz_format == NULL || vd_driver_find(fuzz_format) == NULL) {
        fprintf(stderr, "set VD_FUZZ_FORMAT to a driver name\n");
        exit(2);
    }
    char *dir = g_dir_make_tmp("vdfuzz-XXXXXX", NULL);
    fuzz_ctx = vd_context_new(dir, NULL);
    fuzz_path = g_build_filename(dir, "input.img", NULL);
    g_free(dir);
    return 0;
}

static void exercise(VdImage *img)
{
    uint64_t size = vd_image_size(img), off = 0, budget = READ_BUDGET;
    g_autofree uint8_t *buf = g_malloc(64 * 1024);
    for (unsigned n = 0; off < size && n < STATUS_BUDGET; n++) {
        VdChainExtent e;
        g_autoptr(GError) err = NULL;
        if (!vd_chain_status(img, off, size - off, VD_STATUS_WANT_ZERO, &e, &err))
            break;
        if (vd_chain_extent_is_data(&e) && budget > 0) {
            size_t len = (size_t)MIN(MIN(e.length, (uint64_t)64 * 1024), budget);
            g_autoptr(GError) rerr = NULL;
            vd_image_pread(img, buf, len, off, &rerr);
            budget -= len;
        }
        off += e.length;
    }
    g_autoptr(GError) err = NULL;
    vd_image_pread(img, buf, 4096, 0, &err);
    uint64_t pos;
    g_clear_error(&err);
    vd_chain_seek(img, 0, SEEK_HOLE, &pos, &err);
    vd_info_free(vd_info_describe(img));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = open(fuzz_path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    close(fd);
    VdOpenOptions o = {.read_only = true, .format = fuzz_format};
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = vd_image_open(fuzz_ctx, fuzz_path, &o, &err);
    if (img == NULL)
        return 0;
    exercise(img);
    g_autoptr(GPtrArray) snaps = vd_image_snapshots(img, &err);
    for (guint i = 0; snaps != NULL && i < snaps->len && i < 8; i++) {
        VdSnapshotInfo *s = g_ptr_array_index(snaps, i);
        g_autoptr(GError) serr = NULL;
        g_autoptr(VdImage) snap = vd_image_open_snapshot(img, s->id, &serr);
        if (snap != NULL)
            exercise(snap);
    }
    return 0;
}
