/* SPDX-License-Identifier: GPL-2.0-or-later */
/* vdiskfs: mount a directory of disk images as raw files. */
#include "config.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <stddef.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuse/vfs-fs.h"
#include "fuse/vfs-image.h"
#include "fuse/vfs-ops.h"
#include "fuse/vfs-devio.h"
#include "fuse/vfs-uring.h"
#include "fuse/vfs-watch.h"
#include "src/vd-context.h"
#include "src/vd-dispatch.h"
#include "src/vd-error.h"
#include "src/vd-log.h"

#ifndef PR_SET_IO_FLUSHER /* Linux 5.6; older headers lack it */
#define PR_SET_IO_FLUSHER 57
#endif

typedef struct {
    char *imagedir;
    int rw;
    char *raw_ext;
    char *keyfile;
    char *backing;
    char *symlinks;
    char *cache_size;
    char *mem_budget;
    char *overlay;
    int overlay_discard;
    char *spill_dir;
    int nonempty;
    char *splice_min;
    char *attr_timeout;
    int force_share;
    char *idle_timeout;
    char *read_ahead;
    char *kdf_max_iterations;
    char *uring;
    int nonopt_count;
} VdfsConfig;

enum { KEY_RO, KEY_RW };

#define VDFS_MAX_TIMEOUT (365 * 86400)
/* io_uring entries (each a thread) per CPU, at most, and by default when
 * the kernel has the ring turned on: 4 measured as fast as 1 for a guest
 * filesystem loop-mounted through the mount and faster for parallel
 * readers; 16 slower (more threads than cores; README, Performance). */
#define VDFS_MAX_URING_DEPTH     64
#define VDFS_DEFAULT_URING_DEPTH 4
#define VDFS_DEFAULT_SPILL_DIR   "/var/tmp"

#define VDFS_OPT(t, f, v)                                                                          \
    {                                                                                              \
        t, offsetof(VdfsConfig, f), v                                                              \
    }
static const struct fuse_opt vdfs_opts[] = {
    FUSE_OPT_KEY("ro", KEY_RO),
    FUSE_OPT_KEY("rw", KEY_RW),
    VDFS_OPT("raw_ext=%s", raw_ext, 0),
    VDFS_OPT("keyfile=%s", keyfile, 0),
    VDFS_OPT("backing=%s", backing, 0),
    VDFS_OPT("symlinks=%s", symlinks, 0),
    VDFS_OPT("cache_size=%s", cache_size, 0),
    VDFS_OPT("mem_budget=%s", mem_budget, 0),
    VDFS_OPT("overlay=%s", overlay, 0),
    VDFS_OPT("overlay_discard", overlay_discard, 1),
    VDFS_OPT("spill_dir=%s", spill_dir, 0),
    VDFS_OPT("nonempty", nonempty, 1),
    VDFS_OPT("splice_min=%s", splice_min, 0),
    VDFS_OPT("attr_timeout=%s", attr_timeout, 0),
    VDFS_OPT("force_share", force_share, 1),
    VDFS_OPT("idle_timeout=%s", idle_timeout, 0),
    VDFS_OPT("read_ahead=%s", read_ahead, 0),
    VDFS_OPT("kdf_max_iterations=%s", kdf_max_iterations, 0),
    VDFS_OPT("uring=%s", uring, 0),
    FUSE_OPT_END,
};

static int vdfs_opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    VdfsConfig *cfg = data;
    switch (key) {
    case KEY_RO:
        cfg->rw = 0;
        return 0;
    case KEY_RW:
        cfg->rw = 1;
        return 0;
    case FUSE_OPT_KEY_NONOPT:
        cfg->nonopt_count++;
        if (cfg->imagedir == NULL) {
            cfg->imagedir = g_strdup(arg);
            return 0;
        }
        return 1; /* the mountpoint, for fuse_parse_cmdline */
    default:
        return 1;
    }
}

static void usage(const char *prog)
{
    printf("usage: %s [options] IMAGEDIR MOUNTPOINT\n\n"
           "Shows every disk image in IMAGEDIR (qcow2, VMDK, VHD, VHDX, VDI, raw, ...)\n"
           "as a flat raw file under MOUNTPOINT; internal snapshots appear read-only\n"
           "under MOUNTPOINT/.snapshots/, and each partition of an image as\n"
           "MOUNTPOINT/.partitions/IMAGE/pN (pN numbered as Linux does; snapshots'\n"
           "under .partitions/.snapshots/IMAGE/SNAPSHOT/pN).\n\n"
           "vdiskfs options:\n"
           "    -o ro                  read-only (the default)\n"
           "    -o rw                  allow writes to images that can be written\n"
           "    -o overlay=DIR         writable, but the images are never written:\n"
           "                           the first write to an image makes\n"
           "                           DIR/<path of image>.qcow2 over it and every\n"
           "                           write goes there (kept for the next mount)\n"
           "    -o overlay_discard     remove the overlays at unmount instead\n"
           "    -o nonempty            mount over a directory that is not empty or\n"
           "                           is a mount point already (refused otherwise)\n"
           "    -o allow_other         let other users in (the kernel checks each\n"
           "                           image's own owner and mode)\n"
           "    -o raw_ext=EXT,...     extensions of raw images without a signature\n"
           "                           (default %s)\n"
           "    -o keyfile=PATH        passphrases for encrypted images: a key file\n"
           "                           with one [image/path] group and passphrase=\n"
           "                           per image; must be mode 0600\n"
           "    -o backing=confined|any  backing files and the files named inside\n"
           "                           images (extents, data files) must lie inside\n"
           "                           IMAGEDIR (confined, the default) or anywhere\n"
           "    -o symlinks=confined|any  images that are symlinks resolving outside\n"
           "                           IMAGEDIR are hidden (confined, the default) or\n"
           "                           shown (any: other users may then read files\n"
           "                           outside IMAGEDIR through allow_other)\n"
           "    -o cache_size=BYTES    metadata cache per image (default %u)\n"
           "    -o mem_budget=BYTES    tables (L1, BAT, block maps) and xz stream\n"
           "                           dictionaries of all open images together\n"
           "                           (default 1G; 0 unbounded):\n"
           "                           idle images close to make room, and an image\n"
           "                           that still does not fit fails to open\n"
           "    -o spill_dir=DIR|none  where a .gz is inflated to on its first open,\n"
           "                           as an unlinked file, for later reads (default\n"
           "                           /var/tmp; given up when it would leave less\n"
           "                           than 1 GiB or 5%% free); none: inflate from\n"
           "                           restart points on every miss\n"
           "    -o splice_min=BYTES    hand host file ranges to the kernel (splice)\n"
           "                           for reads of at least BYTES; 0 (default)\n"
           "                           always copies\n"
           "    -o attr_timeout=SECS   how long the kernel caches attributes (1)\n"
           "    -o idle_timeout=SECS   close images unused for SECS seconds (60; 0 never)\n"
           "    -o read_ahead=KB       the mount's kernel read-ahead (1024; 0 leaves the\n"
           "                           kernel's 128)\n"
           "    -o force_share         read without QEMU-compatible image locks (like\n"
           "                           qemu-img -U): read images QEMU is writing;\n"
           "                           writing still needs the locks\n"
           "    -o kdf_max_iterations=N  refuse encrypted images whose key slots ask\n"
           "                           for more than N PBKDF2 iterations (1 to %u;\n"
           "                           default %u)\n"
           "    -o uring=N|off         serve requests over io_uring where the kernel\n"
           "                           offers it (fuse.enable_uring=1, Linux 6.14+),\n"
           "                           N entries per CPU, 1 to %u (default %u when\n"
           "                           the kernel has it on, else off: /dev/fuse)\n\n",
           prog, VD_DEFAULT_RAW_EXTENSIONS, VD_DEFAULT_METADATA_CACHE, VD_KDF_MAX_ITERATIONS_LIMIT,
           VD_DEFAULT_KDF_MAX_ITERATIONS, VDFS_MAX_URING_DEPTH, VDFS_DEFAULT_URING_DEPTH);
}

static bool parse_size(const char *name, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1024 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1024ull * 1024 * 1024, end++;
    if (errno != 0 || end == s || *end != '\0' || *s == '-' ||
        __builtin_mul_overflow((uint64_t)v, mul, out)) {
        fprintf(stderr, "vdiskfs: -o %s=%s: not a size\n", name, s);
        return false;
    }
    return true;
}

/* A whole number from min to max, digits only (no sign, no suffix). */
static bool parse_number(const char *name, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = g_ascii_isdigit(*s) ? strtoull(s, &end, 10) : 0;
    if (!g_ascii_isdigit(*s) || errno != 0 || *end != '\0' || v < min || v > max) {
        fprintf(stderr,
                "vdiskfs: -o %s=%s: not a whole number from %" G_GUINT64_FORMAT
                " to %" G_GUINT64_FORMAT "\n",
                name, s, min, max);
        return false;
    }
    *out = v;
    return true;
}

static bool parse_count(const char *name, const char *s, uint64_t max, uint32_t *out)
{
    uint64_t v;
    if (!parse_number(name, s, 1, max, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

/* Seconds, fractions allowed, from 0 to max. */
static bool parse_seconds(const char *name, const char *s, double max, double *out)
{
    char *end;
    errno = 0;
    double v = g_ascii_strtod(s, &end);
    if (!g_ascii_isdigit(*s) || errno != 0 || *end != '\0' || !isfinite(v) || v > max) {
        fprintf(stderr, "vdiskfs: -o %s=%s: not a number of seconds from 0 to %.0f\n", name, s,
                max);
        return false;
    }
    *out = v;
    return true;
}

/*
 * Cancel the context's waits (key derivation) on the signals that end the
 * loop, then run libfuse's handler, which only marks the session exited:
 * libfuse joins its workers on the way out, and one waiting for a key
 * would hold the daemon until PBKDF2 ends.
 */
static const int stop_signals[] = {SIGTERM, SIGINT, SIGHUP};
static struct sigaction fuse_stop_actions[G_N_ELEMENTS(stop_signals)];
static VdContext *volatile stop_ctx;
static bool stop_chained;

static void stop_handler(int sig)
{
    VdContext *ctx = stop_ctx;
    if (ctx != NULL)
        vd_context_cancel(ctx);
    for (size_t i = 0; i < G_N_ELEMENTS(stop_signals); i++) {
        void (*h)(int) = fuse_stop_actions[i].sa_handler;
        if (stop_signals[i] == sig && !(fuse_stop_actions[i].sa_flags & SA_SIGINFO) &&
            h != SIG_DFL && h != SIG_IGN)
            h(sig);
    }
}

/* After fuse_set_signal_handlers: ours in front of libfuse's. */
static void chain_stop_signals(VdContext *ctx)
{
    struct sigaction sa = {.sa_handler = stop_handler};
    sigemptyset(&sa.sa_mask);
    stop_ctx = ctx;
    for (size_t i = 0; i < G_N_ELEMENTS(stop_signals); i++)
        sigaction(stop_signals[i], &sa, &fuse_stop_actions[i]);
    stop_chained = true;
}

/* Before fuse_remove_signal_handlers, which removes only its own. */
static void unchain_stop_signals(void)
{
    if (!stop_chained)
        return;
    for (size_t i = 0; i < G_N_ELEMENTS(stop_signals); i++)
        sigaction(stop_signals[i], &fuse_stop_actions[i], NULL);
    stop_ctx = NULL;
    stop_chained = false;
}

/*
 * The kernel reads ahead only 128 KiB on FUSE mounts; sequential buffered
 * readers (cp, dd, loop devices) then cost a request per 256 KiB. Raise
 * the mount's read_ahead_kb (measured: cp --sparse of 256 MiB of data,
 * 0.33 s -> 0.18 s). Found through mountinfo: a stat of the mountpoint
 * would wait for this very daemon. Only root may write it; others keep
 * the kernel's default.
 */
/* The fields of the last /proc/self/mountinfo line mounted on the
 * directory real (a realpath), of type fstype when that is not NULL: the
 * last one is the mount on top. NULL when there is none. */
static char **mountinfo_entry(const char *real, const char *fstype)
{
    g_autofree char *info = NULL;
    if (!g_file_get_contents("/proc/self/mountinfo", &info, NULL, NULL))
        return NULL;
    g_auto(GStrv) lines = g_strsplit(info, "\n", -1);
    char **found = NULL;
    for (char **l = lines; *l != NULL; l++) {
        g_auto(GStrv) f = g_strsplit(*l, " ", 6);
        if (g_strv_length(f) < 5)
            continue;
        /* Spaces, tabs, newlines and backslashes are octal escapes there. */
        g_autofree char *dir = g_strcompress(f[4]);
        if (strcmp(dir, real) != 0)
            continue;
        if (fstype != NULL) {
            g_autofree char *type = g_strdup_printf(" - %s ", fstype);
            if (strstr(*l, type) == NULL)
                continue;
        }
        g_strfreev(found);
        found = g_steal_pointer(&f);
    }
    return found;
}

static void set_read_ahead(const char *mountpoint, unsigned kb)
{
    g_autofree char *real = realpath(mountpoint, NULL);
    if (kb == 0 || real == NULL)
        return;
    g_auto(GStrv) found = mountinfo_entry(real, "fuse.vdiskfs");
    if (found == NULL)
        return;
    g_autofree char *path = g_strdup_printf("/sys/class/bdi/%s/read_ahead_kb", found[2]);
    g_autofree char *value = g_strdup_printf("%u", kb);
    g_autoptr(GError) err = NULL;
    if (!g_file_set_contents_full(path, value, -1, G_FILE_SET_CONTENTS_NONE, 0644, &err))
        g_debug("read-ahead not raised: %s", err->message);
}

/*
 * systemd's readiness protocol (Type=notify): one datagram to the socket
 * NOTIFY_SOCKET names ("@..." for the abstract namespace). Written here
 * rather than linking libsystemd for one sendto. Without NOTIFY_SOCKET,
 * nothing.
 */
static void notify_service_manager(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = path != NULL ? strlen(path) : 0;
    if (n < 2 || n >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@'))
        return;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
        g_debug("NOTIFY_SOCKET %s: %s", path, g_strerror(errno));
    close(fd);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/*
 * A loop device (or any block device) over a file of this mount is written
 * back through this daemon. A worker serving such a WRITE that runs short
 * of memory (a memory-limited cgroup, a host under pressure) enters reclaim,
 * and reclaim may wait for writeback of the very page the worker is writing
 * back: a deadlock (seen with cgroup v1, where memcg reclaim waits on
 * writeback, in tests/integration/test-memcg-loop.sh). PR_SET_IO_FLUSHER
 * marks the process as one that writeback depends on, as the kernel's own
 * flushers are: its allocations never wait on I/O in reclaim
 * (PF_MEMALLOC_NOIO) and dirty throttling looks only at the device it
 * writes (PF_LOCAL_THROTTLE). Every thread inherits it, so it is set
 * before libfuse or GLib start any.
 *
 * Not chosen: mlockall and preallocated buffers. Measured with that test,
 * a daemon with mlockall(MCL_CURRENT | MCL_FUTURE), a malloc that never
 * trims or maps, and 1 MiB thread stacks still hung within 11 s, in
 * reclaim for the host image's page cache (filemap_add_folio), which no
 * lock or pool can hold in advance; and it started with 18 MiB resident
 * instead of 5. The flag covers every allocation and changes nothing
 * on the read or write path.
 *
 * It needs CAP_SYS_RESOURCE: an unprivileged daemon goes on without it
 * (logged at debug level), and then must not run in a memory-limited
 * cgroup under a loop device it serves (README, vdiskfs(1)).
 */
static int become_io_flusher(void)
{
    return prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) == 0 ? 0 : errno;
}

/* Build the block-layer context from the options; false after printing why. */
static VdContext *make_context(VdfsConfig *cfg)
{
    GError *err = NULL;
    VdContext *ctx = vd_context_new(cfg->imagedir, &err);
    if (ctx == NULL)
        goto fail;
    if (cfg->raw_ext && !vd_context_set_raw_extensions(ctx, cfg->raw_ext, &err))
        goto fail;
    if (cfg->backing != NULL) {
        if (strcmp(cfg->backing, "confined") == 0) {
            ctx->backing_policy = VD_BACKING_CONFINED;
        } else if (strcmp(cfg->backing, "any") == 0) {
            ctx->backing_policy = VD_BACKING_ANY;
        } else {
            vd_set_error(&err, EINVAL, "-o backing=%s: expected 'confined' or 'any'", cfg->backing);
            goto fail;
        }
    }
    if (cfg->symlinks != NULL) {
        if (strcmp(cfg->symlinks, "confined") == 0) {
            ctx->symlink_policy = VD_BACKING_CONFINED;
        } else if (strcmp(cfg->symlinks, "any") == 0) {
            ctx->symlink_policy = VD_BACKING_ANY;
        } else {
            vd_set_error(&err, EINVAL, "-o symlinks=%s: expected 'confined' or 'any'",
                         cfg->symlinks);
            goto fail;
        }
    }
    if (cfg->cache_size && !parse_size("cache_size", cfg->cache_size, &ctx->metadata_cache_bytes)) {
        vd_context_unref(ctx);
        return NULL;
    }
    if (cfg->mem_budget && !parse_size("mem_budget", cfg->mem_budget, &ctx->mem_budget)) {
        vd_context_unref(ctx);
        return NULL;
    }
    if (cfg->overlay != NULL) {
        if (cfg->rw) {
            vd_set_error(&err, EINVAL,
                         "-o overlay and -o rw exclude each other: with an overlay the images "
                         "are never written (writes go to the overlay)");
            goto fail;
        }
        if (!vd_context_set_overlay_dir(ctx, cfg->overlay, &err))
            goto fail;
    } else if (cfg->overlay_discard) {
        vd_set_error(&err, EINVAL, "-o overlay_discard needs -o overlay=DIR");
        goto fail;
    }
    if (cfg->spill_dir == NULL)
        ctx->spill_dir = g_strdup(VDFS_DEFAULT_SPILL_DIR);
    else if (strcmp(cfg->spill_dir, "none") != 0)
        ctx->spill_dir = g_strdup(cfg->spill_dir);
    ctx->force_share = cfg->force_share;
    if (cfg->kdf_max_iterations &&
        !parse_count("kdf_max_iterations", cfg->kdf_max_iterations, VD_KDF_MAX_ITERATIONS_LIMIT,
                     &ctx->kdf_max_iterations)) {
        vd_context_unref(ctx);
        return NULL;
    }
    if (cfg->keyfile && !vd_context_load_keyfile(ctx, cfg->keyfile, &err))
        goto fail;
    return ctx;
fail:
    fprintf(stderr, "vdiskfs: %s\n", err->message);
    g_error_free(err);
    vd_context_unref(ctx);
    return NULL;
}

static bool check_dirs(const char *imagedir, const char *mountpoint, bool nonempty)
{
    struct stat st;
    if (stat(imagedir, &st) < 0) {
        fprintf(stderr, "vdiskfs: IMAGEDIR %s: %s\n", imagedir, g_strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "vdiskfs: IMAGEDIR %s: not a directory\n", imagedir);
        return false;
    }
    if (stat(mountpoint, &st) < 0) {
        fprintf(stderr, "vdiskfs: MOUNTPOINT %s: %s\n", mountpoint, g_strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "vdiskfs: MOUNTPOINT %s: not a directory\n", mountpoint);
        return false;
    }
    g_autofree char *ri = realpath(imagedir, NULL);
    g_autofree char *rm = realpath(mountpoint, NULL);
    if (ri && rm && (strcmp(ri, rm) == 0 || (g_str_has_prefix(rm, ri) && rm[strlen(ri)] == '/'))) {
        fprintf(stderr, "vdiskfs: MOUNTPOINT %s lies inside IMAGEDIR %s\n", mountpoint, imagedir);
        return false;
    }
    /* Mounting over a mount or over files hides them until the unmount,
     * which is seldom what was meant: as mount(8) users expect from
     * fuse2's checks, refuse unless asked. */
    g_auto(GStrv) mounted = rm != NULL ? mountinfo_entry(rm, NULL) : NULL;
    if (mounted != NULL && !nonempty) {
        fprintf(stderr, "vdiskfs: MOUNTPOINT %s is already a mount point (unmount it first)\n",
                mountpoint);
        return false;
    }
    g_autoptr(GDir) dir = g_dir_open(mountpoint, 0, NULL);
    if (dir != NULL && g_dir_read_name(dir) != NULL && !nonempty) {
        fprintf(stderr, "vdiskfs: MOUNTPOINT %s is not empty (-o nonempty mounts over it)\n",
                mountpoint);
        return false;
    }
    return true;
}

int main(int argc, char *argv[])
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    VdfsConfig cfg = {0};
    double attr_timeout = 1.0;
    uint64_t idle_timeout = 60, read_ahead_kb = 1024, uring_depth = 0;
    struct fuse_cmdline_opts cmd = {0};
    VfsUring *uring = NULL;
    struct fuse_session *se = NULL;
    VfsFs *fs = NULL;
    VdContext *ctx = NULL;
    int ret = 1;
    char *fsname = NULL;
    int flusher_err = become_io_flusher();

    if (fuse_opt_parse(&args, &cfg, vdfs_opts, vdfs_opt_proc) != 0)
        goto out;
    if (fuse_parse_cmdline(&args, &cmd) != 0)
        goto out;
    if (cmd.show_help) {
        usage(argv[0]);
        printf("FUSE options:\n");
        fuse_cmdline_help();
        fuse_lowlevel_help();
        ret = 0;
        goto out;
    }
    if (cmd.show_version) {
        printf("vdiskfs %s\n", PACKAGE_VERSION);
        fuse_lowlevel_version();
        ret = 0;
        goto out;
    }
    /* Ranges: a year of seconds for the timeouts; the read-ahead no more
     * than the FUSE connection's max_readahead, to which the kernel would
     * silently clamp it. */
    if ((cfg.attr_timeout != NULL &&
         !parse_seconds("attr_timeout", cfg.attr_timeout, VDFS_MAX_TIMEOUT, &attr_timeout)) ||
        (cfg.idle_timeout != NULL &&
         !parse_number("idle_timeout", cfg.idle_timeout, 0, VDFS_MAX_TIMEOUT, &idle_timeout)) ||
        (cfg.read_ahead != NULL &&
         !parse_number("read_ahead", cfg.read_ahead, 0, VFS_MAX_IO / 1024, &read_ahead_kb)))
        goto out;
    if (cfg.uring == NULL) {
        /* Left to the kernel: installing the layer where the kernel will
         * not offer the ring would only add a call to every request. */
        uring_depth = vfs_uring_kernel_enabled() ? VDFS_DEFAULT_URING_DEPTH : 0;
    } else {
        if (strcmp(cfg.uring, "off") == 0)
            uring_depth = 0;
        else if (!parse_number("uring", cfg.uring, 1, VDFS_MAX_URING_DEPTH, &uring_depth))
            goto out;
    }
    if (cfg.imagedir == NULL || cmd.mountpoint == NULL) {
        fprintf(stderr, "vdiskfs: usage: vdiskfs [options] IMAGEDIR MOUNTPOINT (see --help)\n");
        goto out;
    }
    if (!check_dirs(cfg.imagedir, cmd.mountpoint, cfg.nonempty))
        goto out;
    vd_log_init("vdiskfs", cmd.debug);
    vd_dispatch_set_trace(cmd.debug); /* -d: every driver call, too */
    if (flusher_err != 0)
        g_debug("not an I/O flusher (PR_SET_IO_FLUSHER: %s): loop devices over this mount may "
                "deadlock in a memory-limited cgroup",
                g_strerror(flusher_err));
    raise_fd_limit();

    /* Copying beat splice at every request size measured on Linux 6.18
     * (1 MiB sequential: 2.8 GB/s copy vs 0.9 GB/s splice; 4 KiB random:
     * equal or worse), so splicing is opt-in. */
    bool writable = cfg.rw || cfg.overlay != NULL;
    VfsOptions vopts = {.read_only = !writable,
                        .attr_timeout = attr_timeout,
                        .splice_min = 0,
                        .overlay = cfg.overlay != NULL,
                        .overlay_discard = cfg.overlay_discard};
    vopts.idle_timeout = (unsigned)idle_timeout;
    if (cfg.splice_min) {
        uint64_t v;
        if (!parse_size("splice_min", cfg.splice_min, &v))
            goto out;
        vopts.splice_min = (size_t)v;
    }
    ctx = make_context(&cfg);
    if (ctx == NULL)
        goto out;

    /* The kernel checks every image's own owner and mode, always. */
    fuse_opt_add_arg(&args, "-odefault_permissions");
    if (!writable)
        fuse_opt_add_arg(&args, "-oro");
    fsname = g_strdup_printf("-ofsname=%s", ctx->root);
    /* fsname is parsed by libfuse as a comma list: commas would split it. */
    if (strchr(ctx->root, ',') == NULL)
        fuse_opt_add_arg(&args, fsname);
    fuse_opt_add_arg(&args, "-osubtype=vdiskfs");

    fs = vfs_new(ctx, &vopts);
    se = fuse_session_new(&args, &vfs_ops, sizeof vfs_ops, fs);
    if (se == NULL)
        goto out;
    if (fuse_set_signal_handlers(se) != 0)
        goto out;
    chain_stop_signals(ctx);
    if (fuse_session_mount(se, cmd.mountpoint) != 0)
        goto out_signals;
    set_read_ahead(cmd.mountpoint, (unsigned)read_ahead_kb);
    if (uring_depth > 0 && !cmd.singlethread) {
        GError *e = NULL;
        uring = vfs_uring_install(se, (unsigned)uring_depth, &e);
        if (uring == NULL) {
            g_warning("%s; serving /dev/fuse only", e->message);
            g_error_free(e);
        }
    }
    if (uring == NULL) {
        GError *e = NULL;
        if (!vfs_devio_install(se, &e)) {
            g_warning("%s: an unmount waits for long decodes in flight", e->message);
            g_error_free(e);
        }
    }
    if (fuse_daemonize(cmd.foreground) != 0)
        goto out_unmount;
    if (!cmd.foreground)
        vd_log_use_syslog();
    /* After daemonising: threads do not survive fork. */
    vfs_watch_start(fs, se);
    vfs_reaper_start(fs);
    notify_service_manager("READY=1");

    if (cmd.singlethread) {
        ret = fuse_session_loop(se);
    } else {
        struct fuse_loop_config *lc = fuse_loop_cfg_create();
        fuse_loop_cfg_set_clone_fd(lc, cmd.clone_fd);
        fuse_loop_cfg_set_max_threads(lc, cmd.max_threads ? cmd.max_threads : 16);
        if (cmd.max_idle_threads != UINT_MAX) /* UINT_MAX: not given */
            fuse_loop_cfg_set_idle_threads(lc, cmd.max_idle_threads);
        ret = fuse_session_loop_mt(se, lc);
        fuse_loop_cfg_destroy(lc);
    }
    /* A loop ended by SIGTERM/SIGINT/SIGHUP reports the signal: a clean exit. */
    ret = (ret == 0 || ret == SIGTERM || ret == SIGINT || ret == SIGHUP) ? 0 : 1;
    notify_service_manager("STOPPING=1");
    /* The watch thread's notifications go out through the ring's writev
     * hook: stop it before the ring goes. */
    vfs_watch_stop(fs);
    vfs_reaper_stop(fs);
    vfs_uring_free(uring);
    uring = NULL;

out_unmount:
    vfs_uring_free(uring);
    fuse_session_unmount(se);
out_signals:
    unchain_stop_signals();
    fuse_remove_signal_handlers(se);
out:
    if (se != NULL)
        fuse_session_destroy(se);
    vfs_free(fs);
    vd_context_unref(ctx);
    free(cmd.mountpoint);
    g_free(fsname);
    g_free(cfg.imagedir);
    g_free(cfg.raw_ext);
    g_free(cfg.keyfile);
    g_free(cfg.backing);
    g_free(cfg.symlinks);
    g_free(cfg.cache_size);
    g_free(cfg.mem_budget);
    g_free(cfg.overlay);
    g_free(cfg.spill_dir);
    g_free(cfg.splice_min);
    g_free(cfg.kdf_max_iterations);
    g_free(cfg.attr_timeout);
    g_free(cfg.idle_timeout);
    g_free(cfg.uring);
    g_free(cfg.read_ahead);
    fuse_opt_free_args(&args);
    return ret;
}
