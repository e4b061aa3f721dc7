/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libFuzzer target for one format driver: open + block_status over the
 * whole disk + bounded reads + the snapshot table and each snapshot.
 * The format comes from VD_FUZZ_FORMAT (make fuzz-smoke sets it), so one
 * binary is the target for every driver in the table.
 *
 * With VD_FUZZ_MODE=write (writable formats): the input is a hostile
 * image followed by a script of writes, zeroings and flushes (see
 * parse_ops); the image is opened read-write, the script run, flushed,
 * closed, reopened and read back. Beyond no crash, no sanitizer report
 * and no hang: every range a write or zeroing acknowledged must read
 * back as written, unless a later operation (or the final flush) failed
 * on it. A broken promise aborts with the operation, offset and bytes.
 */
#include "config.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/vd-chain.h"
#include "src/vd-image.h"
#include "src/vd-info.h"

#define READ_BUDGET   (4u << 20) /* bytes read per input, to keep runs fast */
#define STATUS_BUDGET 4096       /* block_status calls per input */

static VdContext *fuzz_ctx;
static char *fuzz_path;
static const char *fuzz_format;
static bool fuzz_write;

int LLVMFuzzerInitialize(int *argc, char ***argv);
/* The input becomes the image file. */
static bool write_input(const uint8_t *data, size_t size)
{
    int fd = open(fuzz_path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, data, size) == (ssize_t)size;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void exercise(VdImage *img)
{
    uint64_t size = vd_image_size(img), off = 0, budget = READ_BUDGET;
    g_autofree uint8_t *buf = g_malloc(64 * 1024);
    for (unsigned n = 0; off < size && n < STATUS_BUDGET; n++) {
        VdChainExtent e;
        g_autoptr(GError) err = NULL;
        if (!vd_chain_status(img, off, size - off, VD_STATUS_WANT_ZERO, &e, &err))
            break;
        if (vd_chain_extent_is_data(&e) && budget > 0) {
            size_t len = (size_t)MIN(MIN(e.length, (uint64_t)64 * 1024), budget);
            g_autoptr(GError) rerr = NULL;
            vd_image_pread(img, buf, len, off, &rerr);
            budget -= len;
        }
        off += e.length;
    }
    g_autoptr(GError) err = NULL;
    vd_image_pread(img, buf, 4096, 0, &err);
    uint64_t pos;
    g_clear_error(&err);
    vd_chain_seek(img, 0, SEEK_HOLE, &pos, &err);
    vd_info_free(vd_info_describe(img));
}

/* ---- write mode ---- */

#define OP_SIZE 8
#define MAX_OPS 16

typedef enum { OP_WRITE, OP_ZERO, OP_ZERO_UNMAP, OP_FLUSH } OpKind;

typedef struct {
    OpKind kind;
    uint64_t off, len;
    uint8_t pattern;
    bool ok;
} Op;

/* What a write of op puts at guest byte pos: depends on the position, so
 * that data landing in the wrong place is told apart. */
static uint8_t op_byte(const Op *op, uint64_t pos)
{
    return op->kind == OP_WRITE ? (uint8_t)(op->pattern ^ (pos >> 9) ^ (pos >> 17)) : 0;
}

/*
 * The script is the input's tail: its last byte n (mod MAX_OPS + 1)
 * counts the operations before it, OP_SIZE bytes each: kind (low bits:
 * write, write, zero, zero-may-unmap, flush; 0x80: align to 4 KiB, with
 * 0x40 to 64 KiB; 0x20: eight times longer), offset as a fraction of the
 * disk (be32), length - 1 (be16), pattern. What comes before is the
 * image (all of the input when the script would not fit).
 */
static size_t image_part(const uint8_t *data, size_t size)
{
    size_t tail = 1 + data[size - 1] % (MAX_OPS + 1) * OP_SIZE;
    return tail > size ? size : size - tail;
}

static size_t parse_ops(const uint8_t *p, size_t len, uint64_t disk, Op *ops)
{
    size_t n = 0;
    for (; len >= OP_SIZE + 1 && disk > 0; p += OP_SIZE, len -= OP_SIZE) {
        static const OpKind kinds[5] = {OP_WRITE, OP_WRITE, OP_ZERO, OP_ZERO_UNMAP, OP_FLUSH};
        Op *op = &ops[n++];
        op->kind = kinds[(p[0] & 0x1f) % 5];
        uint32_t frac = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
        op->off = (uint64_t)(((unsigned __int128)frac * disk) >> 32);
        op->len = ((uint64_t)p[5] << 8 | p[6]) + 1;
        if (p[0] & 0x20)
            op->len *= 8;
        if (p[0] & 0x80) {
            uint64_t a = (p[0] & 0x40) ? 65536 : 4096;
            op->off -= op->off % a;
            op->len = (op->len + a - 1) / a * a;
        }
        op->len = MIN(op->len, disk - op->off);
        op->pattern = p[7];
        if (op->len == 0)
            op->kind = OP_FLUSH;
    }
    return n;
}

static bool run_op(VdImage *img, Op *op)
{
    g_autoptr(GError) err = NULL;
    switch (op->kind) {
    case OP_WRITE: {
        g_autofree uint8_t *buf = g_malloc(op->len);
        for (uint64_t i = 0; i < op->len; i++)
            buf[i] = op_byte(op, op->off + i);
        return vd_image_pwrite(img, buf, op->len, op->off, &err);
    }
    case OP_ZERO:
    case OP_ZERO_UNMAP:
        return vd_image_write_zeroes(img, op->off, op->len,
                                     op->kind == OP_ZERO_UNMAP ? VD_ZERO_MAY_UNMAP : 0, &err);
    case OP_FLUSH:
        return vd_image_flush(img, &err);
    }
    return false;
}

G_GNUC_NORETURN G_GNUC_PRINTF(3, 4) static void broken(const Op *ops, size_t n_ops, const char *fmt,
                                                       ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz-image (%s, write mode): ", fuzz_format);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nscript:\n");
    static const char *const names[] = {"write", "zero", "zero-unmap", "flush"};
    for (size_t i = 0; i < n_ops; i++)
        fprintf(stderr, "  %zu: %s 0x%" PRIx64 "+0x%" PRIx64 " pattern 0x%02x -> %s\n", i,
                names[ops[i].kind], ops[i].off, ops[i].len, ops[i].pattern,
                ops[i].ok ? "ok" : "error");
    abort();
}

/* Read back what op i still owns: its range minus the later operations'
 * (which own it, or made it unknown by failing). */
static void verify_op(VdImage *img, const Op *ops, size_t n_ops, size_t i)
{
    const Op *op = &ops[i];
    uint64_t pos = op->off, end = op->off + op->len;
    g_autofree uint8_t *buf = g_malloc(MIN(op->len, (uint64_t)1 << 20));
    while (pos < end) {
        /* The longest run from pos that no later operation touches. */
        uint64_t run_end = end;
        bool covered = false;
        for (size_t j = i + 1; j < n_ops && !covered; j++) {
            const Op *l = &ops[j];
            if (l->kind == OP_FLUSH)
                continue;
            if (l->off <= pos && pos < l->off + l->len) {
                covered = true;
                pos = MIN(end, l->off + l->len);
            } else if (l->off > pos) {
                run_end = MIN(run_end, l->off);
            }
        }
        if (covered)
            continue;
        uint64_t n = MIN(run_end - pos, (uint64_t)1 << 20);
        g_autoptr(GError) err = NULL;
        if (!vd_image_pread(img, buf, n, pos, &err))
            broken(ops, n_ops, "op %zu: reading back 0x%" PRIx64 "+0x%" PRIx64 " failed: %s", i,
                   pos, n, err->message);
        for (uint64_t k = 0; k < n; k++) {
            if (buf[k] != op_byte(op, pos + k))
                broken(ops, n_ops,
                       "op %zu: byte at 0x%" PRIx64 " reads 0x%02x, the op put 0x%02x there", i,
                       pos + k, buf[k], op_byte(op, pos + k));
        }
        pos += n;
    }
}

static void fuzz_write_one(const uint8_t *data, size_t size)
{
    Op ops[MAX_OPS];
    size_t image_len = image_part(data, size);
    if (!write_input(data, image_len))
        return;
    VdOpenOptions rw = {.read_only = false, .format = fuzz_format};
    g_autoptr(GError) err = NULL;
    VdImage *img = vd_image_open(fuzz_ctx, fuzz_path, &rw, &err);
    if (img == NULL)
        return;
    uint64_t disk = vd_image_size(img);
    size_t n_ops = parse_ops(data + image_len, size - image_len, disk, ops);
    bool all_ok = true;
    for (size_t i = 0; i < n_ops; i++) {
        ops[i].ok = run_op(img, &ops[i]);
        all_ok &= ops[i].ok;
    }
    bool flushed = vd_image_flush(img, &err);
    g_clear_error(&err);
    vd_image_unref(img);
    if (!flushed)
        return; /* an error was reported: nothing was promised */
    VdOpenOptions ro = {.read_only = true, .format = fuzz_format};
    img = vd_image_open(fuzz_ctx, fuzz_path, &ro, &err);
    if (img == NULL) {
        if (all_ok && n_ops > 0)
            broken(ops, n_ops, "the image no longer opens after writes that all succeeded: %s",
                   err->message);
        return;
    }
    if (vd_image_size(img) != disk)
        broken(ops, n_ops, "the size changed from %" PRIu64 " to %" PRIu64, disk,
               vd_image_size(img));
    for (size_t i = 0; i < n_ops; i++) {
        if (ops[i].ok && ops[i].kind != OP_FLUSH)
            verify_op(img, ops, n_ops, i);
    }
    exercise(img);
    vd_image_unref(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_format = getenv("VD_FUZZ_FORMAT");
    if (fuzz_format == NULL || vd_driver_find(fuzz_format) == NULL) {
        fprintf(stderr, "set VD_FUZZ_FORMAT to a driver name\n");
        exit(2);
    }
    const char *mode = getenv("VD_FUZZ_MODE");
    fuzz_write = mode != NULL && strcmp(mode, "write") == 0;
    if (fuzz_write && !(vd_driver_find(fuzz_format)->caps & VD_CAP_WRITE)) {
        fprintf(stderr, "format %s cannot be written\n", fuzz_format);
        exit(2);
    }
    char *dir = g_dir_make_tmp("vdfuzz-XXXXXX", NULL);
    fuzz_ctx = vd_context_new(dir, NULL);
    fuzz_path = g_build_filename(dir, "input.img", NULL);
    g_free(dir);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_write) {
        if (size > 0)
            fuzz_write_one(data, size);
        return 0;
    }
    if (!write_input(data, size))
        return 0;
    VdOpenOptions o = {.read_only = true, .format = fuzz_format};
    g_autoptr(GError) err = NULL;
    g_autoptr(VdImage) img = vd_image_open(fuzz_ctx, fuzz_path, &o, &err);
    if (img == NULL)
        return 0;
    exercise(img);
    g_autoptr(GPtrArray) snaps = vd_image_snapshots(img, &err);
    for (guint i = 0; snaps != NULL && i < snaps->len && i < 8; i++) {
        VdSnapshotInfo *s = g_ptr_array_index(snaps, i);
        g_autoptr(GError) serr = NULL;
        g_autoptr(VdImage) snap = vd_image_open_snapshot(img, s->id, &serr);
        if (snap != NULL)
            exercise(snap);
    }
    return 0;
}
