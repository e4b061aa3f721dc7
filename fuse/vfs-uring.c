/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * FUSE over io_uring beside libfuse 3.14 (see vfs-uring.h).
 *
 * Each ring entry has its own thread and its own io_uring: the kernel
 * gives a request only to an entry that waits, so an entry whose thread is
 * busy never holds a request back. The entry's memory is one block: the
 * header the kernel fills (in header, op header, entry trailer), a gap,
 * then the payload; the /dev/fuse form of a request (in header, op header,
 * payload) is assembled in the gap right in front of the payload, so that
 * a WRITE's data is never copied to be handed to libfuse.
 */
#include "config.h"

#include "fuse/vfs-uring.h"
#include "fuse/vfs-devio.h"
#include "src/vd-error.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <linux/fuse.h>
#include <liburing.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

/* Under ThreadSanitizer: the kernel orders a request after the replies
 * it has seen, through the ring's shared memory and /dev/fuse, which TSan
 * cannot see; an object made while serving one request (an image opened
 * for an OPEN) and used for a later one on another thread then looks
 * raced. Each reply releases, and each request taken acquires, one
 * object, so that what a reply made happens before later requests. */
#ifdef __SANITIZE_THREAD__
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static int kernel_order;
#define KERNEL_ORDER_ACQUIRE() __tsan_acquire(&kernel_order)
#define KERNEL_ORDER_RELEASE() __tsan_release(&kernel_order)
#else
#define KERNEL_ORDER_ACQUIRE() ((void)0)
#define KERNEL_ORDER_RELEASE() ((void)0)
#endif

/* The kernel's FUSE-over-io_uring ABI (7.42), which Debian 12's headers
 * predate. */
#define URING_INIT_FLAG            (1ULL << 41) /* FUSE_OVER_IO_URING */
#define URING_IN_OUT_SZ            128
#define URING_OP_IN_SZ             128
#define URING_CMD_REGISTER         1
#define URING_CMD_COMMIT_AND_FETCH 2
/* The kernel's smallest request buffer (FUSE_MIN_READ_BUFFER). */
#define URING_MIN_PAYLOAD       8192
#define URING_DEFAULT_MAX_PAGES 32

struct uring_ent_in_out {
    uint64_t flags;
    uint64_t commit_id;
    uint32_t payload_sz;
    uint32_t padding;
    uint64_t reserved;
};

struct uring_req_header {
    char in_out[URING_IN_OUT_SZ];
    char op_in[URING_OP_IN_SZ];
    struct uring_ent_in_out ent;
};

struct uring_cmd_req {
    uint64_t flags;
    uint64_t commit_id;
    uint16_t qid;
    uint8_t padding[6];
};

/* Room in front of the payload for the /dev/fuse form of a request: in
 * header and op header, after the kernel's header. */
#define ENT_GAP 512
G_STATIC_ASSERT(sizeof(struct uring_req_header) + sizeof(struct fuse_in_header) + URING_OP_IN_SZ <=
                ENT_GAP);

typedef struct {
    VfsUring *u;
    unsigned qid;
    struct io_uring ring;
    uint8_t *mem; /* ENT_GAP + payload_size bytes */
    struct uring_req_header *hdr;
    uint8_t *payload;
    struct iovec iov[2];
    GThread *thread;
    /* The request being handled: its unique (0: none) and opcode. */
    uint64_t unique;
    uint32_t opcode;
    GMutex lock;
    GCond cond;
    bool replied;
} UringEnt;

struct VfsUring {
    struct fuse_session *se;
    unsigned depth;
    /* The INIT request, and whether the kernel offered the ring in it. */
    uint64_t init_unique;
    bool offered;
    size_t payload_size;
    GPtrArray *ents;
    /* unique -> entry of every request in hand: for replies sent from
     * another thread than the entry's own. */
    GMutex lock;
    GHashTable *pending;
    gint started;
    gint stop;
    /* Written at stop: every entry's ring polls it. */
    int stop_fd;
    gint registered;
    guint64 requests;
};

/* libfuse hands its I/O callbacks the session's user data (the file
 * system), not ours: one session per process, so one ring. */
static VfsUring *the_uring;
static __thread UringEnt *current_ent;

static unsigned possible_cpus(void)
{
    /* The kernel makes one queue per possible CPU ("0-1", "0-3,8-11"). */
    g_autofree char *s = NULL;
    if (!g_file_get_contents("/sys/devices/system/cpu/possible", &s, NULL, NULL))
        return (unsigned)MAX(1, sysconf(_SC_NPROCESSORS_CONF));
    unsigned n = 0;
    g_auto(GStrv) parts = g_strsplit(g_strstrip(s), ",", -1);
    for (char **p = parts; *p != NULL; p++) {
        unsigned a, b;
        int k = sscanf(*p, "%u-%u", &a, &b);
        if (k == 2 && b >= a)
            n = MAX(n, b + 1);
        else if (k == 1)
            n = MAX(n, a + 1);
    }
    return MAX(n, 1u);
}

static void ent_submit(UringEnt *e, unsigned cmd, uint64_t commit_id)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
    /* Room for two: the stop poll and this entry's one command. */
    g_assert(sqe != NULL);
    memset(sqe, 0, 128);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->fd = fuse_session_fd(e->u->se);
    sqe->cmd_op = cmd;
    if (cmd == URING_CMD_REGISTER) {
        sqe->addr = (uint64_t)(uintptr_t)e->iov;
        sqe->len = 2;
    }
    struct uring_cmd_req req = {.commit_id = commit_id, .qid = (uint16_t)e->qid};
    memcpy(sqe->cmd, &req, sizeof req);
    io_uring_sqe_set_data(sqe, e);
}

static void ent_mark_replied(UringEnt *e)
{
    g_mutex_lock(&e->lock);
    e->replied = true;
    g_cond_signal(&e->cond);
    g_mutex_unlock(&e->lock);
}

static void ent_set_reply(UringEnt *e, const struct fuse_out_header *oh, size_t payload_len)
{
    struct fuse_out_header out = *oh;
    out.len = (uint32_t)(sizeof out + payload_len);
    memcpy(e->hdr->in_out, &out, sizeof out);
    e->hdr->ent.payload_sz = (uint32_t)payload_len;
}

/* A reply for a ring request, from libfuse: into the entry's buffers. */
static ssize_t ent_take_reply(UringEnt *e, const struct iovec *iov, int count)
{
    const struct fuse_out_header *oh = iov[0].iov_base;
    size_t total = 0;
    for (int i = 1; i < count; i++)
        total += iov[i].iov_len;
    if (total > e->u->payload_size) {
        /* Cannot be: replies are bounded by the request sizes negotiated. */
        g_warning("io_uring: reply of %zu bytes to request %" G_GUINT64_FORMAT
                  " exceeds the ring's buffer",
                  total, oh->unique);
        struct fuse_out_header err = {.error = -EIO, .unique = oh->unique};
        ent_set_reply(e, &err, 0);
    } else {
        size_t pos = 0;
        for (int i = 1; i < count; i++) {
            memcpy(e->payload + pos, iov[i].iov_base, iov[i].iov_len);
            pos += iov[i].iov_len;
        }
        ent_set_reply(e, oh, total);
    }
    ent_mark_replied(e);
    return (ssize_t)(sizeof *oh + total);
}

static UringEnt *pending_find(VfsUring *u, uint64_t unique)
{
    if (!g_atomic_int_get(&u->registered))
        return NULL;
    g_mutex_lock(&u->lock);
    UringEnt *e = g_hash_table_lookup(u->pending, &unique);
    g_mutex_unlock(&u->lock);
    return e;
}

static gpointer ent_thread(gpointer data);

/* The INIT reply: offer the ring, then start its entries once the kernel
 * has taken it (the reply is processed within the write). */
static ssize_t init_reply(VfsUring *u, int fd, struct iovec *iov, int count)
{
    if (count != 2 || iov[1].iov_len < offsetof(struct fuse_init_out, flags2) + sizeof(uint32_t))
        return writev(fd, iov, count);
    struct fuse_init_out out;
    memset(&out, 0, sizeof out);
    memcpy(&out, iov[1].iov_base, MIN(sizeof out, iov[1].iov_len));
    struct fuse_out_header *oh = iov[0].iov_base;
    if (oh->error != 0)
        return writev(fd, iov, count);
    out.flags |= FUSE_INIT_EXT;
    out.flags2 |= (uint32_t)(URING_INIT_FLAG >> 32);
    struct iovec patched[2] = {iov[0], {&out, iov[1].iov_len}};
    ssize_t n = writev(fd, patched, 2);
    if (n < 0)
        return n;
    unsigned max_pages =
        (out.flags & FUSE_MAX_PAGES) && out.max_pages ? out.max_pages : URING_DEFAULT_MAX_PAGES;
    u->payload_size =
        MAX(URING_MIN_PAYLOAD,
            MAX((size_t)out.max_write, (size_t)max_pages * (size_t)sysconf(_SC_PAGESIZE)));
    unsigned queues = possible_cpus();
    /* The entries' threads take no signals: those are the session loop's. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    for (unsigned q = 0; q < queues; q++) {
        for (unsigned i = 0; i < u->depth; i++) {
            UringEnt *e = g_new0(UringEnt, 1);
            e->u = u;
            e->qid = q;
            e->mem = g_malloc0(ENT_GAP + u->payload_size);
            e->hdr = (struct uring_req_header *)e->mem;
            e->payload = e->mem + ENT_GAP;
            e->iov[0] = (struct iovec){e->hdr, sizeof *e->hdr};
            e->iov[1] = (struct iovec){e->payload, u->payload_size};
            g_mutex_init(&e->lock);
            g_cond_init(&e->cond);
            g_ptr_array_add(u->ents, e);
            e->thread = g_thread_new("vdiskfs-uring", ent_thread, e);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    g_atomic_int_set(&u->started, 1);
    g_debug("io_uring: %u queues of %u entries, %zu KiB requests", queues, u->depth,
            u->payload_size / 1024);
    return n;
}

static ssize_t uring_dev_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    (void)userdata;
    KERNEL_ORDER_RELEASE();
    VfsUring *u = the_uring;
    const struct fuse_out_header *oh = iov[0].iov_base;
    if (u != NULL && oh->unique != 0) {
        UringEnt *e = current_ent;
        if (e == NULL || e->unique != oh->unique)
            e = pending_find(u, oh->unique);
        if (e != NULL)
            return ent_take_reply(e, iov, count);
        if (oh->unique == u->init_unique && u->offered && !g_atomic_int_get(&u->started))
            return init_reply(u, fd, iov, count);
    }
    return writev(fd, iov, count);
}

static ssize_t uring_dev_read(int fd, void *buf, size_t len, void *userdata)
{
    ssize_t n = vfs_devio_read(fd, buf, len, userdata);
    KERNEL_ORDER_ACQUIRE();
    VfsUring *u = the_uring;
    const struct fuse_in_header *ih = buf;
    if (u != NULL && n >= (ssize_t)sizeof *ih && ih->opcode == FUSE_INIT && u->init_unique == 0) {
        const struct fuse_init_in *in = (const void *)(ih + 1);
        size_t have = (size_t)n - sizeof *ih;
        uint64_t flags = have >= offsetof(struct fuse_init_in, flags) + 4 ? in->flags : 0;
        if ((flags & FUSE_INIT_EXT) && have >= offsetof(struct fuse_init_in, flags2) + 4)
            flags |= (uint64_t)in->flags2 << 32;
        u->offered = (flags & URING_INIT_FLAG) != 0;
        u->init_unique = ih->unique;
        if (!u->offered)
            g_debug("io_uring: the kernel does not offer it (fuse.enable_uring=0, or before "
                    "Linux 6.14): /dev/fuse only");
    }
    return n;
}

/* Hand the request in e to libfuse as if read from /dev/fuse. */
static void ent_handle(UringEnt *e)
{
    VfsUring *u = e->u;
    struct uring_ent_in_out io = e->hdr->ent;
    struct fuse_in_header ih;
    memcpy(&ih, e->hdr->in_out, sizeof ih);
    size_t psz = io.payload_sz;
    size_t op_len = ih.len >= sizeof ih + psz ? ih.len - sizeof ih - psz : SIZE_MAX;
    e->unique = ih.unique;
    e->opcode = ih.opcode;
    e->replied = false;
    g_mutex_lock(&u->lock);
    g_hash_table_insert(u->pending, &e->unique, e);
    g_mutex_unlock(&u->lock);
    if (psz > u->payload_size || op_len > URING_OP_IN_SZ) {
        g_warning("io_uring: request %" G_GUINT64_FORMAT " (opcode %u) of %u bytes does not fit "
                  "its entry (payload %zu)",
                  (guint64)ih.unique, ih.opcode, ih.len, psz);
        struct fuse_out_header err = {.error = -EIO, .unique = ih.unique};
        ent_set_reply(e, &err, 0);
        e->replied = true;
    } else {
        uint8_t *start = e->payload - sizeof ih - op_len;
        memcpy(start, &ih, sizeof ih);
        memcpy(start + sizeof ih, e->hdr->op_in, op_len);
        struct fuse_buf fb = {.mem = start, .size = ih.len};
        current_ent = e;
        fuse_session_process_buf(u->se, &fb);
        current_ent = NULL;
    }
    /* Replies may come from another thread (after the handler returned). */
    g_mutex_lock(&e->lock);
    while (!e->replied)
        g_cond_wait(&e->cond, &e->lock);
    g_mutex_unlock(&e->lock);
    g_mutex_lock(&u->lock);
    g_hash_table_remove(u->pending, &e->unique);
    g_mutex_unlock(&u->lock);
    e->unique = 0;
    __atomic_fetch_add(&u->requests, 1, __ATOMIC_RELAXED);
}

/* The kernel queues a request on the ring of the CPU that made it; an
 * entry thread that runs on that CPU answers without a cross-CPU wakeup.
 * A CPU this process may not use is left to the scheduler. */
static void ent_pin_to_queue_cpu(const UringEnt *e)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || e->qid >= CPU_SETSIZE ||
        !CPU_ISSET(e->qid, &allowed))
        return;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(e->qid, &one);
    if (pthread_setaffinity_np(pthread_self(), sizeof one, &one) != 0)
        g_debug("io_uring: queue %u: cannot pin its thread to CPU %u", e->qid, e->qid);
}

static gpointer ent_thread(gpointer data)
{
    UringEnt *e = data;
    VfsUring *u = e->u;
    ent_pin_to_queue_cpu(e);
    struct io_uring_params p = {.flags = IORING_SETUP_SQE128 | IORING_SETUP_SINGLE_ISSUER |
                                         IORING_SETUP_COOP_TASKRUN};
    int r = io_uring_queue_init_params(4, &e->ring, &p);
    if (r < 0) {
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_SQE128;
        r = io_uring_queue_init_params(4, &e->ring, &p);
    }
    if (r < 0) {
        g_warning("io_uring: cannot set up a ring: %s; /dev/fuse serves", g_strerror(-r));
        return NULL;
    }
    struct io_uring_sqe *sqe = io_uring_get_sqe(&e->ring);
    io_uring_prep_poll_add(sqe, u->stop_fd, POLLIN);
    io_uring_sqe_set_data(sqe, NULL);
    ent_submit(e, URING_CMD_REGISTER, 0);
    bool registered = false, reregistered = false;
    for (;;) {
        struct io_uring_cqe *cqe = NULL;
        r = io_uring_submit_and_wait(&e->ring, 1);
        if (r >= 0)
            r = io_uring_peek_cqe(&e->ring, &cqe);
        if (r == -EINTR || r == -EAGAIN)
            continue;
        if (r < 0) {
            g_warning("io_uring: waiting for a request: %s", g_strerror(-r));
            break;
        }
        if (io_uring_cqe_get_data(cqe) == NULL)
            break; /* stop_fd */
        int res = cqe->res;
        io_uring_cqe_seen(&e->ring, cqe);
        if (res < 0) {
            /* ENOTCONN: unmounted. Before the first request: the kernel
             * refused the entry, and /dev/fuse serves. A refused commit
             * loses the entry: register it again, so that its queue keeps
             * its depth (a queue with no entry left would stall). */
            if (res == -ENOTCONN || g_atomic_int_get(&u->stop))
                break;
            g_warning("io_uring: %s entry: %s", registered ? "committing to an" : "registering",
                      g_strerror(-res));
            if (!registered || reregistered)
                break;
            reregistered = true;
            ent_submit(e, URING_CMD_REGISTER, 0);
            continue;
        }
        reregistered = false;
        if (!registered) {
            registered = true;
            g_atomic_int_set(&u->registered, 1);
        }
        uint64_t commit_id = e->hdr->ent.commit_id;
        KERNEL_ORDER_ACQUIRE();
        ent_handle(e);
        KERNEL_ORDER_RELEASE();
        ent_submit(e, URING_CMD_COMMIT_AND_FETCH, commit_id);
    }
    io_uring_queue_exit(&e->ring);
    return NULL;
}

static void ent_free(gpointer data)
{
    UringEnt *e = data;
    if (e->thread != NULL)
        g_thread_join(e->thread);
    g_mutex_clear(&e->lock);
    g_cond_clear(&e->cond);
    g_free(e->mem);
    g_free(e);
}

bool vfs_uring_kernel_enabled(void)
{
    char *s = NULL;
    if (!g_file_get_contents("/sys/module/fuse/parameters/enable_uring", &s, NULL, NULL))
        return false;
    bool on = s[0] == 'Y' || s[0] == '1';
    g_free(s);
    return on;
}

VfsUring *vfs_uring_install(struct fuse_session *se, unsigned depth, GError **error)
{
    g_return_val_if_fail(the_uring == NULL, NULL);
    VfsUring *u = g_new0(VfsUring, 1);
    u->se = se;
    u->depth = MAX(depth, 1u);
    u->ents = g_ptr_array_new_with_free_func(ent_free);
    g_mutex_init(&u->lock);
    u->pending = g_hash_table_new(g_int64_hash, g_int64_equal);
    u->stop_fd = eventfd(0, EFD_CLOEXEC);
    if (u->stop_fd < 0) {
        vd_set_error_errno(error, errno, "io_uring: eventfd");
        vfs_uring_free(u);
        return NULL;
    }
    static const struct fuse_custom_io io = {.read = uring_dev_read, .writev = uring_dev_writev};
    the_uring = u;
    int r = fuse_session_custom_io(se, &io, fuse_session_fd(se));
    if (r != 0) {
        vd_set_error(error, -r, "cannot take over /dev/fuse I/O for io_uring: %s", g_strerror(-r));
        vfs_uring_free(u);
        return NULL;
    }
    return u;
}

void vfs_uring_free(VfsUring *u)
{
    if (u == NULL)
        return;
    g_atomic_int_set(&u->stop, 1);
    if (u->stop_fd >= 0 && eventfd_write(u->stop_fd, 1) != 0)
        g_warning("io_uring: cannot wake the entries: %s", g_strerror(errno));
    g_ptr_array_unref(u->ents);
    if (u->stop_fd >= 0)
        close(u->stop_fd);
    the_uring = NULL;
    if (u->requests > 0)
        g_debug("io_uring: %" G_GUINT64_FORMAT " requests served", (guint64)u->requests);
    g_hash_table_destroy(u->pending);
    g_mutex_clear(&u->lock);
    g_free(u);
}

void *vfs_uring_read_buffer(size_t len)
{
    UringEnt *e = current_ent;
    if (e == NULL || e->opcode != FUSE_READ || e->replied || len > e->u->payload_size)
        return NULL;
    return e->payload;
}

void vfs_uring_reply_read(fuse_req_t req, size_t len)
{
    UringEnt *e = current_ent;
    struct fuse_out_header oh = {.unique = e->unique};
    ent_set_reply(e, &oh, len);
    e->replied = true;
    fuse_reply_none(req);
}
