/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * parallels: a lone expanding Parallels .hds image ("WithoutFreeSpace" or
 * "WithouFreSpacExt"), read and write. Bundles (NAME.hdd/ directories)
 * are the parallels-bundle driver; both share parallels-hds.c.
 */
#include "config.h"

#include <string.h>

#include "formats/parallels.h"
#include "src/vd-error.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "src/vd-io.h"

static int parallels_probe(const VdProbe *probe)
{
    return prl_hds_magic(probe->head, probe->head_len) ? VD_PROBE_MAGIC : VD_PROBE_NO;
}

static bool parallels_open(VdImage *img, GError **error)
{
    PrlHds *h = g_new0(PrlHds, 1);
    if (!prl_hds_open(h, img->fd, false, img->name, error)) {
        prl_hds_clear(h);
        g_free(h);
        return false;
    }
    if (!img->read_only)
        prl_hds_check_layout(h, img);
    img->size = h->size;
    img->opaque = h;
    return true;
}

static bool parallels_peek(VdImage *img, GError **error)
{
    PrlHds h;
    bool ok = prl_hds_peek(&h, img->fd, img->name, error);
    img->size = h.size;
    prl_hds_clear(&h);
    return ok;
}

static void parallels_close(VdImage *img)
{
    PrlHds *h = img->opaque;
    prl_hds_clear(h);
    g_free(h);
    img->opaque = NULL;
}

static bool parallels_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                                   VdExtent *ext, GError **error)
{
    PrlHds *h = img->opaque;
    bool allocated;
    prl_hds_status(h, offset, length, &allocated, &ext->host_offset, &ext->length);
    ext->state = allocated ? VD_EXTENT_DATA : VD_EXTENT_UNALLOCATED;
    ext->fd = img->fd;
    return true;
}

static bool parallels_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset,
                             GError **error)
{
    return prl_hds_write(img, img->opaque, buf, len, offset, false, NULL, NULL, error);
}

static bool parallels_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                                   GError **error)
{
    return prl_hds_write(img, img->opaque, NULL, length, offset, flags & VD_ZERO_MAY_UNMAP, NULL,
                         NULL, error);
}

static bool parallels_flush(VdImage *img, GError **error)
{
    return vd_host_fdatasync(img->fd, img->name, error);
}

void prl_describe_hds(const PrlHds *h, VdInfo *info, const char *prefix)
{
    g_autofree char *k = NULL;
#define KEY(s) (g_free(k), k = g_strconcat(prefix, s, NULL))
    if (h->plain) {
        vd_info_add_str(info, KEY("type"), "plain");
        return;
    }
    vd_info_add_str(info, KEY("type"), "expanding");
    vd_info_add_str(info, KEY("magic"), "%s", h->ext_magic ? PRL_MAGIC_EXT : PRL_MAGIC_OLD);
    vd_info_add_u64(info, KEY("cluster_size"), h->cluster);
    vd_info_add_u64(info, KEY("allocated_clusters"),
                    __atomic_load_n(&h->allocated, __ATOMIC_RELAXED));
    vd_info_add_bool(info, KEY("in_use"), h->was_in_use);
    if (h->cylinders != 0 && h->heads != 0) {
        vd_info_add_u64(info, KEY("cylinders"), h->cylinders);
        vd_info_add_u64(info, KEY("heads"), h->heads);
    }
    if (h->ext_off != 0)
        vd_info_add_bool(info, KEY("format_extension"), true);
#undef KEY
}

static void parallels_describe(VdImage *img, VdInfo *info)
{
    prl_describe_hds(img->opaque, info, "");
}

static bool parallels_check(VdImage *img, VdCheckReport *report, GError **error)
{
    return prl_hds_check_report(img->opaque, report, error);
}

const VdDriver vd_parallels_driver = {
    .name = "parallels",
    .description = "Parallels expanding disk image (.hds)",
    .caps = VD_CAP_WRITE | VD_CAP_SERIAL_WRITES,
    .probe = parallels_probe,
    .open = parallels_open,
    .close = parallels_close,
    .peek = parallels_peek,
    .pwrite = parallels_pwrite,
    .block_status = parallels_block_status,
    .flush = parallels_flush,
    .write_zeroes = parallels_write_zeroes,
    .describe = parallels_describe,
    .check = parallels_check,
};
