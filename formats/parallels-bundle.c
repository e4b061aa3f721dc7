/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * parallels-bundle: a Parallels Desktop disk, the directory NAME.hdd/
 * holding DiskDescriptor.xml and the .hds files it names, shown as one raw
 * disk. The disk is cut into storages (ranges [Start, End) in sectors),
 * each its own .hds; snapshots add a layer per storage, each image knowing
 * its parent by GUID. The current state reads through the chain of layers
 * from the top image down; the other images of the snapshot tree appear as
 * read-only snapshots.
 */
#include "config.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/parallels.h"
#include "src/vd-error.h"
#include "src/vd-file.h"
#include "src/vd-image.h"
#include "src/vd-info.h"
#include "src/vd-io.h"
#include "src/vd-lock.h"

#define DESCRIPTOR "DiskDescriptor.xml"

typedef struct {
    uint64_t start, end; /* bytes of the virtual disk */
    guint nlayers;
    PrlHds *layers; /* top first */
} PrlStorage;

typedef struct {
    PrlDescriptor *desc;
    char *top_guid; /* the image this view starts at */
    guint nstorages;
    PrlStorage *storages; /* sorted, contiguous from 0 */
} PrlBundle;

static void bundle_free(PrlBundle *b)
{
    if (b == NULL)
        return;
    for (guint i = 0; i < b->nstorages; i++) {
        for (guint j = 0; j < b->storages[i].nlayers; j++)
            prl_hds_clear(&b->storages[i].layers[j]);
        g_free(b->storages[i].layers);
    }
    g_free(b->storages);
    g_free(b->top_guid);
    prl_descriptor_free(b->desc);
    g_free(b);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(PrlBundle, bundle_free)

/* Read and parse dir/DiskDescriptor.xml (dirfd, or path when dirfd < 0). */
static PrlDescriptor *read_descriptor(int dirfd, const char *path, const char *name, GError **error)
{
    g_autofree char *xml_name = g_strdup_printf("%s/" DESCRIPTOR, name);
    /* O_NONBLOCK: a FIFO in its place must be refused, not waited on. */
    int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
    int fd = dirfd >= 0 ? openat(dirfd, DESCRIPTOR, flags) : open(path, flags);
    if (fd < 0) {
        vd_set_error_errno(error, errno, "%s", xml_name);
        return NULL;
    }
    struct stat st;
    PrlDescriptor *d = NULL;
    if (fstat(fd, &st) < 0) {
        vd_set_error_errno(error, errno, "%s", xml_name);
    } else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > PRL_MAX_DESCRIPTOR) {
        vd_set_error(error, EIO, "%s: not a regular file of at most %u bytes", xml_name,
                     PRL_MAX_DESCRIPTOR);
    } else {
        size_t len = (size_t)st.st_size;
        g_autofree char *buf = g_malloc(len + 1);
        if (vd_host_pread(fd, xml_name, buf, len, 0, false, error))
            d = prl_descriptor_parse(buf, len, xml_name, error);
    }
    close(fd);
    return d;
}

static int bundle_probe(const VdProbe *probe)
{
    if (!probe->is_dir)
        return VD_PROBE_NO;
    g_autofree char *xml = g_build_filename(probe->path, DESCRIPTOR, NULL);
    if (!g_file_test(xml, G_FILE_TEST_IS_REGULAR))
        return VD_PROBE_NO;
    g_autoptr(GError) err = NULL;
    g_autoptr(PrlDescriptor) d = read_descriptor(-1, xml, probe->basename, &err);
    /* A broken descriptor still claims the directory, so that opening it says why. */
    return d != NULL ? VD_PROBE_MAGIC : VD_PROBE_WEAK;
}

/* A file name from the descriptor: a plain name inside the bundle. */
static bool safe_file_name(const char *f)
{
    return f[0] != '\0' && strchr(f, '/') == NULL && strcmp(f, ".") != 0 && strcmp(f, "..") != 0;
}

static const PrlDescImage *storage_image(const PrlDescStorage *s, const char *guid)
{
    for (guint i = 0; i < s->images->len; i++) {
        const PrlDescImage *im = g_ptr_array_index(s->images, i);
        if (g_ascii_strcasecmp(im->guid, guid) == 0)
            return im;
    }
    return NULL;
}

static bool open_layer(VdImage *img, const PrlDescImage *im, bool writable, PrlHds *h,
                       GError **error)
{
    g_autofree char *name = g_strdup_printf("%s/%s", img->name, im->file);
    if (!safe_file_name(im->file)) {
        vd_set_error(error, EIO, "%s: image file name \"%s\" leaves the bundle", img->name,
                     im->file);
        return false;
    }
    bool plain = g_ascii_strcasecmp(im->type, "Plain") == 0;
    if (!plain && g_ascii_strcasecmp(im->type, "Compressed") != 0) {
        vd_set_error(error, ENOTSUP, "%s: image type \"%s\" is not supported", name, im->type);
        return false;
    }
    /* The top layer is written, the layers below are only read and must
     * not change: QEMU's locks say so. A top layer the host will not let us
     * write makes the image read-only. */
    g_autofree char *path = vd_image_sibling_path(img, im->file);
    int fd = vd_image_open_member(img, path, "layer", writable ? VD_FILE_WRITE : 0, error);
    if (fd < 0)
        return false;
    if (plain)
        return prl_hds_open_plain(h, fd, true, name, error);
    return prl_hds_open(h, fd, true, name, error);
}

/* Open the layers of every storage for the chain from top_guid (NULL: the
 * current top) down. writable: the top layers read-write. */
static PrlBundle *bundle_load(VdImage *img, int dirfd, const char *top_guid, bool *writable,
                              GError **error)
{
    g_autoptr(PrlBundle) b = g_new0(PrlBundle, 1);
    b->desc = read_descriptor(dirfd, NULL, img->name, error);
    if (b->desc == NULL)
        return NULL;
    PrlDescriptor *d = b->desc;
    if (d->encryption_engine != NULL && d->encryption_engine[0] != '\0' &&
        g_ascii_strcasecmp(d->encryption_engine, PRL_NULL_GUID) != 0) {
        vd_set_error(error, ENOTSUP, "%s: encrypted Parallels disks are not supported", img->name);
        return NULL;
    }
    if (d->logic_sector_size != 0 && d->logic_sector_size != 512) {
        vd_set_error(error, ENOTSUP, "%s: logical sector size %u is not supported", img->name,
                     d->logic_sector_size);
        return NULL;
    }
    g_autoptr(GPtrArray) chain = prl_descriptor_chain(d, top_guid, img->name, error);
    if (chain == NULL)
        return NULL;
    b->top_guid = g_strdup(g_ptr_array_index(chain, 0));

    /* Storages in disk order, contiguous, covering the disk. */
    b->nstorages = d->storages->len;
    b->storages = g_new0(PrlStorage, b->nstorages);
    uint64_t disk = d->disk_size * 512, pos = 0;
    for (guint i = 0; i < b->nstorages; i++) {
        const PrlDescStorage *ds = g_ptr_array_index(d->storages, i);
        if (ds->start * 512 != pos || pos >= disk) {
            vd_set_error(error, EIO,
                         "%s: storage %u starts at sector %" G_GUINT64_FORMAT
                         ", not at sector %" G_GUINT64_FORMAT " of the %" G_GUINT64_FORMAT
                         "-sector disk",
                         img->name, i, ds->start, pos / 512, d->disk_size);
            return NULL;
        }
        if (i + 1 == b->nstorages && ds->end * 512 < disk) {
            vd_set_error(error, EIO,
                         "%s: storages end at sector %" G_GUINT64_FORMAT
                         ", short of the %" G_GUINT64_FORMAT "-sector disk",
                         img->name, ds->end, d->disk_size);
            return NULL;
        }
        PrlStorage *s = &b->storages[i];
        s->start = pos;
        s->end = vd_min_u64(ds->end * 512, disk);
        pos = ds->end * 512;
        s->layers = g_new0(PrlHds, chain->len);
        for (guint j = 0; j < chain->len; j++) {
            const PrlDescImage *im = storage_image(ds, g_ptr_array_index(chain, j));
            if (im == NULL) {
                vd_set_error(error, EIO, "%s: storage %u has no image %s", img->name, i,
                             (char *)g_ptr_array_index(chain, j));
                return NULL;
            }
            bool rw = j == 0 && *writable;
            bool ok = open_layer(img, im, rw, &s->layers[j], error);
            if (rw && img->read_only)
                *writable = false;
            s->nlayers = j + 1;
            if (!ok)
                return NULL;
        }
        /* A top layer smaller than its storage cannot take every write. */
        if (s->layers[0].size < s->end - s->start)
            *writable = false;
    }
    return g_steal_pointer(&b);
}

static void add_members(VdImage *img, const PrlDescriptor *d)
{
    g_autofree char *xml = g_build_filename(img->path, DESCRIPTOR, NULL);
    vd_image_add_member(img, xml);
    for (guint i = 0; i < d->storages->len; i++) {
        const PrlDescStorage *s = g_ptr_array_index(d->storages, i);
        for (guint j = 0; j < s->images->len; j++) {
            const PrlDescImage *im = g_ptr_array_index(s->images, j);
            if (safe_file_name(im->file)) {
                g_autofree char *p = g_build_filename(img->path, im->file, NULL);
                vd_image_add_member(img, p);
            }
        }
    }
}

static bool bundle_open(VdImage *img, GError **error)
{
    bool writable = !img->read_only;
    PrlBundle *b = bundle_load(img, img->fd, NULL, &writable, error);
    if (b == NULL)
        return false;
    if (!writable)
        img->read_only = true;
    add_members(img, b->desc);
    img->size = b->desc->disk_size * 512;
    img->opaque = b;
    return true;
}

static void bundle_close(VdImage *img)
{
    bundle_free(img->opaque);
    img->opaque = NULL;
}

static PrlStorage *find_storage(PrlBundle *b, uint64_t offset)
{
    guint lo = 0, hi = b->nstorages;
    while (lo < hi) {
        guint mid = lo + (hi - lo) / 2;
        if (offset >= b->storages[mid].end)
            lo = mid + 1;
        else if (offset < b->storages[mid].start)
            hi = mid;
        else
            return &b->storages[mid];
    }
    return NULL;
}

/* Status of storage-local [local, local+len) from layer `from` down. */
static void layer_status(const PrlStorage *s, guint from, uint64_t local, uint64_t len,
                         VdExtent *ext)
{
    for (guint i = from; i < s->nlayers; i++) {
        const PrlHds *h = &s->layers[i];
        if (local >= h->size)
            continue;
        len = vd_min_u64(len, h->size - local);
        bool allocated;
        uint64_t host, run;
        prl_hds_status(h, local, len, &allocated, &host, &run);
        if (allocated) {
            *ext = (VdExtent){VD_EXTENT_DATA, run, h->fd, host};
            return;
        }
        len = run;
    }
    *ext = (VdExtent){VD_EXTENT_UNALLOCATED, len, -1, 0};
}

static bool bundle_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                                VdExtent *ext, GError **error)
{
    PrlBundle *b = img->opaque;
    PrlStorage *s = find_storage(b, offset);
    if (s == NULL) {
        vd_set_error(error, EIO, "%s: no storage holds offset 0x%" G_GINT64_MODIFIER "x", img->name,
                     offset);
        return false;
    }
    layer_status(s, 0, offset - s->start, vd_min_u64(length, s->end - offset), ext);
    return true;
}

/* Read storage-local bytes as the layers from `from` down show them. */
static bool read_layers(const PrlStorage *s, guint from, uint8_t *buf, size_t len, uint64_t local,
                        GError **error)
{
    while (len > 0) {
        VdExtent e;
        layer_status(s, from, local, len, &e);
        size_t n = (size_t)e.length;
        if (e.state == VD_EXTENT_DATA) {
            if (!vd_host_pread(e.fd, s->layers[0].name, buf, n, e.host_offset, true, error))
                return false;
        } else {
            memset(buf, 0, n);
        }
        buf += n;
        local += n;
        len -= n;
    }
    return true;
}

static bool fill_from_lower(void *opaque, uint8_t *buf, size_t len, uint64_t voff, GError **error)
{
    return read_layers(opaque, 1, buf, len, voff, error);
}

static bool bundle_write(VdImage *img, const uint8_t *buf, uint64_t len, uint64_t offset,
                         bool may_unmap, GError **error)
{
    PrlBundle *b = img->opaque;
    while (len > 0) {
        PrlStorage *s = find_storage(b, offset);
        if (s == NULL) {
            vd_set_error(error, ENOSPC, "%s: no storage holds offset 0x%" G_GINT64_MODIFIER "x",
                         img->name, offset);
            return false;
        }
        uint64_t n = vd_min_u64(len, s->end - offset);
        PrlFillFn fill = s->nlayers > 1 ? fill_from_lower : NULL;
        if (!prl_hds_write(&s->layers[0], buf, n, offset - s->start, may_unmap, fill, s, error))
            return false;
        if (buf != NULL)
            buf += n;
        offset += n;
        len -= n;
    }
    return true;
}

static bool bundle_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset,
                          GError **error)
{
    return bundle_write(img, buf, len, offset, false, error);
}

static bool bundle_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                                GError **error)
{
    return bundle_write(img, NULL, length, offset, flags & VD_ZERO_MAY_UNMAP, error);
}

static bool bundle_flush(VdImage *img, GError **error)
{
    PrlBundle *b = img->opaque;
    for (guint i = 0; i < b->nstorages; i++) {
        PrlHds *top = &b->storages[i].layers[0];
        if (!vd_host_fdatasync(top->fd, top->name, error))
            return false;
    }
    return true;
}

static void bundle_describe(VdImage *img, VdInfo *info)
{
    PrlBundle *b = img->opaque;
    const PrlDescriptor *d = b->desc;
    if (d->name != NULL)
        vd_info_add_str(info, "bundle_name", "%s", d->name);
    if (d->uid != NULL)
        vd_info_add_str(info, "bundle_uid", "%s", d->uid);
    vd_info_add_u64(info, "storages", b->nstorages);
    vd_info_add_str(info, "current_image", "%s", b->top_guid);
    vd_info_add_u64(info, "layers", b->storages[0].nlayers);
    for (guint i = 0; i < b->nstorages; i++)
        vd_info_add_list_item(info, "files", "%s", strrchr(b->storages[i].layers[0].name, '/') + 1);
    prl_describe_hds(&b->storages[0].layers[0], info, "");
}

static GPtrArray *bundle_snapshot_list(VdImage *img, GError **error)
{
    PrlBundle *b = img->opaque;
    GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)vd_snapshot_info_free);
    if (img->snapshot_of != NULL)
        return out; /* a snapshot view has no snapshots of its own */
    const PrlDescriptor *d = b->desc;
    for (guint i = 0; i < d->shots->len; i++) {
        const PrlDescShot *s = g_ptr_array_index(d->shots, i);
        if (g_ascii_strcasecmp(s->guid, b->top_guid) == 0)
            continue;
        VdSnapshotInfo *si = g_new0(VdSnapshotInfo, 1);
        si->id = g_strdup(s->guid);
        si->name = g_strdup(s->guid);
        si->virtual_size = d->disk_size * 512;
        g_ptr_array_add(out, si);
    }
    return out;
}

static bool bundle_snapshot_open(VdImage *img, const char *id, VdImage *snap, GError **error)
{
    PrlBundle *b = img->opaque;
    bool known = false;
    for (guint i = 0; i < b->desc->shots->len && !known; i++)
        known = g_ascii_strcasecmp(((PrlDescShot *)g_ptr_array_index(b->desc->shots, i))->guid,
                                   id) == 0;
    if (!known) {
        vd_set_error(error, ENOENT, "%s: no snapshot %s", img->name, id);
        return false;
    }
    bool writable = false;
    PrlBundle *sb = bundle_load(snap, snap->fd, id, &writable, error);
    if (sb == NULL)
        return false;
    snap->size = sb->desc->disk_size * 512;
    snap->opaque = sb;
    return true;
}

const VdDriver vd_parallels_bundle_driver = {
    .name = "parallels-bundle",
    .description = "Parallels Desktop disk bundle (NAME.hdd/ with DiskDescriptor.xml)",
    .caps = VD_CAP_WRITE | VD_CAP_SERIAL_WRITES | VD_CAP_DIRECTORY | VD_CAP_SNAPSHOTS,
    .probe = bundle_probe,
    .open = bundle_open,
    .close = bundle_close,
    .pwrite = bundle_pwrite,
    .block_status = bundle_block_status,
    .flush = bundle_flush,
    .write_zeroes = bundle_write_zeroes,
    .describe = bundle_describe,
    .snapshot_list = bundle_snapshot_list,
    .snapshot_open = bundle_snapshot_open,
};
