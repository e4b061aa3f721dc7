/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Live directories: inotify on every scanned directory of IMAGEDIR, so that
 * the kernel forgets names and attributes as soon as the host changes
 * instead of after attr_timeout. Scans themselves notice changes by the
 * directory's times; this only drops what the kernel cached.
 */
#include "config.h"

#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "fuse/vfs-image.h"
#include "fuse/vfs-watch.h"

#define WATCH_MASK                                                                                 \
    (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB | IN_ONLYDIR)

struct VfsWatch {
    int inotify_fd;
    int stop_fd;
    GThread *thread;
    GHashTable *dirs; /* wd -> relpath of the directory; guarded by VfsFs.lock */
    GHashTable *wds;  /* relpath -> wd */
};

void vfs_watch_dir(VfsFs *fs, const char *relpath)
{
    VfsWatch *w = fs->watch;
    if (w == NULL)
        return;
    g_mutex_lock(&fs->lock);
    bool known = g_hash_table_contains(w->wds, relpath);
    g_mutex_unlock(&fs->lock);
    if (known)
        return;
    g_autofree char *host = vfs_host_path(fs, relpath);
    int wd = inotify_add_watch(w->inotify_fd, host, WATCH_MASK);
    if (wd < 0) {
        g_debug("inotify on %s: %s", host, g_strerror(errno));
        return;
    }
    g_mutex_lock(&fs->lock);
    g_hash_table_insert(w->dirs, GINT_TO_POINTER(wd), g_strdup(relpath));
    g_hash_table_insert(w->wds, g_strdup(relpath), GINT_TO_POINTER(wd));
    g_mutex_unlock(&fs->lock);
}

typedef struct {
    fuse_ino_t parent; /* 0: none */
    char *name;
    GArray *inodes; /* fuse_ino_t of nodes for the changed path */
} WatchAction;

/* What the kernel must forget for one event; computed under the lock. */
static void plan_event(VfsFs *fs, const char *dir_rel, const char *name, WatchAction *a)
{
    g_autofree char *dkey = g_strdup_printf("d:%s", dir_rel);
    VfsNode *dir = g_hash_table_lookup(fs->by_key, dkey);
    a->parent = dir ? dir->ino : 0;
    a->name = g_strdup(name);
    a->inodes = g_array_new(FALSE, FALSE, sizeof(fuse_ino_t));
    g_autofree char *rel = *dir_rel ? g_strconcat(dir_rel, "/", name, NULL) : g_strdup(name);
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, fs->by_ino);
    while (g_hash_table_iter_next(&it, NULL, &v)) {
        VfsNode *n = v;
        if (n->kind == VFS_NODE_IMAGE && strcmp(n->relpath, rel) == 0)
            g_array_append_val(a->inodes, n->ino);
    }
}

static void handle_events(VfsFs *fs, const char *buf, ssize_t len)
{
    VfsWatch *w = fs->watch;
    g_autoptr(GArray) actions = g_array_new(FALSE, TRUE, sizeof(WatchAction));
    g_mutex_lock(&fs->lock);
    for (const char *p = buf; p < buf + len;) {
        const struct inotify_event *ev = (const struct inotify_event *)p;
        p += sizeof *ev + ev->len;
        if (ev->mask & IN_IGNORED) {
            char *rel = g_hash_table_lookup(w->dirs, GINT_TO_POINTER(ev->wd));
            if (rel != NULL) {
                g_hash_table_remove(w->wds, rel);
                g_hash_table_remove(w->dirs, GINT_TO_POINTER(ev->wd));
            }
            continue;
        }
        const char *dir_rel = g_hash_table_lookup(w->dirs, GINT_TO_POINTER(ev->wd));
        if (dir_rel == NULL || ev->len == 0)
            continue;
        WatchAction a;
        plan_event(fs, dir_rel, ev->name, &a);
        g_array_append_val(actions, a);
    }
    g_mutex_unlock(&fs->lock);
    /* Notify without the lock: the kernel may wait for requests that need it. */
    for (guint i = 0; i < actions->len; i++) {
        WatchAction *a = &g_array_index(actions, WatchAction, i);
        if (fs->se != NULL) {
            if (a->parent != 0)
                fuse_lowlevel_notify_inval_entry(fs->se, a->parent, a->name, strlen(a->name));
            for (guint j = 0; j < a->inodes->len; j++)
                fuse_lowlevel_notify_inval_inode(fs->se, g_array_index(a->inodes, fuse_ino_t, j), 0,
                                                 0);
        }
        g_free(a->name);
        g_array_unref(a->inodes);
    }
}

static gpointer watch_thread(gpointer data)
{
    VfsFs *fs = data;
    VfsWatch *w = fs->watch;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        struct pollfd pfd[2] = {{w->inotify_fd, POLLIN, 0}, {w->stop_fd, POLLIN, 0}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (pfd[1].revents)
            break;
        ssize_t n = read(w->inotify_fd, buf, sizeof buf);
        if (n > 0)
            handle_events(fs, buf, n);
    }
    return NULL;
}

bool vfs_watch_start(VfsFs *fs, struct fuse_session *se)
{
    VfsWatch *w = g_new0(VfsWatch, 1);
    w->inotify_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    w->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (w->inotify_fd < 0 || w->stop_fd < 0) {
        g_warning("inotify unavailable (%s): changes in IMAGEDIR show after attr_timeout",
                  g_strerror(errno));
        if (w->inotify_fd >= 0)
            close(w->inotify_fd);
        if (w->stop_fd >= 0)
            close(w->stop_fd);
        g_free(w);
        return false;
    }
    w->dirs = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    w->wds = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    fs->se = se;
    fs->watch = w;
    w->thread = g_thread_new("vdiskfs-watch", watch_thread, fs);
    return true;
}

void vfs_watch_stop(VfsFs *fs)
{
    VfsWatch *w = fs->watch;
    if (w == NULL)
        return;
    uint64_t one = 1;
    if (write(w->stop_fd, &one, sizeof one) != sizeof one)
        g_warning("cannot stop the inotify thread: %s", g_strerror(errno));
    g_thread_join(w->thread);
    fs->watch = NULL;
    fs->se = NULL;
    close(w->inotify_fd);
    close(w->stop_fd);
    g_hash_table_unref(w->dirs);
    g_hash_table_unref(w->wds);
    g_free(w);
}
