/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Image objects: probing, opening a whole chain, reads and writes. */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vd-container.h"
#include "vd-decode.h"
#include "vd-dispatch.h"
#include "vd-error.h"
#include "vd-file.h"
#include "vd-image.h"
#include "vd-io.h"
#include "vd-lock.h"
#include "vd-metamap.h"
#include "vd-readahead.h"
#include "vd-source.h"

/* Per vd_image_open() call: guards against loops and runaway depth. */
typedef struct {
    GArray *seen; /* dev_t/ino_t pairs of the images on the chain so far */
} VdChainWalk;

typedef struct {
    dev_t dev;
    ino_t ino;
} VdFileId;

/* One entry of VdImage.files. */
typedef struct {
    VdFile f;
    char *name;
} VdImageFile;

static VdImage *image_open_internal(VdContext *ctx, const char *path, const VdOpenOptions *opts,
                                    unsigned depth, VdChainWalk *walk, GError **error);

void vd_snapshot_info_free(VdSnapshotInfo *s)
{
    if (s == NULL)
        return;
    g_free(s->id);
    g_free(s->name);
    g_free(s);
}

const VdDriver *vd_driver_find(const char *name)
{
    for (const VdDriver *const *d = vd_drivers; *d != NULL; d++) {
        if (g_ascii_strcasecmp((*d)->name, name) == 0)
            return *d;
    }
    return NULL;
}

/* Name used in messages and for key lookup: relative to the root when
 * inside it. fd >= 0: where that open file really is, by one readlink of
 * its /proc/self/fd link (realpath(3) reads a link per component, five
 * syscalls per file of a listing); before the open, the path as written. */
static char *image_display_name(VdContext *ctx, const char *path, int fd)
{
    if (ctx->root == NULL)
        return g_strdup(path);
    g_autofree char *real = NULL;
    if (fd >= 0) {
        char link[40];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        real = g_file_read_link(link, NULL);
        if (real != NULL && (real[0] != '/' || g_str_has_suffix(real, " (deleted)")))
            g_clear_pointer(&real, g_free);
        if (real == NULL)
            real = realpath(path, NULL);
    }
    const char *where = real != NULL ? real : path;
    size_t n = strlen(ctx->root);
    if (strncmp(where, ctx->root, n) == 0 && where[n] == '/')
        return g_strdup(where + n + 1);
    return g_strdup(path);
}

/* Once the file is open: its name as the root sees it. */
static void image_name_from_fd(VdImage *img)
{
    g_free(img->name);
    img->name = image_display_name(img->ctx, img->path, img->fd);
}

static const VdDriver *probe_best(const VdProbe *probe)
{
    const VdDriver *best = NULL;
    int best_score = VD_PROBE_NO;
    for (const VdDriver *const *d = vd_drivers; *d != NULL; d++) {
        const VdDriver *drv = *d;
        if (drv->probe == NULL)
            continue;
        if (probe->is_dir != ((drv->caps & VD_CAP_DIRECTORY) != 0))
            continue;
        int score = drv->probe(probe);
        if (score > best_score) {
            best = drv;
            best_score = score;
        }
    }
    return best;
}

/* want_tail: read the end too where a source says that costs a long
 * decode (else only where it is cheap). */
static const VdDriver *probe_fd(int fd, const char *path, const struct stat *st, bool want_tail,
                                GError **error)
{
    uint8_t head[VD_PROBE_HEAD] = {0};
    uint8_t tail[VD_PROBE_TAIL] = {0};
    VdProbe probe = {
        .path = path,
        .basename = strrchr(path, '/') ? strrchr(path, '/') + 1 : path,
        .is_dir = S_ISDIR(st->st_mode),
        .file_size = 0,
        .head = head,
        .tail = tail,
    };
    /* The size of what fd reads, a container's contents included; a
     * plain file's is st's (one fstat less for every file a scan probes). */
    if (S_ISREG(st->st_mode) && !vd_source_size(fd, &probe.file_size))
        probe.file_size = (uint64_t)st->st_size;
    if (S_ISREG(st->st_mode)) {
        probe.head_len = (size_t)vd_min_u64(probe.file_size, sizeof head);
        probe.tail_len = (size_t)vd_min_u64(probe.file_size, sizeof tail);
        if (!want_tail && vd_source_costly_at(fd, probe.file_size - probe.tail_len))
            probe.tail_len = 0;
        if (!vd_host_pread(fd, path, head, probe.head_len, 0, false, error) ||
            (probe.tail_len > 0 && !vd_host_pread(fd, path, tail, probe.tail_len,
                                                  probe.file_size - probe.tail_len, false, error)))
            return NULL;
    }
    return probe_best(&probe);
}

/* Whether a format that a probe may know only by the file's end goes by
 * the extension of name. */
static bool tail_format_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    for (const VdDriver *const *d = vd_drivers; dot != NULL && *d != NULL; d++) {
        for (const char *const *e = (*d)->tail_extensions; e != NULL && *e != NULL; e++) {
            if (g_ascii_strcasecmp(dot + 1, *e) == 0)
                return true;
        }
    }
    return false;
}

/* flags: VD_FILE_MEMBER for a backing file (confined by -o backing=).
 * shown: the name it is shown under when it is a container's (g_free).
 * head_only: the verdict comes from the head of what a container holds
 * (whose size costs a full decode, which the probe did not pay). */
static const VdDriver *probe_path(VdContext *ctx, const char *path, unsigned flags, char **shown,
                                  bool *archive, bool *head_only, GError **error)
{
    VdFile f;
    g_autofree char *base_name = g_path_get_basename(path);
    GError *local = NULL;
    unsigned how = VD_FILE_PROBE | VD_FILE_PROBE_HEAD | flags;
    if (!vd_file_open(ctx, path, path, how, &f, &local)) {
        /* A container that does not open is still an image to list: its
         * open will fail with this reason, for user.vdiskfs.error. */
        const VdContainer *c = vd_file_container_of(ctx, path);
        if (c == NULL) {
            g_propagate_error(error, local);
            return NULL;
        }
        g_debug("%s", local->message);
        g_error_free(local);
        if (shown != NULL)
            *shown = vd_container_shown_name(c, base_name);
        if (archive != NULL)
            *archive = c->list != NULL;
        return vd_driver_find("raw");
    }
    /* A tar member's name is in the archive, not in the archive's name. */
    const char *named = f.container ? vd_source_inner_name(f.fd) : NULL;
    g_autofree char *inner = named                 ? g_strdup(named)
                             : f.container != NULL ? vd_container_shown_name(f.container, base_name)
                                                   : NULL;
    const char *base = inner ? inner : base_name;
    /* The end of a single-block xz costs decoding it all: only for a
     * format known by its end that the name asks for. */
    bool want_tail = tail_format_name(base);
    const VdDriver *drv = probe_fd(f.fd, path, &f.st, want_tail, &local);
    if (drv == NULL && local == NULL && f.head_only && tail_format_name(base) &&
        head_only != NULL) {
        /* Its head says nothing and its name says the format is known by
         * its end (disk.vhd.gz): an image by its name, for a listing; the
         * full decode that tells the format is left to its stat and open,
         * which probe it again, whole. */
        vd_file_close(f.fd);
        *head_only = true;
        if (shown != NULL)
            *shown = g_steal_pointer(&inner);
        if (archive != NULL)
            *archive = false;
        return vd_driver_find("raw");
    }
    if (drv == NULL && local == NULL && f.head_only && tail_format_name(base)) {
        /* The same for a caller that needs the format now: decode it all. */
        vd_file_close(f.fd);
        if (!vd_file_open(ctx, path, path, VD_FILE_PROBE | flags, &f, &local)) {
            g_debug("%s", local->message);
            g_error_free(local);
            if (shown != NULL)
                *shown = g_steal_pointer(&inner);
            if (archive != NULL)
                *archive = false;
            return vd_driver_find("raw");
        }
        drv = probe_fd(f.fd, path, &f.st, want_tail, &local);
    }
    if (drv == NULL && local != NULL && f.container != NULL) {
        /* Nor one whose contents do not read (an EWF chunk table read on
         * first use): its reads will fail with the reason. */
        g_debug("%s", local->message);
        g_clear_error(&local);
        drv = vd_driver_find("raw");
    }
    bool unreadable = local != NULL;
    if (unreadable)
        g_propagate_error(error, local);
    /* A raw disk in a container goes by the name inside: disk.img.xz; an
     * evidence file holds a disk whatever its name. */
    if (drv == NULL && !S_ISDIR(f.st.st_mode) && !unreadable &&
        (vd_context_is_raw_name(ctx, base) ||
         (f.container != NULL && (inner == NULL || f.container->holds_disk))))
        drv = vd_driver_find("raw");
    if (archive != NULL)
        *archive = f.container != NULL && f.container->list != NULL;
    if (head_only != NULL)
        *head_only = f.head_only;
    vd_file_close(f.fd);
    if (shown != NULL && drv != NULL)
        *shown = g_steal_pointer(&inner);
    return drv;
}

const VdDriver *vd_probe_path(VdContext *ctx, const char *path, GError **error)
{
    return probe_path(ctx, path, 0, NULL, NULL, NULL, error);
}

const VdDriver *vd_probe_path_shown(VdContext *ctx, const char *path, char **shown, bool *archive,
                                    bool *head_only, GError **error)
{
    if (archive != NULL)
        *archive = false;
    if (head_only != NULL)
        *head_only = false;
    return probe_path(ctx, path, 0, shown, archive, head_only, error);
}

/* The other files of a container the image is read from (EWF's later
 * segments) are the image's members. */
static void add_source_members(VdImage *img, int fd)
{
    for (const char *const *m = vd_source_members(fd); m != NULL && *m != NULL; m++)
        vd_image_add_member(img, *m);
}

void vd_image_refuse_writes(VdImage *img)
{
    img->read_only = true;
    img->format_read_only = true;
}

void vd_image_set_backing(VdImage *img, const char *recorded_name, const char *format)
{
    g_free(img->backing_name);
    img->backing_name = g_strdup(recorded_name);
    g_free(img->backing_format);
    img->backing_format = g_strdup(format);
    vd_image_add_backing_candidate(img, recorded_name);
}

void vd_image_add_backing_candidate(VdImage *img, const char *host_path)
{
    if (img->backing_candidates == NULL)
        img->backing_candidates = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(img->backing_candidates, g_strdup(host_path));
}

/* Keep f (opened for this image) so that its locks follow the image. */
static void image_keep_file(VdImage *img, const VdFile *f, const char *name)
{
    VdImageFile entry = {.f = *f, .name = g_strdup(name)};
    g_mutex_lock(&img->files_lock);
    g_array_append_val(img->files, entry);
    g_mutex_unlock(&img->files_lock);
}

char *vd_image_sibling_path(VdImage *img, const char *recorded)
{
    if (g_path_is_absolute(recorded))
        return g_strdup(recorded);
    if (img->driver->caps & VD_CAP_DIRECTORY)
        return g_build_filename(img->path, recorded, NULL);
    g_autofree char *dir = g_path_get_dirname(img->path);
    return g_build_filename(dir, recorded, NULL);
}

int vd_image_open_member(VdImage *img, const char *path, const char *what, unsigned flags,
                         GError **error)
{
    g_autofree char *name = g_strdup_printf("%s: %s %s", img->name, what, path);
    if (img->read_only)
        flags &= ~VD_FILE_WRITE;
    VdFile f;
    if (!vd_file_open(img->ctx, path, name, flags | VD_FILE_MEMBER, &f, error))
        return -1;
    if ((flags & VD_FILE_WRITE) && !f.writable)
        img->read_only = true; /* the host will not let us write this part */
    image_keep_file(img, &f, name);
    vd_image_add_member(img, path);
    add_source_members(img, f.fd);
    return f.fd;
}

bool vd_image_mem_reserve(VdImage *img, uint64_t bytes, const char *what, GError **error)
{
    if (!vd_context_mem_reserve(img->ctx, bytes, img->name, what, error))
        return false;
    __atomic_add_fetch(&img->mem_reserved, (gint64)bytes, __ATOMIC_RELAXED);
    return true;
}

void vd_image_mem_release(VdImage *img, uint64_t bytes)
{
    __atomic_sub_fetch(&img->mem_reserved, (gint64)bytes, __ATOMIC_RELAXED);
    vd_context_mem_release(img->ctx, bytes);
}

/* Put every file's locks in the reader's or the writer's state; a writer
 * that cannot be one stays a reader entirely. Called with files_lock. */
static bool files_set_writer(VdImage *img, bool writer, GError **error)
{
    for (guint i = 0; i < img->files->len; i++) {
        VdImageFile *e = &g_array_index(img->files, VdImageFile, i);
        if (!e->f.writable || !e->f.locked)
            continue;
        if (!vd_lock_fd(img->ctx, e->f.lock_fd, &e->f.st, e->name, writer, error)) {
            for (guint j = 0; writer && j < i; j++) {
                VdImageFile *u = &g_array_index(img->files, VdImageFile, j);
                if (u->f.writable && u->f.locked)
                    vd_lock_fd(img->ctx, u->f.lock_fd, &u->f.st, u->name, false, NULL);
            }
            return false;
        }
    }
    g_atomic_int_set(&img->write_locked, writer);
    return true;
}

bool vd_image_release_write(VdImage *img, GError **error)
{
    if (img->read_only)
        return true;
    if (!vd_image_flush(img, error))
        return false;
    g_rw_lock_writer_lock(&img->write_lock);
    g_mutex_lock(&img->files_lock);
    bool ok = !g_atomic_int_get(&img->write_locked) || files_set_writer(img, false, error);
    g_mutex_unlock(&img->files_lock);
    g_rw_lock_writer_unlock(&img->write_lock);
    return ok;
}

/* Before a change: the writer's locks, taken back if they were given up. */
static bool image_take_write_locks(VdImage *img, GError **error)
{
    if (g_atomic_int_get(&img->write_locked))
        return true;
    g_mutex_lock(&img->files_lock);
    bool ok = g_atomic_int_get(&img->write_locked) || files_set_writer(img, true, error);
    g_mutex_unlock(&img->files_lock);
    return ok;
}

void vd_image_add_member(VdImage *img, const char *host_path)
{
    if (img->members == NULL)
        img->members = g_ptr_array_new_with_free_func(g_free);
    /* Once each: a descriptor may list one extent file several times. */
    for (guint i = 0; i < img->members->len; i++) {
        if (strcmp(g_ptr_array_index(img->members, i), host_path) == 0)
            return;
    }
    g_ptr_array_add(img->members, g_strdup(host_path));
}

static VdImage *image_alloc(VdContext *ctx, const VdDriver *drv, const char *path)
{
    VdImage *img = g_new0(VdImage, 1);
    img->refcount = 1;
    img->driver = drv;
    img->ctx = vd_context_ref(ctx);
    img->path = g_strdup(path);
    img->name = image_display_name(ctx, path, -1);
    img->fd = -1;
    g_rw_lock_init(&img->write_lock);
    g_mutex_init(&img->error_lock);
    g_mutex_init(&img->files_lock);
    img->files = g_array_new(FALSE, FALSE, sizeof(VdImageFile));
    img->readahead = vd_readahead_new();
    return img;
}

/* Free everything but the driver state (used directly when open failed). */
static void image_free(VdImage *img)
{
    /* The driver closed its members' fds; the image file is ours. */
    for (guint i = 0; i < img->files->len; i++) {
        VdImageFile *e = &g_array_index(img->files, VdImageFile, i);
        vd_file_forget(img->ctx, &e->f);
        g_free(e->name);
    }
    g_array_unref(img->files);
    g_mutex_clear(&img->files_lock);
    vd_context_mem_release(img->ctx, (uint64_t)img->mem_reserved);
    vd_file_close(img->fd);
    g_clear_pointer(&img->backing, vd_image_unref);
    g_clear_pointer(&img->snapshot_of, vd_image_unref);
    g_clear_pointer(&img->view_of, vd_image_unref);
    g_clear_pointer(&img->origin, g_bytes_unref);
    g_clear_pointer(&img->backing_candidates, g_ptr_array_unref);
    g_clear_pointer(&img->members, g_ptr_array_unref);
    g_free(img->backing_name);
    g_free(img->backing_format);
    g_free(img->path);
    g_free(img->name);
    g_rw_lock_clear(&img->write_lock);
    g_mutex_clear(&img->error_lock);
    g_free(img->io_error);
    vd_readahead_free(img->readahead);
    vd_context_unref(img->ctx);
    g_free(img);
}

VdImage *vd_image_ref(VdImage *img)
{
    g_atomic_int_inc(&img->refcount);
    return img;
}

void vd_image_unref(VdImage *img)
{
    if (img == NULL || !g_atomic_int_dec_and_test(&img->refcount))
        return;
    if (!img->read_only) {
        g_autoptr(GError) err = NULL;
        if (!vd_image_flush(img, &err))
            g_warning("%s: flush on close failed: %s", img->name, err->message);
    }
    if (img->driver->close != NULL && !img->peeked)
        img->driver->close(img);
    image_free(img);
}

static bool walk_enter(VdChainWalk *walk, const char *name, const struct stat *st, GError **error)
{
    for (guint i = 0; i < walk->seen->len; i++) {
        VdFileId *id = &g_array_index(walk->seen, VdFileId, i);
        if (id->dev == st->st_dev && id->ino == st->st_ino) {
            vd_set_error(error, ELOOP, "%s: backing chain loops back to this image", name);
            return false;
        }
    }
    VdFileId id = {st->st_dev, st->st_ino};
    g_array_append_val(walk->seen, id);
    return true;
}

char *vd_image_resolve_file(VdImage *img, const char *recorded, const char *what, GError **error)
{
    g_autofree char *joined = NULL;
    if (g_path_is_absolute(recorded)) {
        joined = g_strdup(recorded);
    } else {
        g_autofree char *dir = g_path_get_dirname(img->path);
        joined = g_build_filename(dir, recorded, NULL);
    }
    char *real = realpath(joined, NULL);
    if (real == NULL) {
        vd_set_error_errno(error, errno, "%s: %s %s", img->name, what, recorded);
        return NULL;
    }
    VdContext *ctx = img->ctx;
    if (ctx->backing_policy == VD_BACKING_CONFINED && ctx->root != NULL) {
        size_t n = strlen(ctx->root);
        if (!(strncmp(real, ctx->root, n) == 0 && (real[n] == '/' || real[n] == '\0'))) {
            vd_set_error(error, EACCES,
                         "%s: %s %s resolves outside the image directory "
                         "(use -o backing=any to allow it)",
                         img->name, what, recorded);
            free(real);
            return NULL;
        }
    }
    return real;
}

static char *resolve_backing(VdImage *img, const char *candidate, GError **error)
{
    return vd_image_resolve_file(img, candidate, "backing file", error);
}

/* The image in dir whose UUID is the one img records for its parent, or NULL. */
static char *search_dir_by_uuid(VdImage *img, const char *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const char *ent;
    while (d != NULL && (ent = g_dir_read_name(d)) != NULL) {
        g_autofree char *p = g_build_filename(dir, ent, NULL);
        if (g_strcmp0(p, img->path) == 0)
            continue;
        if (vd_probe_path(img->ctx, p, NULL) != img->driver)
            continue;
        /* Only the header matters: not the candidate's own parents, which
         * would search again, without end when UUIDs name each other. */
        VdOpenOptions o = {.read_only = true, .format = img->driver->name, .no_backing = true};
        g_autoptr(GError) ignored = NULL;
        VdChainWalk walk = {g_array_new(FALSE, FALSE, sizeof(VdFileId))};
        VdImage *cand = image_open_internal(img->ctx, p, &o, img->depth + 1, &walk, &ignored);
        g_array_unref(walk.seen);
        if (cand == NULL)
            continue;
        uint8_t uuid[16];
        bool match = cand->driver->get_uuid != NULL && cand->driver->get_uuid(cand, uuid) &&
                     memcmp(uuid, img->backing_uuid, 16) == 0;
        vd_image_unref(cand);
        if (match)
            return g_steal_pointer(&p);
    }
    return NULL;
}

/* Find a parent by UUID among the images in the child's directory, then in
 * the directory above it while inside IMAGEDIR (VirtualBox keeps the base
 * disk there and its differencing images in Snapshots/). */
static char *find_backing_by_uuid(VdImage *img, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(img->path);
    g_autofree char *found = search_dir_by_uuid(img, dir);
    if (found == NULL && img->ctx->root != NULL) {
        g_autofree char *real = realpath(dir, NULL);
        size_t n = strlen(img->ctx->root);
        if (real != NULL && strncmp(real, img->ctx->root, n) == 0 && real[n] == '/') {
            g_autofree char *up = g_path_get_dirname(real);
            found = search_dir_by_uuid(img, up);
        }
    }
    if (found != NULL)
        return resolve_backing(img, found, error);
    vd_set_error(error, ENOENT, "%s: no parent image with the recorded UUID in %s", img->name, dir);
    return NULL;
}

static bool open_backing(VdImage *img, const VdOpenOptions *opts, VdChainWalk *walk, GError **error)
{
    g_autofree char *found = NULL;
    g_autoptr(GError) first_error = NULL;
    if (img->backing_by_uuid) {
        found = find_backing_by_uuid(img, error);
        if (found == NULL)
            return false;
    } else {
        for (guint i = 0; i < img->backing_candidates->len && found == NULL; i++) {
            GError *e = NULL;
            found = resolve_backing(img, g_ptr_array_index(img->backing_candidates, i), &e);
            if (found == NULL) {
                if (first_error == NULL)
                    first_error = e;
                else
                    g_error_free(e);
            }
        }
        if (found == NULL) {
            g_propagate_error(error, g_steal_pointer(&first_error));
            return false;
        }
    }
    if (img->depth + 1 >= img->ctx->max_chain_depth) {
        vd_set_error(error, ELOOP, "%s: backing chain is deeper than %u images", img->name,
                     img->ctx->max_chain_depth);
        return false;
    }
    VdOpenOptions bo = {
        .read_only = true,
        .format = img->backing_format,
        .raw_fallback = true,
    };
    GError *local = NULL;
    img->backing = image_open_internal(img->ctx, found, &bo, img->depth + 1, walk, &local);
    if (img->backing == NULL) {
        /* Keep the errno of the cause, but say whose backing file failed. */
        int code = vd_error_errno(local);
        vd_set_error(error, code, "%s: backing file: %s", img->name, local->message);
        g_error_free(local);
        return false;
    }
    if (img->driver->check_backing != NULL && !img->driver->check_backing(img, img->backing, error))
        return false;
    (void)opts;
    return true;
}

static VdImage *image_open_internal(VdContext *ctx, const char *path, const VdOpenOptions *opts,
                                    unsigned depth, VdChainWalk *walk, GError **error)
{
    const VdDriver *drv = NULL;
    if (opts->format != NULL) {
        drv = vd_driver_find(opts->format);
        if (drv == NULL) {
            vd_set_error(error, ENOTSUP, "%s: unknown or unsupported format '%s'", path,
                         opts->format);
            return NULL;
        }
    } else {
        GError *perr = NULL;
        drv = probe_path(ctx, path, depth > 0 ? VD_FILE_MEMBER : 0, NULL, NULL, NULL, &perr);
        if (perr != NULL) {
            g_propagate_error(error, perr);
            return NULL;
        }
        if (drv == NULL && opts->raw_fallback)
            drv = vd_driver_find("raw");
        if (drv == NULL) {
            vd_set_error(error, EMEDIUMTYPE, "%s: not a recognised disk image", path);
            return NULL;
        }
    }

    VdImage *img = image_alloc(ctx, drv, path);
    img->depth = depth;
    img->read_only = opts->read_only || !(drv->caps & VD_CAP_WRITE) || drv->pwrite == NULL;
    img->format_read_only = !(drv->caps & VD_CAP_WRITE) || drv->pwrite == NULL;
    img->for_check = opts->for_check && img->read_only;
    /* The top of a chain is an image of IMAGEDIR (-o symlinks=); the layers
     * below are backing files (-o backing=). Locked after the loop check,
     * so that a chain looping back to a writer reports the loop. */
    unsigned fflags = (img->read_only ? 0 : VD_FILE_WRITE) | VD_FILE_NO_LOCK |
                      ((drv->caps & VD_CAP_DIRECTORY) ? VD_FILE_DIRECTORY : 0) |
                      (depth > 0 ? VD_FILE_MEMBER : 0);
    VdFile f;
    if (!vd_file_open(ctx, path, img->name, fflags, &f, error)) {
        image_free(img);
        return NULL;
    }
    img->fd = f.fd;
    image_name_from_fd(img);
    if (!f.writable)
        img->read_only = true;
    if (!walk_enter(walk, img->name, &f.st, error) || !vd_file_lock(ctx, &f, img->name, error)) {
        image_free(img);
        return NULL;
    }
    image_keep_file(img, &f, img->name);
    add_source_members(img, f.fd);
    g_atomic_int_set(&img->write_locked, !img->read_only);
    bool asked_read_only = img->read_only;
    if (!drv->open(img, error)) {
        image_free(img);
        return NULL;
    }
    /* A driver that refused a read-write open for a format reason, or a
     * member the host will not let us write: no writer's locks then. */
    if (!asked_read_only && img->read_only) {
        img->format_read_only = true;
        g_mutex_lock(&img->files_lock);
        files_set_writer(img, false, NULL);
        g_mutex_unlock(&img->files_lock);
    }
    bool has_backing = img->backing_by_uuid ||
                       (img->backing_candidates != NULL && img->backing_candidates->len > 0);
    if (has_backing && !opts->no_backing && !open_backing(img, opts, walk, error)) {
        vd_image_unref(img);
        return NULL;
    }
    return img;
}

VdImage *vd_image_open(VdContext *ctx, const char *path, const VdOpenOptions *opts, GError **error)
{
    VdOpenOptions defaults = {.read_only = true};
    VdChainWalk walk = {g_array_new(FALSE, FALSE, sizeof(VdFileId))};
    VdImage *img = image_open_internal(ctx, path, opts ? opts : &defaults, 0, &walk, error);
    g_array_unref(walk.seen);
    return img;
}

VdImage *vd_image_peek(VdContext *ctx, const char *path, GError **error)
{
    return vd_image_peek_as(ctx, path, NULL, error);
}

VdImage *vd_image_peek_as(VdContext *ctx, const char *path, const VdDriver *drv, GError **error)
{
    GError *perr = NULL;
    if (drv == NULL)
        drv = vd_probe_path(ctx, path, &perr);
    if (perr != NULL) {
        g_propagate_error(error, perr);
        return NULL;
    }
    if (drv == NULL) {
        vd_set_error(error, EMEDIUMTYPE, "%s: not a recognised disk image", path);
        return NULL;
    }
    if (drv->peek == NULL) {
        VdOpenOptions o = {.read_only = true, .format = drv->name, .no_backing = true};
        return vd_image_open(ctx, path, &o, error);
    }
    VdImage *img = image_alloc(ctx, drv, path);
    img->read_only = true;
    img->peeked = true;
    img->format_read_only = !(drv->caps & VD_CAP_WRITE) || drv->pwrite == NULL;
    VdFile f;
    unsigned fflags = VD_FILE_NO_LOCK | ((drv->caps & VD_CAP_DIRECTORY) ? VD_FILE_DIRECTORY : 0);
    if (!vd_file_open(ctx, path, img->name, fflags, &f, error)) {
        image_free(img);
        return NULL;
    }
    img->fd = f.fd;
    image_name_from_fd(img);
    add_source_members(img, f.fd);
    if (!drv->peek(img, error)) {
        image_free(img);
        return NULL;
    }
    return img;
}

VdImage *vd_image_new_view(VdImage *of, const VdDriver *drv, const char *name, GError **error)
{
    VdImage *v = image_alloc(of->ctx, drv, of->path);
    g_free(v->name);
    v->name = g_strdup(name);
    v->read_only = true;
    v->format_read_only = true;
    v->depth = of->depth;
    v->fd = fcntl(of->fd, F_DUPFD_CLOEXEC, 0);
    if (v->fd < 0) {
        vd_set_error_errno(error, errno, "%s", v->name);
        image_free(v);
        return NULL;
    }
    return v;
}

VdImage *vd_image_open_snapshot(VdImage *img, const char *id, GError **error)
{
    if (img->driver->snapshot_open == NULL) {
        vd_set_error(error, ENOENT, "%s: format %s has no snapshots", img->name, img->driver->name);
        return NULL;
    }
    g_autofree char *name = g_strdup_printf("%s@%s", img->name, id);
    VdImage *snap = vd_image_new_view(img, img->driver, name, error);
    if (snap == NULL)
        return NULL;
    snap->snapshot_of = vd_image_ref(img);
    if (img->backing != NULL)
        snap->backing = vd_image_ref(img->backing);
    if (!img->driver->snapshot_open(img, id, snap, error)) {
        image_free(snap);
        return NULL;
    }
    return snap;
}

GPtrArray *vd_image_snapshots(VdImage *img, GError **error)
{
    if (img->driver->snapshot_list == NULL)
        return g_ptr_array_new_with_free_func((GDestroyNotify)vd_snapshot_info_free);
    return img->driver->snapshot_list(img, error);
}

uint64_t vd_image_file_bytes(int fd)
{
    uint64_t bytes;
    struct stat st;
    if (vd_source_host_bytes(fd, &bytes))
        return bytes; /* its share of the container file */
    return fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode) ? (uint64_t)st.st_blocks * 512 : 0;
}

uint64_t vd_image_host_bytes(VdImage *img)
{
    uint64_t total = vd_image_file_bytes(img->fd);
    struct stat st;
    for (guint i = 0; img->members != NULL && i < img->members->len; i++) {
        if (stat(g_ptr_array_index(img->members, i), &st) == 0 && S_ISREG(st.st_mode))
            total += (uint64_t)st.st_blocks * 512;
    }
    return total;
}

bool vd_image_read_backing(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error)
{
    if (img->backing == NULL) {
        memset(buf, 0, len);
        return true;
    }
    return vd_image_pread(img->backing, buf, len, offset, error);
}

/* Views over another image (partitions) have no read-ahead of their own. */
static void ra_invalidate(VdImage *img)
{
    if (img->readahead != NULL)
        vd_readahead_invalidate(img);
}

bool vd_image_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error)
{
    bool decoded = false;
    if (img->readahead == NULL)
        return vd_image_pread_direct(img, buf, len, offset, &decoded, error);
    if (vd_readahead_take(img, buf, len, offset))
        return true;
    if (!vd_image_pread_direct(img, buf, len, offset, &decoded, error))
        return false;
    vd_readahead_note(img, len, offset, decoded);
    return true;
}

/* glibc reads /sys for each g_get_num_processors(): once is enough. */
static unsigned cores(void)
{
    static gsize once;
    static unsigned n;
    if (g_once_init_enter(&once)) {
        n = MAX(g_get_num_processors(), 1u);
        g_once_init_leave(&once, 1);
    }
    return n;
}

bool vd_image_pread_direct(VdImage *img, void *buf, size_t len, uint64_t offset, bool *decoded,
                           GError **error)
{
    uint8_t *p = buf;
    *decoded = false;
    uint64_t size = vd_image_size(img);
    if (offset >= size) {
        memset(p, 0, len);
        return true;
    }
    if (len > size - offset) {
        size_t inside = (size_t)(size - offset);
        memset(p + inside, 0, len - inside);
        len = inside;
    }
    /* Extents that need decoding are collected and decoded side by side. */
    VdDecodeBatch *batch = NULL;
    bool ok = true;
    while (len > 0 && ok) {
        VdExtent ext;
        if (!vd_drv_block_status(img, offset, len, 0, &ext, error)) {
            ok = false;
            break;
        }
        size_t n = (size_t)ext.length;
        switch (ext.state) {
        case VD_EXTENT_DATA:
            ok = vd_host_pread(ext.fd, img->name, p, n, ext.host_offset, true, error);
            break;
        case VD_EXTENT_DATA_DECODE: {
            *decoded = true;
            /* Pieces aligned to the format's decoding unit (its cluster),
             * one per core at least, never two sharing a unit. */
            uint64_t unit = img->decode_unit ? img->decode_unit : 65536;
            uint64_t piece = MAX(unit, (n / cores() + unit - 1) / unit * unit);
            if (batch == NULL && n == len && n <= unit) {
                ok = vd_drv_pread(img, p, n, offset, error);
                break;
            }
            if (batch == NULL)
                batch = vd_decode_batch_new();
            for (uint64_t done = 0; done < n;) {
                uint64_t end = MIN(n, (offset + done) / unit * unit + piece - offset);
                if (end <= done)
                    end = n;
                vd_decode_batch_add(batch, img, p + done, (size_t)(end - done), offset + done);
                done = end;
            }
            break;
        }
        case VD_EXTENT_ZERO:
            memset(p, 0, n);
            break;
        case VD_EXTENT_UNALLOCATED:
            ok = vd_image_read_backing(img, p, n, offset, error);
            break;
        }
        p += n;
        len -= n;
        offset += n;
    }
    if (batch != NULL) {
        /* Wait even after a failure: the jobs write into buf. */
        GError *berr = NULL;
        if (!vd_decode_batch_finish(batch, ok ? error : &berr))
            ok = false;
        g_clear_error(&berr);
    }
    return ok;
}

/* Keep msg as the last error; true when it differs from the one before
 * (so that a request retried in a loop is logged once). */
static bool note_error(VdImage *img, const char *msg)
{
    g_mutex_lock(&img->error_lock);
    bool changed = g_strcmp0(img->io_error, msg) != 0;
    if (changed) {
        g_free(img->io_error);
        img->io_error = g_strdup(msg);
    }
    g_mutex_unlock(&img->error_lock);
    return changed;
}

void vd_image_set_corrupt(VdImage *img, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (!g_atomic_int_compare_and_exchange(&img->corrupt, 0, 1))
        return;
    note_error(img, msg);
    g_warning("%s; the image is marked corrupt and will not be written again", msg);
    if (img->driver->mark_corrupt != NULL && !img->read_only)
        img->driver->mark_corrupt(img);
}

bool vd_image_guard_write(VdImage *img, VdMetaMap *map, uint64_t host_offset, uint64_t len,
                          GError **error)
{
    VdMetaRange hit;
    if (map == NULL || !vd_meta_map_find(map, host_offset, len, &hit))
        return true;
    g_autofree char *msg = g_strdup_printf(
        "%s: refused a data write at host offset 0x%" G_GINT64_MODIFIER "x+0x%" G_GINT64_MODIFIER
        "x: it would overwrite the %s at 0x%" G_GINT64_MODIFIER "x",
        img->name, host_offset, len, hit.what, hit.start);
    vd_image_set_corrupt(img, "%s", msg);
    /* The logged text itself: recording it at the FUSE boundary adds no line. */
    vd_set_error(error, EIO, "%s", msg);
    return false;
}

void vd_image_record_error(VdImage *img, const GError *err)
{
    /* A corrupt image keeps why it was marked so: every later write is
     * refused with that reason inside the message, and recording those
     * refusals would nest the reason once more, and log a new line, per
     * write. */
    if (err == NULL || g_atomic_int_get(&img->corrupt))
        return;
    switch (vd_error_errno(err)) {
    case ENOSPC:
    case EROFS:
    case EINVAL:
    case EBUSY:
    case EFBIG:
    case EACCES:
    case EPERM:
    case ENXIO:
    case EOPNOTSUPP:
    case EINTR:     /* the caller gave up (vd-interrupt.h) */
    case ECANCELED: /* the mount is going */
        return;
    default:
        break;
    }
    if (note_error(img, err->message))
        g_warning("%s", err->message);
}

bool vd_image_check(VdImage *img, VdCheckReport *report, GError **error)
{
    memset(report, 0, sizeof *report);
    report->lines = g_ptr_array_new_with_free_func(g_free);
    if (img->driver->check == NULL) {
        vd_set_error(error, ENOTSUP, "%s: the %s format has no consistency check", img->name,
                     img->driver->name);
        return false;
    }
    g_rw_lock_writer_lock(&img->write_lock);
    bool ok = img->driver->check(img, report, error);
    g_rw_lock_writer_unlock(&img->write_lock);
    return ok;
}

void vd_check_report_clear(VdCheckReport *report)
{
    g_clear_pointer(&report->lines, g_ptr_array_unref);
}

char *vd_image_last_error(VdImage *img)
{
    g_mutex_lock(&img->error_lock);
    char *e = g_strdup(img->io_error);
    g_mutex_unlock(&img->error_lock);
    return e;
}

static bool check_writable(VdImage *img, GError **error)
{
    if (img->read_only) {
        vd_set_error(error, EROFS, "%s: image is read-only", img->name);
        return false;
    }
    if (g_atomic_int_get(&img->corrupt)) {
        /* Why, as logged once already: recording it again logs nothing. */
        g_autofree char *why = vd_image_last_error(img);
        if (why != NULL)
            vd_set_error(error, EIO, "%s; the image is marked corrupt", why);
        else
            vd_set_error(error, EIO, "%s: image is marked corrupt", img->name);
        return false;
    }
    return image_take_write_locks(img, error);
}

static void write_begin(VdImage *img)
{
    if (img->driver->caps & VD_CAP_SERIAL_WRITES)
        g_rw_lock_writer_lock(&img->write_lock);
}

static void write_end(VdImage *img)
{
    if (img->driver->caps & VD_CAP_SERIAL_WRITES)
        g_rw_lock_writer_unlock(&img->write_lock);
}

static bool check_write_range(VdImage *img, uint64_t offset, uint64_t len, GError **error)
{
    uint64_t end;
    if (__builtin_add_overflow(offset, len, &end) || end > INT64_MAX) {
        vd_set_error(error, EFBIG, "%s: write past the largest possible offset", img->name);
        return false;
    }
    if (end > vd_image_size(img) && !(img->driver->caps & VD_CAP_GROW_ON_WRITE)) {
        vd_set_error(error, ENOSPC,
                     "%s: write at 0x%" G_GINT64_MODIFIER "x past the virtual disk's end",
                     img->name, offset);
        return false;
    }
    return true;
}

static bool image_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    if (!check_writable(img, error) || !check_write_range(img, offset, len, error))
        return false;
    if (len == 0)
        return true;
    if (img->driver->pwrite_fast != NULL) {
        /* Overwrites of allocated data run side by side; anything that
         * changes metadata waits for them and runs alone. */
        g_rw_lock_reader_lock(&img->write_lock);
        int r = vd_drv_pwrite_fast(img, buf, len, offset, error);
        g_rw_lock_reader_unlock(&img->write_lock);
        if (r != VD_FAST_SLOW)
            return r == VD_FAST_DONE;
    }
    write_begin(img);
    bool ok = vd_drv_pwrite(img, buf, len, offset, error);
    write_end(img);
    return ok;
}

static bool image_write_zeroes(VdImage *img, uint64_t offset, uint64_t len, unsigned flags,
                               GError **error)
{
    if (!check_writable(img, error) || !check_write_range(img, offset, len, error))
        return false;
    if (len == 0)
        return true;
    if (img->driver->write_zeroes != NULL) {
        write_begin(img);
        bool ok = vd_drv_write_zeroes(img, offset, len, flags, error);
        write_end(img);
        return ok;
    }
    /* No native zeroing: write zero buffers. */
    size_t chunk = (size_t)vd_min_u64(len, 1u << 20);
    g_autofree uint8_t *zeros = g_malloc0(chunk);
    while (len > 0) {
        size_t n = (size_t)vd_min_u64(len, chunk);
        write_begin(img);
        bool ok = vd_drv_pwrite(img, zeros, n, offset, error);
        write_end(img);
        if (!ok)
            return false;
        offset += n;
        len -= n;
    }
    return true;
}

static bool image_truncate(VdImage *img, uint64_t new_size, GError **error)
{
    if (!check_writable(img, error))
        return false;
    uint64_t size = vd_image_size(img);
    if (new_size == size)
        return true;
    if (img->driver->truncate == NULL) {
        vd_set_error(error, EINVAL, "%s: format %s cannot be resized", img->name,
                     img->driver->name);
        return false;
    }
    if (new_size < size && !(img->driver->caps & VD_CAP_SHRINK)) {
        vd_set_error(error, EINVAL,
                     "%s: format %s cannot be shrunk (from %" G_GUINT64_FORMAT
                     " to %" G_GUINT64_FORMAT " bytes)",
                     img->name, img->driver->name, size, new_size);
        return false;
    }
    if (new_size > INT64_MAX) {
        vd_set_error(error, EFBIG, "%s: size %" G_GUINT64_FORMAT " is too large", img->name,
                     new_size);
        return false;
    }
    g_rw_lock_writer_lock(&img->write_lock);
    bool ok = img->driver->truncate(img, new_size, error);
    if (ok)
        __atomic_store_n(&img->size, new_size, __ATOMIC_RELEASE);
    g_rw_lock_writer_unlock(&img->write_lock);
    return ok;
}

/* Read-ahead is dropped before a change and again after it, since a
 * read-ahead started meanwhile may have seen half of it. */
bool vd_image_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error)
{
    ra_invalidate(img);
    bool ok = image_pwrite(img, buf, len, offset, error);
    ra_invalidate(img);
    return ok;
}

bool vd_image_write_zeroes(VdImage *img, uint64_t offset, uint64_t len, unsigned flags,
                           GError **error)
{
    ra_invalidate(img);
    bool ok = image_write_zeroes(img, offset, len, flags, error);
    ra_invalidate(img);
    return ok;
}

bool vd_image_truncate(VdImage *img, uint64_t new_size, GError **error)
{
    ra_invalidate(img);
    bool ok = image_truncate(img, new_size, error);
    ra_invalidate(img);
    return ok;
}

bool vd_image_flush(VdImage *img, GError **error)
{
    if (img->read_only)
        return true;
    write_begin(img);
    bool ok = img->driver->flush != NULL ? vd_drv_flush(img, error)
                                         : vd_host_fdatasync(img->fd, img->name, error);
    write_end(img);
    return ok;
}
