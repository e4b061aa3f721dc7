/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The namespace: the mirrored directory tree (which host files are
 * images, which are hidden parts of another image) and the .snapshots/
 * tree, from scans of IMAGEDIR's directories kept until they change.
 */
#include "config.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "src/vd-error.h"
#include "src/vd-file.h"
#include "src/vd-pool.h"
#include "fuse/vfs-image.h"
#include "fuse/vfs-partitions.h"
#include "fuse/vfs-tree.h"
#include "fuse/vfs-watch.h"

/* One scanned directory of IMAGEDIR. */
typedef struct {
    struct timespec mtime, ctime;
    dev_t dev;
    ino_t ino;
    GHashTable *entries; /* name -> VfsScanEntry* */
} VfsDirCache;

typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    bool is_dir;
    const VdDriver *driver; /* NULL: not an image */
    bool hidden;            /* part of another image */
    /* Probed from the head of a container whose size costs decoding it
     * all (a .gz): peeked at its first stat, not by the scan, so that a
     * listing does not wait for that decode. */
    bool peek_later;
    /* A container (disk.qcow2.xz) shown under the name inside (disk.qcow2):
     * that name here while probing, then, once it is the entry's key, the
     * host file's name in host_name. Inline, as entries are copied flat. */
    char shown[NAME_MAX + 1];
    char host_name[NAME_MAX + 1];
} VfsScanEntry;

static void dir_cache_free(gpointer p)
{
    VfsDirCache *dc = p;
    g_hash_table_unref(dc->entries);
    g_free(dc);
}

void vfs_child_clear(VfsChild *c)
{
    g_clear_pointer(&c->relpath, g_free);
    g_clear_pointer(&c->snap_name, g_free);
}

GHashTable *vfs_dir_table_new(void)
{
    return g_hash_table_new_full(g_str_hash, g_str_equal, g_free, dir_cache_free);
}

static char *child_relpath(const char *relpath, const char *name)
{
    return *relpath ? g_strconcat(relpath, "/", name, NULL) : g_strdup(name);
}

static bool timespec_eq(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static char *member_key(dev_t dev, ino_t ino)
{
    return g_strdup_printf("%ju:%ju", (uintmax_t)dev, (uintmax_t)ino);
}

/* Probe one entry, reusing what an earlier scan learnt when it is unchanged. */
static VfsScanEntry *scan_entry(VfsFs *fs, const char *host, const struct stat *st,
                                const VfsScanEntry *old)
{
    VfsScanEntry *e = g_new0(VfsScanEntry, 1);
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->size = st->st_size;
    e->mtime = st->st_mtim;
    e->is_dir = S_ISDIR(st->st_mode);
    /* Reuse an unchanged file's verdict, but probe non-images again: some
     * formats (split raw, bundles) depend on other files of the directory. */
    if (old != NULL && old->driver != NULL && old->dev == e->dev && old->ino == e->ino &&
        old->size == e->size && timespec_eq(&old->mtime, &e->mtime) && old->is_dir == e->is_dir) {
        e->driver = old->driver;
        e->peek_later = old->peek_later;
        g_strlcpy(e->shown, old->host_name[0] ? old->shown : "", sizeof e->shown);
        return e;
    }
    if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode) || S_ISBLK(st->st_mode)) {
        g_autoptr(GError) err = NULL;
        g_autofree char *shown = NULL;
        bool archive = false;
        e->driver = vd_probe_path_shown(fs->ctx, host, &shown, &archive, &e->peek_later, &err);
        /* An archive of several images: a directory named like it. Only
         * an archive's probe pays for reading its member list. */
        if (S_ISREG(st->st_mode) && archive) {
            g_autoptr(GPtrArray) members = vd_file_archive_members(fs->ctx, host);
            if (members != NULL) {
                e->driver = NULL;
                e->is_dir = true;
                return e;
            }
        }
        if (err != NULL)
            g_debug("%s", err->message);
        if (shown != NULL)
            g_strlcpy(e->shown, shown, sizeof e->shown);
    }
    return e;
}

/* One entry of a directory scan, probed or peeked on a scan thread. */
typedef struct {
    VfsFs *fs;
    int dirfd;
    char *name;
    char *host; /* the host path to probe; for a peek, the image's relpath */
    const VfsScanEntry *prev;
    const VdDriver *driver; /* for a peek: what the probe found */
    VfsScanEntry *out;      /* NULL: not listed */
} ScanJob;

/* Directories smaller than this are scanned on the caller's thread. */
#define SCAN_PARALLEL_MIN 32
#define SCAN_THREADS      8

static void scan_job_free(gpointer p)
{
    ScanJob *j = p;
    g_free(j->name);
    g_free(j->host);
    g_free(j->out);
    g_free(j);
}

static void scan_job_run(gpointer data, gpointer user)
{
    (void)user;
    ScanJob *j = data;
    struct stat st;
    if (fstatat(j->dirfd, j->name, &st, 0) < 0)
        return;
    struct stat lst;
    /* Never follow a symlink to a directory: no loops, no escapes. */
    if (S_ISDIR(st.st_mode) && fstatat(j->dirfd, j->name, &lst, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISLNK(lst.st_mode))
        return;
    j->out = scan_entry(j->fs, j->host, &st, j->prev);
}

static void peek_job_run(gpointer data, gpointer user)
{
    (void)user;
    ScanJob *j = data;
    struct stat st;
    VfsImage *vi = vfs_image_get_stat(j->fs, j->host, &st);
    if (vi == NULL)
        return;
    g_mutex_lock(&vi->lock);
    vfs_image_peek_locked(vi, j->driver, &st);
    g_mutex_unlock(&vi->lock);
    vfs_image_unref(vi);
}

typedef struct {
    GFunc fn;
} ScanWork;

static void scan_thread_run(gpointer job, gpointer user_data)
{
    vd_thread_unpin();
    ((const ScanWork *)user_data)->fn(job, NULL);
}

/* fn on every job, by a few threads when there are many: the scan's
 * reads wait on the disk side by side. Returns when all are done. */
static void scan_parallel(GPtrArray *jobs, GFunc fn)
{
    GThreadPool *pool = NULL;
    ScanWork work = {fn};
    if (jobs->len >= SCAN_PARALLEL_MIN)
        pool = g_thread_pool_new(scan_thread_run, &work, SCAN_THREADS, FALSE, NULL);
    for (guint i = 0; i < jobs->len; i++) {
        if (pool == NULL || !g_thread_pool_push(pool, g_ptr_array_index(jobs, i), NULL))
            fn(g_ptr_array_index(jobs, i), NULL);
    }
    if (pool != NULL)
        g_thread_pool_free(pool, FALSE, TRUE);
}

static VfsDirCache *dir_scan(VfsFs *fs, const char *relpath, const struct stat *dst,
                             const VfsDirCache *old, int *err)
{
    g_autofree char *host = vfs_host_path(fs, relpath);
    /* An archive shown as a directory: its images, each probed as
     * ARCHIVE/MEMBER (vd_file_open opens those), with the archive's
     * identity; the watch of the directory it is in sees it change. */
    g_autoptr(GPtrArray) members =
        S_ISREG(dst->st_mode) ? vd_file_archive_members(fs->ctx, host) : NULL;
    DIR *d = NULL;
    if (S_ISREG(dst->st_mode) && members == NULL) {
        *err = -ENOTDIR;
        return NULL;
    }
    if (members == NULL) {
        /* Watch before reading, so nothing changes unseen in between. */
        vfs_watch_dir(fs, relpath);
        d = opendir(host);
        if (d == NULL) {
            *err = -errno;
            return NULL;
        }
    }
    VfsDirCache *dc = g_new0(VfsDirCache, 1);
    dc->mtime = dst->st_mtim;
    dc->ctime = dst->st_ctim;
    dc->dev = dst->st_dev;
    dc->ino = dst->st_ino;
    dc->entries = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    for (guint i = 0; members != NULL && i < members->len; i++) {
        const char *name = g_ptr_array_index(members, i);
        g_autofree char *child = g_build_filename(host, name, NULL);
        const VfsScanEntry *prev = old ? g_hash_table_lookup(old->entries, name) : NULL;
        VfsScanEntry *e = scan_entry(fs, child, dst, prev);
        e->is_dir = false; /* no archives within archives */
        g_hash_table_insert(dc->entries, g_strdup(name), e);
    }
    /* Probe the entries side by side: a cold directory of thousands of
     * images is thousands of small reads, each waiting on the disk. */
    g_autoptr(GPtrArray) jobs = g_ptr_array_new_with_free_func(scan_job_free);
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (*relpath == '\0' &&
            (strcmp(name, VFS_SNAPSHOT_DIR) == 0 || strcmp(name, VFS_PARTITION_DIR) == 0))
            continue;
        ScanJob *j = g_new0(ScanJob, 1);
        j->fs = fs;
        j->dirfd = dirfd(d);
        j->name = g_strdup(name);
        j->host = g_build_filename(host, name, NULL);
        j->prev = old ? g_hash_table_lookup(old->entries, name) : NULL;
        g_ptr_array_add(jobs, j);
    }
    scan_parallel(jobs, scan_job_run);
    for (guint i = 0; i < jobs->len; i++) {
        ScanJob *j = g_ptr_array_index(jobs, i);
        if (j->out != NULL)
            g_hash_table_insert(dc->entries, g_steal_pointer(&j->name), g_steal_pointer(&j->out));
    }
    if (d != NULL)
        closedir(d);

    /* Containers go by the name inside, when no other file has it. */
    g_autoptr(GPtrArray) renames = g_ptr_array_new();
    GHashTableIter rit;
    gpointer rk, rv;
    g_hash_table_iter_init(&rit, dc->entries);
    while (g_hash_table_iter_next(&rit, &rk, &rv)) {
        if (((VfsScanEntry *)rv)->shown[0] != '\0')
            g_ptr_array_add(renames, rk);
    }
    for (guint i = 0; i < renames->len; i++) {
        char *host_name = NULL;
        VfsScanEntry *e = NULL;
        g_hash_table_steal_extended(dc->entries, g_ptr_array_index(renames, i),
                                    (gpointer *)&host_name, (gpointer *)&e);
        if (!g_hash_table_contains(dc->entries, e->shown)) {
            g_strlcpy(e->host_name, host_name, sizeof e->host_name);
            g_hash_table_insert(dc->entries, g_strdup(e->shown), e);
            g_free(host_name);
        } else {
            g_hash_table_insert(dc->entries, host_name, e);
        }
    }

    /* Read the images' headers (never their tables or backing chains) to
     * learn which files they consist of, so that those can be hidden. */
    g_autoptr(GPtrArray) peeks = g_ptr_array_new_with_free_func(scan_job_free);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, dc->entries);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        VfsScanEntry *e = v;
        if (e->driver == NULL || e->peek_later)
            continue;
        ScanJob *j = g_new0(ScanJob, 1);
        j->fs = fs;
        j->host = child_relpath(relpath, e->host_name[0] ? e->host_name : k);
        j->driver = e->driver;
        g_ptr_array_add(peeks, j);
    }
    scan_parallel(peeks, peek_job_run);
    g_mutex_lock(&fs->lock);
    g_hash_table_iter_init(&it, dc->entries);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        VfsScanEntry *e = v;
        g_autofree char *mk = member_key(e->dev, e->ino);
        e->hidden = g_hash_table_contains(fs->members, mk);
    }
    g_mutex_unlock(&fs->lock);
    return dc;
}

/* The scan of relpath, fresh against the host directory's times. Returns
 * with fs->lock held on success. */
static VfsDirCache *dir_get_locked(VfsFs *fs, const char *relpath, int *err)
{
    g_autofree char *host = vfs_host_path(fs, relpath);
    struct stat st;
    if (stat(host, &st) < 0) {
        *err = -errno;
        return NULL;
    }
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) { /* a regular file: an archive */
        *err = -ENOTDIR;
        return NULL;
    }
    g_mutex_lock(&fs->lock);
    VfsDirCache *dc = g_hash_table_lookup(fs->dirs, relpath);
    if (dc != NULL && timespec_eq(&dc->mtime, &st.st_mtim) &&
        timespec_eq(&dc->ctime, &st.st_ctim) && dc->ino == st.st_ino && dc->dev == st.st_dev)
        return dc;
    /* Scan without the lock: probing and opening images does I/O. The old
     * scan is only read for reuse, from a private copy of its entries. */
    g_autoptr(GHashTable) old_entries = NULL;
    if (dc != NULL) {
        old_entries = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        GHashTableIter it;
        gpointer k, v;
        g_hash_table_iter_init(&it, dc->entries);
        while (g_hash_table_iter_next(&it, &k, &v)) {
            /* Keyed by host file name, as the new scan looks them up. */
            const VfsScanEntry *e = v;
            g_hash_table_insert(old_entries, g_strdup(e->host_name[0] ? e->host_name : k),
                                g_memdup2(v, sizeof(VfsScanEntry)));
        }
    }
    g_mutex_unlock(&fs->lock);
    VfsDirCache old = {.entries = old_entries};
    VfsDirCache *fresh = dir_scan(fs, relpath, &st, old_entries ? &old : NULL, err);
    if (fresh == NULL)
        return NULL;
    g_mutex_lock(&fs->lock);
    g_hash_table_replace(fs->dirs, g_strdup(relpath), fresh);
    return fresh;
}

static void dir_entry_free(gpointer p)
{
    VfsDirEntry *e = p;
    g_free(e->name);
    g_free(e);
}

static VfsDirEntry *list_add(GPtrArray *out, const char *name, VfsNodeKind kind)
{
    VfsDirEntry *e = g_new0(VfsDirEntry, 1);
    e->name = g_strdup(name);
    e->kind = kind;
    g_ptr_array_add(out, e);
    return e;
}

static int entry_cmp(gconstpointer a, gconstpointer b)
{
    const VfsDirEntry *x = *(VfsDirEntry *const *)a, *y = *(VfsDirEntry *const *)b;
    return strcmp(x->name, y->name);
}

/* Whether a scan entry's image can have snapshots at all: its format's
 * driver lists them. The others are left unopened by .snapshots/ (a
 * listing of it would else open every image in the directory, a .gz's
 * full inflate included). */
static bool entry_has_snapshot_format(const VfsScanEntry *e)
{
    return e->driver != NULL && e->driver->snapshot_list != NULL;
}

/* How many snapshots an image has (0 when it cannot be opened). */
static unsigned image_snapshot_count(VfsFs *fs, const char *relpath)
{
    VfsImage *vi = vfs_image_get(fs, relpath);
    if (vi == NULL)
        return 0;
    int err;
    VdImage *img = vfs_image_acquire(vi, &err);
    unsigned n = 0;
    if (img != NULL) {
        g_mutex_lock(&vi->lock);
        n = vi->snap_names ? vi->snap_names->len : 0;
        g_mutex_unlock(&vi->lock);
        vd_image_unref(img);
    }
    vfs_image_unref(vi);
    return n;
}

GPtrArray *vfs_list_dir(VfsFs *fs, const VfsNode *dir, int *err)
{
    if (dir->kind >= VFS_NODE_PARTDIR)
        return vfs_part_list_dir(fs, dir, err);
    GPtrArray *out = g_ptr_array_new_with_free_func(dir_entry_free);
    *err = 0;
    if (dir->kind == VFS_NODE_SNAPIMG) {
        VfsImage *vi = vfs_image_get(fs, dir->relpath);
        VdImage *img = vi ? vfs_image_acquire(vi, err) : NULL;
        if (img != NULL) {
            g_mutex_lock(&vi->lock);
            for (guint i = 0; i < vi->snap_names->len; i++)
                list_add(out, g_ptr_array_index(vi->snap_names, i), VFS_NODE_SNAPFILE);
            g_mutex_unlock(&vi->lock);
            vd_image_unref(img);
        }
        if (vi != NULL)
            vfs_image_unref(vi);
        else
            *err = -ENOENT;
        if (*err != 0) {
            g_ptr_array_unref(out);
            return NULL;
        }
        return out;
    }
    if (dir->kind != VFS_NODE_DIR && dir->kind != VFS_NODE_SNAPDIR) {
        g_ptr_array_unref(out);
        *err = -ENOTDIR;
        return NULL;
    }
    VfsDirCache *dc = dir_get_locked(fs, dir->relpath, err);
    if (dc == NULL) {
        g_ptr_array_unref(out);
        return NULL;
    }
    /* Images (as shown, and their host files) whose snapshots to count. */
    g_autoptr(GPtrArray) images = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) hosts = g_ptr_array_new_with_free_func(g_free);
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, dc->entries);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        const VfsScanEntry *e = v;
        if (e->hidden)
            continue;
        if (e->driver != NULL) {
            if (dir->kind == VFS_NODE_DIR) {
                list_add(out, k, VFS_NODE_IMAGE)->attrs_later = e->peek_later;
            } else if (entry_has_snapshot_format(e)) {
                g_ptr_array_add(images, g_strdup(k));
                g_ptr_array_add(hosts, g_strdup(e->host_name[0] ? e->host_name : k));
            }
        } else if (e->is_dir) {
            list_add(out, k, dir->kind == VFS_NODE_DIR ? VFS_NODE_DIR : VFS_NODE_SNAPDIR);
        }
    }
    g_mutex_unlock(&fs->lock);
    if (dir->kind == VFS_NODE_DIR && *dir->relpath == '\0') {
        list_add(out, VFS_SNAPSHOT_DIR, VFS_NODE_SNAPDIR);
        list_add(out, VFS_PARTITION_DIR, VFS_NODE_PARTDIR);
    }
    for (guint i = 0; i < images->len; i++) {
        const char *name = g_ptr_array_index(images, i);
        g_autofree char *rel = child_relpath(dir->relpath, g_ptr_array_index(hosts, i));
        if (image_snapshot_count(fs, rel) > 0)
            list_add(out, name, VFS_NODE_SNAPIMG);
    }
    g_ptr_array_sort(out, entry_cmp);
    return out;
}

int vfs_find_child(VfsFs *fs, const VfsNode *dir, const char *name, VfsChild *child)
{
    memset(child, 0, sizeof *child);
    if (strchr(name, '/') != NULL || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return -ENOENT;
    if (dir->kind == VFS_NODE_DIR && *dir->relpath == '\0' && strcmp(name, VFS_SNAPSHOT_DIR) == 0) {
        child->kind = VFS_NODE_SNAPDIR;
        child->relpath = g_strdup("");
        return 0;
    }
    if (dir->kind == VFS_NODE_DIR && *dir->relpath == '\0' &&
        strcmp(name, VFS_PARTITION_DIR) == 0) {
        child->kind = VFS_NODE_PARTDIR;
        child->relpath = g_strdup("");
        return 0;
    }
    if (dir->kind >= VFS_NODE_PARTDIR)
        return vfs_part_find_child(fs, dir, name, child);
    if (dir->kind == VFS_NODE_SNAPIMG) {
        int64_t date;
        uint32_t nsec;
        uint64_t size;
        if (!vfs_snapshot_info(fs, dir->relpath, name, &date, &nsec, &size))
            return -ENOENT;
        child->kind = VFS_NODE_SNAPFILE;
        child->relpath = g_strdup(dir->relpath);
        child->snap_name = g_strdup(name);
        return 0;
    }
    if (dir->kind != VFS_NODE_DIR && dir->kind != VFS_NODE_SNAPDIR)
        return -ENOTDIR;
    int err = 0;
    VfsDirCache *dc = dir_get_locked(fs, dir->relpath, &err);
    if (dc == NULL)
        return err;
    const VfsScanEntry *e = g_hash_table_lookup(dc->entries, name);
    int ret = -ENOENT;
    bool is_image = false;
    g_autofree char *host_name = NULL;
    if (e != NULL && !e->hidden && (e->driver != NULL || e->is_dir) &&
        (dir->kind == VFS_NODE_DIR || e->driver == NULL || entry_has_snapshot_format(e))) {
        is_image = e->driver != NULL;
        child->dev = e->dev;
        child->ino = e->ino;
        host_name = g_strdup(e->host_name[0] ? e->host_name : name);
        ret = 0;
    }
    g_mutex_unlock(&fs->lock);
    if (ret != 0)
        return ret;
    child->relpath = child_relpath(dir->relpath, host_name);
    if (dir->kind == VFS_NODE_DIR) {
        child->kind = is_image ? VFS_NODE_IMAGE : VFS_NODE_DIR;
    } else if (is_image) {
        if (image_snapshot_count(fs, child->relpath) == 0) {
            g_clear_pointer(&child->relpath, g_free);
            return -ENOENT;
        }
        child->kind = VFS_NODE_SNAPIMG;
    } else {
        child->kind = VFS_NODE_SNAPDIR;
    }
    if (child->kind != VFS_NODE_IMAGE)
        child->dev = child->ino = 0;
    return 0;
}
