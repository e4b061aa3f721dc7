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

bool vd_lock_fd(int fd, const char *name, bool writable, bool force_share, GError **error)
{
    if (force_share)
        return true;
    unsigned perm = PERM_CONSISTENT_READ | (writable ? PERM_WRITE | PERM_RESIZE : 0);
    unsigned shared = PERM_CONSISTENT_READ | PERM_WRITE_UNCHANGED;
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        unsigned bit = 1u << i;
        off_t bytes[2] = {(perm & bit) ? (off_t)(LOCK_PERM_BASE + i) : -1,
                          !(shared & bit) ? (off_t)(LOCK_SHARED_BASE + i) : -1};
        for (int k = 0; k < 2; k++) {
            if (bytes[k] < 0)
                continue;
            if (ofd_lock(fd, F_OFD_SETLK, F_RDLCK, bytes[k], NULL) < 0) {
                if (errno == EINVAL || errno == ENOLCK || errno == EOPNOTSUPP) {
                    /* The host filesystem has no OFD locks (some network
                     * ones): go on unlocked, as QEMU's locking=auto does.
                     * Said once per process, which is one mount: a
                     * message per image or per open would flood the log. */
                    static gint warned;
                    if (g_atomic_int_compare_and_exchange(&warned, 0, 1))
                        g_warning("%s: the host filesystem refuses byte-range locks (%s): images "
                                  "are used without QEMU-compatible locking, so a QEMU using one "
                                  "at the same time goes unnoticed (said once)",
                                  name, g_strerror(errno));
                    else
                        g_debug("%s: no byte-range locks here: %s", name, g_strerror(errno));
                    return true;
                }
                vd_set_error_errno(error, errno == EAGAIN ? EBUSY : errno,
                                   "%s: cannot lock byte %jd", name, (intmax_t)bytes[k]);
                return false;
            }
        }
    }
    for (unsigned i = 0; i < PERM_COUNT; i++) {
        unsigned bit = 1u << i;
        if ((perm & bit) && byte_held_elsewhere(fd, LOCK_SHARED_BASE + i)) {
            vd_set_error(error, EBUSY,
                         "%s: in use by another process (QEMU?) that does not share '%s'", name,
                         perm_names[i]);
            return false;
        }
        if (!(shared & bit) && byte_held_elsewhere(fd, LOCK_PERM_BASE + i)) {
            vd_set_error(error, EBUSY, "%s: another process (QEMU?) holds the '%s' permission",
                         name, perm_names[i]);
            return false;
        }
    }
    return true;
}
