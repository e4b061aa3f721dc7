/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Making a new, empty qcow2 v3 image over a backing file (overlays), laid
 * out as docs/interop/qcow2.txt describes: the header and its extensions
 * and the backing file name in cluster 0, the refcount table in cluster
 * 1, one refcount block in cluster 2, the L1 table from cluster 3. Every
 * cluster is counted, so `qemu-img check` finds it clean; the qcow2
 * driver takes it from there.
 */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "formats/qcow2.h"
#include "formats/qcow2-create.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

#define CREATE_CLUSTER_BITS 16
#define CREATE_CLUSTER      (1u << CREATE_CLUSTER_BITS)
#define CREATE_REFCOUNT_ORD 4 /* 16-bit refcounts, QEMU's default */

static size_t put_ext(uint8_t *h, size_t pos, uint32_t type, const void *data, uint32_t len)
{
    vd_put_be32(h + pos, type);
    vd_put_be32(h + pos + 4, len);
    memcpy(h + pos + 8, data, len);
    return pos + 8 + ((len + 7) & ~7u);
}

bool qcow2_create(const char *path, const char *name, const VdCreateOptions *opts, GError **error)
{
    uint64_t size = opts->size;
    const char *backing = opts->backing, *backing_format = opts->backing_format;
    size_t ext_len = 0;
    const void *ext = opts->origin ? g_bytes_get_data(opts->origin, &ext_len) : NULL;
    uint64_t l2_span = (uint64_t)CREATE_CLUSTER * (CREATE_CLUSTER / 8);
    uint64_t l1_entries = (size + l2_span - 1) / l2_span;
    if (size == 0 || l1_entries * 8 > QCOW2_MAX_L1_BYTES) {
        vd_set_error(error, EFBIG, "%s: cannot make a qcow2 image of %" G_GUINT64_FORMAT " bytes",
                     name, size);
        return false;
    }
    size_t blen = backing ? strlen(backing) : 0, flen = backing_format ? strlen(backing_format) : 0;
    if (blen > QCOW2_MAX_BACKING_NAME || flen > 64 || ext_len > 4096) {
        vd_set_error(error, EINVAL, "%s: backing file name too long", name);
        return false;
    }
    uint64_t l1_clusters = MAX(1, (l1_entries * 8 + CREATE_CLUSTER - 1) / CREATE_CLUSTER);
    uint64_t clusters = 3 + l1_clusters;
    g_autofree uint8_t *img = g_malloc0((size_t)(clusters * CREATE_CLUSTER));

    uint8_t *h = img;
    vd_put_be32(h, QCOW2_MAGIC);
    vd_put_be32(h + 4, 3);
    vd_put_be32(h + 20, CREATE_CLUSTER_BITS);
    vd_put_be64(h + 24, size);
    vd_put_be32(h + 32, QCOW2_CRYPT_NONE);
    vd_put_be32(h + 36, (uint32_t)l1_entries);
    vd_put_be64(h + 40, 3ull * CREATE_CLUSTER);
    vd_put_be64(h + 48, 1ull * CREATE_CLUSTER);
    vd_put_be32(h + 56, 1);
    vd_put_be32(h + 96, CREATE_REFCOUNT_ORD);
    vd_put_be32(h + 100, QCOW2_HEADER_V3_MIN);
    size_t pos = QCOW2_HEADER_V3_MIN;
    if (flen > 0)
        pos = put_ext(h, pos, QCOW2_EXT_BACKING_FMT, backing_format, (uint32_t)flen);
    if (ext_len > 0)
        pos = put_ext(h, pos, QCOW2_EXT_ORIGIN, ext, (uint32_t)ext_len);
    pos = put_ext(h, pos, QCOW2_EXT_END, NULL, 0);
    if (blen > 0) {
        memcpy(h + pos, backing, blen);
        vd_put_be64(h + 8, pos);
        vd_put_be32(h + 16, (uint32_t)blen);
    }
    /* The refcount table's one entry, and every cluster counted once. */
    vd_put_be64(img + CREATE_CLUSTER, 2ull * CREATE_CLUSTER);
    for (uint64_t c = 0; c < clusters; c++)
        vd_put_be16(img + 2 * CREATE_CLUSTER + 2 * c, 1);

    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        vd_set_error_errno(error, errno, "%s", name);
        return false;
    }
    bool ok = vd_host_pwrite(fd, name, img, (size_t)(clusters * CREATE_CLUSTER), 0, error) &&
              vd_host_fdatasync(fd, name, error);
    close(fd);
    if (!ok)
        unlink(path);
    return ok;
}
