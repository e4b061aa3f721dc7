/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <fcntl.h>
#include <stdint.h>
#include <string.h>

#include "vd-error.h"
#include "vd-lock.h"

/* QEMU's block permissions, as bit numbers (include/block/block-common.h). */
enum {
    PERM_CONSISTENT_READ = 1u << 0,
    PERM_WRITE = 1u << 1,
    PERM_WRITE_UNCHANGED = 1u << 2,
    PERM_RESIZE = 1u << 3,
    PERM_COUNT = 4,
};
#define LOCK_PERM_BASE   100
#define LOCK_SHARED_BASE 200

/* Both readers and writers share consistent reads and unchanged writes,
 * never writes or resizes. */
#define SHARED_PERMS (PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED)

static const char *const perm_names[PERM_COUNT] = {"consistent read", "write", "write unchanged",
                                                   "resize"};

static int ofd_lock(int fd, int cmd, short type, off_t byte, struct flock *out)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    int r = fcntl(fd, cmd, &fl);
    if (out != NULL)
        *out = fl;
    return r;
}

/* Whether another open file holds a lock on byte. */
static bool byte_held_elsewhere(int fd, off_t byte)
{
    struct flock fl;
    return ofd_lock(fd, F_OFD_GETLK, F_WRLCK, byte, &fl) == 0 && fl.l_type != F_UNLCK;
}

static char *file_key(const struct stat *st)
{
    return g_strdup_printf("%ju:%ju", (uintmax_t)st->st_dev, (uintmax_t)st->st_ino);
}

void vd_lock_note(VdContext *ctx, const struct stat *st, bool held)
{
    g_autofree char *key = file_key(st);
    g_mutex_lock(&ctx->lock_lock);
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(ctx->locked_files, key));
    if (held)
        g_hash_table_insert(ctx->locked_files, g_steal_pointer(&key), GUINT_TO_POINTER(n + 1));
    else if (n <= 1)
        g_hash_table_remove(ctx->locked_files, key);
    else
        g_hash_table_insert(ctx->locked_files, g_steal_pointer(&key), GUINT_TO_POINTER(n - 1));
    g_mutex_unlock(&ctx->lock_lock);
}

/* Other opens of this file by this process (beyond the one asking). */
static bool held_by_us(VdContext *ctx, const struct stat *st)
{
    g_autofree char *key = file_key(st);
    g_mutex_lock(&ctx->lock_lock);
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(ctx->locked_files, key));
    g_mutex_unlock(&ctx->lock_lock);
    return n > 1;
}

static bool no_locks_here(VdContext *ctx, const char *name, int err)
{
    if (err != EINVAL && err != ENOLCK && err != EOPNOTSUPP)
        return false;
    /* The host filesystem has no OFD locks (some network ones): go on
     * unlocked, as QEMU's locking=auto does, and say so once. */
    if (g_atomic_int_compare_and_exchange(&ctx->lock_warned, 0, 1))
        g_warning("%s: the host filesystem refuses byte-range locks (%s): images are used "
                  "without QEMU's locks",
                  name, g_strerror(err));
    return true;
}

/* perm conflicts: we want it and someone does not share it (wanted), or
 * someone holds it and we do not share it. */
static void set_busy(VdContext *ctx, const struct stat *st, const char *name, unsigned perm,
                     bool wanted, GError **error)
{
    g_autofree char *what =
        wanted ? g_strdup_printf("in use by an opener that does not share '%s'", perm_names[perm])
               : g_strdup_printf("another opener holds the '%s' permission", perm_names[perm]);
    if (held_by_us(ctx, st))
        vd_set_error(error, EBUSY,
                     "%s: %s: another image of this vdiskfs mount uses it (as its backing "
                     "file, or an open snapshot), or another process does",
                     name, what);
    else
        vd_set_error(error, EBUSY, "%s: %s (another process, QEMU?)", name, what);
}

bool vd_lock_fd(VdContext *ctx, int fd, const struct stat *st, const char *name, bool writable,
                GError **error)
{
    if (ctx->force_share && !writable)
        return true;
    unsigned perm = PERM_CONSISTENT_READ | (writable ? PERM_WRITE | PERM_RESIZE : 0);
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        unsigned bit = 1u << i;
        off_t bytes[2] = {(perm & bit) ? (off_t)(LOCK_PERM_BASE + i) : -1,
                          !(SHARED_PERMS & bit) ? (off_t)(LOCK_SHARED_BASE + i) : -1};
        for (int k = 0; k < 2; k++) {
            if (bytes[k] < 0)
                continue;
            if (ofd_lock(fd, F_OFD_SETLK, F_RDLCK, bytes[k], NULL) < 0) {
                if (no_locks_here(ctx, name, errno))
                    return true;
                vd_set_error_errno(error, errno == EAGAIN ? EBUSY : errno,
                                   "%s: cannot lock byte %jd", name, (intmax_t)bytes[k]);
                goto fail;
            }
        }
    }
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        unsigned bit = 1u << i;
        if ((perm & bit) && byte_held_elsewhere(fd, LOCK_SHARED_BASE + i)) {
            set_busy(ctx, st, name, i, true, error);
            goto fail;
        }
        if (!(SHARED_PERMS & bit) && byte_held_elsewhere(fd, LOCK_PERM_BASE + i)) {
            set_busy(ctx, st, name, i, false, error);
            goto fail;
        }
    }
    if (!writable) {
        /* A writer going back to reading gives the writer's bytes up. */
        ofd_lock(fd, F_OFD_SETLK, F_UNLCK, LOCK_PERM_BASE + 1, NULL);
        ofd_lock(fd, F_OFD_SETLK, F_UNLCK, LOCK_PERM_BASE + 3, NULL);
    }
    return true;
fail:
    if (writable) {
        /* Stay the reader we were (or nothing, for a fresh open). */
        ofd_lock(fd, F_OFD_SETLK, F_UNLCK, LOCK_PERM_BASE + 1, NULL);
        ofd_lock(fd, F_OFD_SETLK, F_UNLCK, LOCK_PERM_BASE + 3, NULL);
    }
    return false;
}
