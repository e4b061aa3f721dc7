/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target for the text parsers that take a whole buffer: the
 * VMDK descriptor, Parallels' DiskDescriptor.xml and DMG's plist, the
 * partition table reader (the input is a whole small disk), EWF
 * evidence sets (the input is the segment files one after the other, cut
 * where a segment's magic starts), the gzip, bzip2, xz and zstd containers
 * (the input is the compressed file) and the tar container (the input is the
 * archive: its header walk, its manifest, its member). The parser comes
 * from VD_FUZZ_PARSER (vmdk-descriptor, parallels-xml, dmg-plist,
 * partition-table, ewf, gzip, bzip2, xz, zstd, tar); make fuzz-smoke runs each.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "formats/dmg.h"
#include "formats/parallels.h"
#include "formats/vmdk.h"
#include "sources/ewf.h"
#include "sources/tar.h"
#include "src/vd-container.h"
#include "src/vd-partition.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum {
    P_VMDK,
    P_PARALLELS,
    P_DMG,
    P_PARTITION,
    P_EWF,
    P_GZIP,
    P_BZIP2,
    P_XZ,
    P_ZSTD,
    P_TAR
} parser;
static VdContext *fuzz_ctx;
extern const VdContainer vd_gzip_container;
extern const VdContainer vd_bzip2_container;
extern const VdContainer vd_xz_container;
extern const VdContainer vd_tar_container;
#ifdef HAVE_ZSTD
extern const VdContainer vd_zstd_container;
#endif

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

/* The input cut into segments where the EWF magic starts again. */
typedef struct {
    const uint8_t *data;
    size_t size;
    GArray *starts; /* size_t, and size at the end */
} FuzzSet;

static bool set_segment(void *user, unsigned n, uint64_t *size, GError **error)
{
    FuzzSet *f = user;
    if (n + 1 > f->starts->len) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT, "segment %u is missing", n);
        return false;
    }
    *size = g_array_index(f->starts, size_t, n) - g_array_index(f->starts, size_t, n - 1);
    return true;
}

static bool set_read(void *user, unsigned n, void *buf, size_t len, uint64_t off, GError **error)
{
    FuzzSet *f = user;
    size_t start = g_array_index(f->starts, size_t, n - 1);
    size_t end = g_array_index(f->starts, size_t, n);
    if (off > end - start || len > end - start - off) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_IO, "read past the segment");
        return false;
    }
    memcpy(buf, f->data + start + off, len);
    return true;
}

static void fuzz_ewf(const uint8_t *data, size_t size)
{
    static const EwfIo io = {.segment = set_segment, .read = set_read};
    FuzzSet f = {data, size, g_array_new(FALSE, FALSE, sizeof(size_t))};
    size_t zero = 0;
    g_array_append_val(f.starts, zero);
    for (size_t i = 1; i + 8 <= size; i++) {
        if (memcmp(data + i, EWF_MAGIC, 8) == 0)
            g_array_append_val(f.starts, i);
    }
    g_array_append_val(f.starts, size);
    g_autoptr(GError) err = NULL;
    EwfSet *s = ewf_set_open(&io, &f, "fuzz", &err);
    /* Every chunk, unless they are too large to go through quickly. */
    for (uint64_t i = 0; s != NULL && ewf_chunk_size(s) <= (1u << 20) && i < ewf_chunk_count(s);
         i++) {
        bool z;
        g_autoptr(GBytes) b = ewf_chunk_read(s, i, NULL);
        if (b != NULL && g_bytes_get_size(b) !=
                             MIN(ewf_chunk_size(s), ewf_media_size(s) - i * ewf_chunk_size(s)))
            abort();
        EwfChunk c;
        if (b != NULL && ewf_chunk_in_place(s, i, &c)) {
            /* Read in place from now on: the same bytes. */
            g_autofree uint8_t *again = g_malloc(c.len + 1);
            if (c.len != g_bytes_get_size(b) || !set_read(&f, c.seg, again, c.len, c.off, NULL) ||
                memcmp(again, g_bytes_get_data(b, NULL), c.len) != 0)
                abort();
        }
        if (ewf_chunk_is_zero(s, i, &z, NULL) && z && b != NULL) {
            const uint8_t *p = g_bytes_get_data(b, NULL);
            for (gsize k = 0; k < g_bytes_get_size(b); k++) {
                if (p[k] != 0)
                    abort(); /* a hole that reads as data */
            }
        }
    }
    ewf_set_free(s);
    g_array_unref(f.starts);
}

/* A compressed file as its container opens and reads it: what opens
 * reads within its size, the same twice (the second time from the cache
 * or a restarted decoder), at its start, its middle and its end. */
static void fuzz_container(const VdContainer *c, const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0 || (size > 0 && write(fd, data, size) != (ssize_t)size))
        abort();
    const VdSourceOps *ops;
    void *opaque;
    uint64_t n;
    g_autoptr(GError) err = NULL;
    /* What a probe decodes of the head, to hold it against the open. */
    g_autofree uint8_t *head = g_malloc(VD_CONTAINER_PROBE_SPAN);
    size_t head_len = 0;
    bool head_all = false, head_ok = true;
    if (c->head != NULL) {
        g_autoptr(GError) herr = NULL;
        head_ok = c->head(fuzz_ctx, fd, "fuzz", head, VD_CONTAINER_PROBE_SPAN, &head_len, &head_all,
                          &herr);
        if (head_ok == (herr != NULL) || head_len > VD_CONTAINER_PROBE_SPAN)
            abort(); /* a failure says why, a success does not */
    }
    if (!c->open(fuzz_ctx, fd, "fuzz", "fuzz", &ops, &opaque, &n, &err)) {
        if (err == NULL)
            abort(); /* a failure must say why */
        return;
    }
    /* What it holds starts as the head said. gzip's open decodes all the
     * head did, by the same rules: it cannot have failed on it, and it
     * ends where the head said it did. (zstd's open decodes only frames
     * without a size; bzip2's finds blocks by their magic.) */
    bool same_rules = c == &vd_gzip_container;
    if (same_rules && (!head_ok || (head_all && n != head_len)))
        abort();
    if (head_ok && head_len > 0 && head_len <= n) {
        g_autofree uint8_t *got = g_malloc(head_len);
        if (ops->pread(opaque, got, head_len, 0, NULL) && memcmp(got, head, head_len) != 0)
            abort();
    }
    if (n == 0 && c != &vd_bzip2_container)
        abort(); /* only bzip2 has empty files: a stream without blocks */
    if (n == 0) {
        ops->close(opaque);
        return;
    }
    enum { PIECE = 1 << 20 };
    g_autofree uint8_t *a = g_malloc(PIECE), *b = g_malloc(PIECE);
    uint64_t offs[] = {0, PIECE, n > PIECE ? n - PIECE : 0, n / 2};
    for (unsigned i = 0; i < G_N_ELEMENTS(offs); i++) {
        uint64_t off = MIN(offs[i], n - 1);
        size_t len = (size_t)MIN((uint64_t)PIECE, n - off);
        bool ok = ops->pread(opaque, a, len, off, NULL);
        if (ok != ops->pread(opaque, b, len, off, NULL) || (ok && memcmp(a, b, len) != 0))
            abort(); /* the same bytes, or the same failure */
    }
    /* Small reads inside a chunk, then further into it: xz decodes its
     * block in part, then goes on with the same decoder. */
    uint64_t small[] = {n / 3 + 1000, n / 3 + 50000, n / 3 + 1000, n > 4096 ? n - 4096 : 0};
    for (unsigned i = 0; i < G_N_ELEMENTS(small); i++) {
        uint64_t off = MIN(small[i], n - 1);
        size_t len = (size_t)MIN((uint64_t)4096, n - off);
        bool ok = ops->pread(opaque, a, len, off, NULL);
        if (ok != ops->pread(opaque, b, len, off, NULL) || (ok && memcmp(a, b, len) != 0))
            abort();
    }
    ops->close(opaque);
}

/* Every member the walk reports lies inside the archive. */
static bool tar_member_inside(void *opaque, const TarMember *m, GError **error)
{
    const FuzzDisk *d = opaque;
    if (m->offset > d->size || m->size > d->size - m->offset || m->name == NULL)
        abort();
    return true;
}

/* The tar walk over the input as it is, the manifest parser over it as
 * text, and the container: open, read, and its manifest check. */
static void fuzz_tar(const uint8_t *data, size_t size)
{
    FuzzDisk d = {data, size};
    g_autoptr(GError) err = NULL;
    if (!tar_walk(disk_read, &d, size, "fuzz", tar_member_inside, &d, &err) && err == NULL)
        abort(); /* a failure must say why */
    GChecksumType type;
    g_autofree char *hex = NULL;
    (void)tar_manifest_lookup((const char *)data, size, "disk1.vmdk", &type, &hex);
    fuzz_container(&vd_tar_container, data, size);
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0 || (size > 0 && write(fd, data, size) != (ssize_t)size))
        abort();
    const VdSourceOps *ops;
    void *opaque;
    uint64_t n;
    g_clear_error(&err);
    if (vd_tar_container.open(fuzz_ctx, fd, "fuzz", "fuzz", &ops, &opaque, &n, &err)) {
        uint64_t host_off;
        if (ops->host_range(opaque, 0, n, &host_off) < 0 || host_off > size || n > size - host_off)
            abort(); /* the member is a range of the archive */
        if (!ops->verify(opaque, &err) && err == NULL)
            abort();
        ops->close(opaque);
    }
    /* An archive of several disks: each listed name opens as a member,
     * under that name, its share of the archive no more than the archive;
     * no name is listed twice. */
    fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0 || (size > 0 && write(fd, data, size) != (ssize_t)size))
        abort();
    g_autoptr(GPtrArray) names = NULL;
    g_clear_error(&err);
    bool listed = vd_tar_container.list(fuzz_ctx, fd, "fuzz", &names, &err);
    for (guint i = 0; listed && i < names->len && i < 4; i++) {
        int mfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        g_clear_error(&err);
        if (mfd < 0 ||
            !vd_tar_container.open_member(fuzz_ctx, mfd, "fuzz", "fuzz",
                                          g_ptr_array_index(names, i), &ops, &opaque, &n, &err))
            abort(); /* what list names opens */
        uint64_t bytes;
        if (strcmp(ops->inner_name(opaque), g_ptr_array_index(names, i)) != 0 ||
            (ops->host_bytes(opaque, &bytes) && bytes > size + TAR_BLOCK))
            abort();
        ops->close(opaque);
    }
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    for (guint i = 0; listed && i < names->len; i++) {
        if (!g_hash_table_add(seen, g_ptr_array_index(names, i)))
            abort();
    }
    close(fd);
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
    else if (p != NULL && strcmp(p, "ewf") == 0)
        parser = P_EWF;
    else if (p != NULL && strcmp(p, "gzip") == 0)
        parser = P_GZIP;
    else if (p != NULL && strcmp(p, "bzip2") == 0)
        parser = P_BZIP2;
    else if (p != NULL && strcmp(p, "xz") == 0)
        parser = P_XZ;
#ifdef HAVE_ZSTD
    else if (p != NULL && strcmp(p, "zstd") == 0)
        parser = P_ZSTD;
#endif
    else if (p != NULL && strcmp(p, "tar") == 0)
        parser = P_TAR;
    else {
        fprintf(stderr, "set VD_FUZZ_PARSER to vmdk-descriptor, parallels-xml, dmg-plist, "
                        "partition-table, ewf, gzip, bzip2, xz, zstd or tar\n");
        exit(2);
    }
    g_autoptr(GError) err = NULL;
    fuzz_ctx = vd_context_new("/", &err);
    if (fuzz_ctx == NULL)
        exit(2);
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
    case P_EWF:
        fuzz_ewf(data, size);
        break;
    case P_GZIP:
        fuzz_container(&vd_gzip_container, data, size);
        break;
    case P_BZIP2:
        fuzz_container(&vd_bzip2_container, data, size);
        break;
    case P_XZ:
        fuzz_container(&vd_xz_container, data, size);
        break;
    case P_TAR:
        fuzz_tar(data, size);
        break;
    case P_ZSTD:
#ifdef HAVE_ZSTD
        fuzz_container(&vd_zstd_container, data, size);
#endif
        break;
    case P_DMG: {
        GPtrArray *blobs = NULL;
        if (dmg_plist_blkx("fuzz", (const char *)data, size, &blobs, &err) && blobs != NULL)
            g_ptr_array_unref(blobs);
        break;
    }
    }
    return 0;
}
