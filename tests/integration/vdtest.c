/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Small probes for the integration tests: things the shell cannot do. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* seekmap FILE: merged data ranges through SEEK_DATA/SEEK_HOLE. */
static int cmd_seekmap(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    struct stat st;
    fstat(fd, &st);
    off_t pos = 0;
    while (pos < st.st_size) {
        off_t data = lseek(fd, pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO)
                break;
            perror("SEEK_DATA");
            return 1;
        }
        off_t hole = lseek(fd, data, SEEK_HOLE);
        if (hole < 0) {
            perror("SEEK_HOLE");
            return 1;
        }
        printf("%jd %jd\n", (intmax_t)data, (intmax_t)(hole - data));
        pos = hole;
    }
    return 0;
}

/* zeromap FILE UNIT: the data ranges of FILE if every UNIT-byte piece
 * that holds only zeros a hole, merged, as seekmap prints them. */
static int cmd_zeromap(const char *path, const char *unitp)
{
    FILE *f = fopen(path, "rb");
    size_t unit = (size_t)atol(unitp);
    if (f == NULL || unit == 0 || unit > (64u << 20))
        return 2;
    unsigned char *buf = malloc(unit), *zero = calloc(1, unit);
    long long off = 0, start = -1;
    size_t n;
    while (buf != NULL && zero != NULL && (n = fread(buf, 1, unit, f)) > 0) {
        bool data = memcmp(buf, zero, n) != 0;
        if (data && start < 0)
            start = off;
        if (!data && start >= 0) {
            printf("%lld %lld\n", start, off - start);
            start = -1;
        }
        off += (long long)n;
    }
    if (start >= 0)
        printf("%lld %lld\n", start, off - start);
    free(buf);
    free(zero);
    fclose(f);
    return 0;
}

typedef struct {
    const char *got, *expect;
    unsigned seed;
    int iterations;
    int failed;
} Reader;

/* Each thread reads random ranges of both files and compares them. */
static void *reader_main(void *arg)
{
    Reader *r = arg;
    int a = open(r->got, O_RDONLY), b = open(r->expect, O_RDONLY);
    struct stat st;
    if (a < 0 || b < 0 || fstat(b, &st) < 0) {
        r->failed = 1;
        return NULL;
    }
    char *x = malloc(1 << 20), *y = malloc(1 << 20);
    for (int i = 0; i < r->iterations && !r->failed; i++) {
        size_t len = 1 + rand_r(&r->seed) % (1 << 20);
        off_t off = st.st_size > 1 ? (off_t)(((uint64_t)rand_r(&r->seed) << 16 ^ rand_r(&r->seed)) %
                                             (uint64_t)st.st_size)
                                   : 0;
        ssize_t n1 = pread(a, x, len, off), n2 = pread(b, y, len, off);
        if (n1 != n2 || n1 < 0 || memcmp(x, y, (size_t)n1) != 0) {
            fprintf(stderr, "parread: mismatch at offset %jd length %zu (got %zd, expected %zd)\n",
                    (intmax_t)off, len, n1, n2);
            r->failed = 1;
        }
    }
    free(x);
    free(y);
    close(a);
    close(b);
    return NULL;
}

/* parread GOT EXPECT THREADS ITERATIONS */
static int cmd_parread(char **argv)
{
    int n = atoi(argv[2]);
    pthread_t t[64];
    Reader r[64];
    if (n < 1 || n > 64)
        return 2;
    for (int i = 0; i < n; i++) {
        r[i] = (Reader){argv[0], argv[1], (unsigned)i * 7919u + 1, atoi(argv[3]), 0};
        pthread_create(&t[i], NULL, reader_main, &r[i]);
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
        failed |= r[i].failed;
    }
    return failed;
}

/* errno FILE OP...: print the errno name an operation ends with ("OK" if none). */
static int cmd_errno(char **argv, int argc)
{
    const char *path = argv[0], *op = argv[1];
    int r = 0;
    if (strcmp(op, "open-rw") == 0) {
        int fd = open(path, O_RDWR);
        r = fd < 0 ? -1 : 0;
        if (fd >= 0)
            close(fd);
    } else if (strcmp(op, "open-ro") == 0) {
        int fd = open(path, O_RDONLY);
        r = fd < 0 ? -1 : 0;
        if (fd >= 0)
            close(fd);
    } else if (strcmp(op, "read") == 0) {
        int fd = open(path, O_RDONLY);
        char buf[512];
        r = fd < 0 ? -1 : (int)pread(fd, buf, sizeof buf, 0);
        r = r < 0 ? -1 : 0;
        if (fd >= 0)
            close(fd);
    } else if (strcmp(op, "punch") == 0 || strcmp(op, "zero") == 0) {
        if (argc < 4)
            return 2;
        int fd = open(path, O_RDWR);
        int mode = strcmp(op, "punch") == 0 ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                                            : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
        r = fd < 0 ? -1 : fallocate(fd, mode, atoll(argv[2]), atoll(argv[3]));
        if (fd >= 0)
            close(fd);
    } else if (strcmp(op, "pwrite") == 0 || strcmp(op, "writeback") == 0) {
        /* pwrite OFF LEN [BYTE]: write (0xee by default) and fsync;
         * writeback also reads the range back through the same handle
         * ("WRONG" when it differs). */
        if (argc < 4)
            return 2;
        size_t len = (size_t)atoll(argv[3]);
        off_t off = (off_t)atoll(argv[2]);
        char *buf = malloc(len), *got = malloc(len);
        if (buf == NULL || got == NULL)
            return 2;
        memset(buf, argc >= 5 ? atoi(argv[4]) : 0xee, len);
        int fd = open(path, O_RDWR);
        r = fd < 0 ? -1 : pwrite(fd, buf, len, off) == (ssize_t)len ? 0 : -1;
        r = r < 0 ? -1 : fsync(fd);
        bool wrong = false;
        if (r == 0 && strcmp(op, "writeback") == 0) {
            r = pread(fd, got, len, off) == (ssize_t)len ? 0 : -1;
            wrong = r == 0 && memcmp(buf, got, len) != 0;
        }
        if (fd >= 0)
            close(fd);
        free(buf);
        free(got);
        if (wrong) {
            printf("WRONG\n");
            return 0;
        }
    } else if (strcmp(op, "truncate") == 0) {
        if (argc < 3)
            return 2;
        r = truncate(path, atoll(argv[2]));
    } else {
        return 2;
    }
    printf("%s\n", r == 0 ? "OK" : strerrorname_np(errno));
    return 0;
}

/* pattern BYTE COUNT: COUNT bytes of value BYTE on stdout. */
static int cmd_pattern(const char *byte, const char *count)
{
    char buf[65536];
    memset(buf, atoi(byte), sizeof buf);
    for (long long left = atoll(count); left > 0;) {
        size_t n = left < (long long)sizeof buf ? (size_t)left : sizeof buf;
        if (fwrite(buf, 1, n, stdout) != n)
            return 1;
        left -= (long long)n;
    }
    return 0;
}

/* torn NEW GOT UNIT: count the UNIT-byte pieces of GOT that equal NEW
 * ("new"), are zero ("old") or neither ("torn"); prints the counts and
 * the first torn offsets, exits 1 when a piece is torn. */
static int cmd_torn(const char *newp, const char *gotp, const char *unitp)
{
    FILE *a = fopen(newp, "rb"), *b = fopen(gotp, "rb");
    size_t unit = (size_t)atol(unitp);
    if (a == NULL || b == NULL || unit == 0 || unit > 65536)
        return 2;
    static unsigned char x[65536], y[65536], zero[65536];
    long long n_new = 0, n_old = 0, n_torn = 0, off = 0;
    while (fread(x, 1, unit, a) == unit && fread(y, 1, unit, b) == unit) {
        if (memcmp(x, y, unit) == 0)
            n_new++;
        else if (memcmp(y, zero, unit) == 0)
            n_old++;
        else if (n_torn++ < 5)
            printf("torn piece at offset %lld\n", off);
        off += (long long)unit;
    }
    printf("new %lld old %lld torn %lld\n", n_new, n_old, n_torn);
    return n_torn > 0;
}

/* fsyncwriter FILE SIZE BS SEED LOG: until a write fails, BS bytes of one
 * value at a pseudo-random BS-aligned offset below SIZE, then fsync; LOG
 * gets "try OFF VALUE" before each write and "done OFF VALUE" once its
 * fsync returned (unbuffered, so that a kill of the daemon loses no line). */
static int cmd_fsyncwriter(char **argv)
{
    int fd = open(argv[0], O_RDWR);
    uint64_t size = strtoull(argv[1], NULL, 0), bs = strtoull(argv[2], NULL, 0);
    uint64_t x = strtoull(argv[3], NULL, 0) * 0x9e3779b97f4a7c15ull + 1;
    int log = open(argv[4], O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0 || log < 0 || bs == 0 || bs > 65536 || size < bs)
        return 2;
    static unsigned char buf[65536];
    for (uint64_t i = 0;; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t off = x % (size / bs) * bs;
        int val = (int)(i % 255) + 1;
        char line[64];
        int n = snprintf(line, sizeof line, "try %" PRIu64 " %d\n", off, val);
        if (write(log, line, (size_t)n) != n)
            return 2;
        memset(buf, val, bs);
        if (pwrite(fd, buf, bs, (off_t)off) != (ssize_t)bs || fsync(fd) != 0)
            return 0;
        n = snprintf(line, sizeof line, "done %" PRIu64 " %d\n", off, val);
        if (write(log, line, (size_t)n) != n)
            return 2;
    }
}

typedef struct {
    uint64_t off;
    size_t seq;
    int val;
    int done;
} LogLine;

static int cmp_logline(const void *a, const void *b)
{
    const LogLine *x = a, *y = b;
    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* fsyncexpect LOG: for every offset with a "done" line in LOG (see
 * fsyncwriter), "OFF V..." on stdout: what it may hold now, the value of
 * its last "done" and those of any "try" after it (writes in flight when
 * the daemon died). */
static int cmd_fsyncexpect(const char *logp)
{
    FILE *log = fopen(logp, "r");
    if (log == NULL)
        return 2;
    size_t n = 0, cap = 1024;
    LogLine *e = malloc(cap * sizeof *e);
    char word[8];
    uint64_t off;
    int val;
    while (e != NULL && fscanf(log, "%7s %" SCNu64 " %d", word, &off, &val) == 3) {
        if (n == cap)
            e = realloc(e, (cap *= 2) * sizeof *e);
        if (e == NULL)
            return 2;
        e[n] = (LogLine){off, n, val, strcmp(word, "done") == 0};
        n++;
    }
    qsort(e, n, sizeof *e, cmp_logline);
    for (size_t i = 0; i < n;) {
        size_t end = i, last = n;
        while (end < n && e[end].off == e[i].off) {
            if (e[end].done)
                last = end;
            end++;
        }
        if (last < n) {
            printf("%" PRIu64, e[last].off);
            for (size_t k = last; k < end; k++)
                printf(" %d", e[k].val);
            printf("\n");
        }
        i = end;
    }
    free(e);
    return 0;
}

/* rwseq FILE CHUNK: read FILE in order, CHUNK bytes at a time, and after
 * each read write the next chunk (which read-ahead may hold already) with
 * a byte of its own, then check that the next read returns it. */
static int cmd_rwseq(const char *path, const char *chunkp)
{
    size_t chunk = (size_t)atol(chunkp);
    int fd = open(path, O_RDWR);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || chunk == 0) {
        perror(path);
        return 1;
    }
    uint8_t *buf = malloc(chunk), *want = malloc(chunk);
    int bad = 0;
    for (off_t off = 0; !bad && off + (off_t)(2 * chunk) <= st.st_size; off += (off_t)chunk) {
        if (pread(fd, buf, chunk, off) != (ssize_t)chunk) {
            perror("pread");
            bad = 1;
            break;
        }
        if (off > 0 && memcmp(buf, want, chunk) != 0) {
            printf("offset %jd: read the data from before the write\n", (intmax_t)off);
            bad = 1;
        }
        memset(want, (int)((off / (off_t)chunk) % 250 + 1), chunk);
        if (pwrite(fd, want, chunk, off + (off_t)chunk) != (ssize_t)chunk) {
            perror("pwrite");
            bad = 1;
        }
    }
    free(buf);
    free(want);
    close(fd);
    return bad;
}

/* ofdlock FILE: an OFD read lock on byte 100 (as QEMU's first lock byte);
 * prints OK or the errno's name. */
static int cmd_ofdlock(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1};
    int r = fcntl(fd, F_OFD_SETLK, &fl);
    printf("%s\n", r == 0 ? "OK" : strerrorname_np(errno));
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && strcmp(argv[1], "torn") == 0)
        return cmd_torn(argv[2], argv[3], argv[4]);
    if (argc >= 4 && strcmp(argv[1], "pattern") == 0)
        return cmd_pattern(argv[2], argv[3]);
    if (argc >= 3 && strcmp(argv[1], "seekmap") == 0)
        return cmd_seekmap(argv[2]);
    if (argc >= 4 && strcmp(argv[1], "zeromap") == 0)
        return cmd_zeromap(argv[2], argv[3]);
    if (argc >= 6 && strcmp(argv[1], "parread") == 0)
        return cmd_parread(argv + 2);
    if (argc >= 4 && strcmp(argv[1], "errno") == 0)
        return cmd_errno(argv + 2, argc - 2);
    if (argc >= 7 && strcmp(argv[1], "fsyncwriter") == 0)
        return cmd_fsyncwriter(argv + 2);
    if (argc >= 3 && strcmp(argv[1], "fsyncexpect") == 0)
        return cmd_fsyncexpect(argv[2]);
    if (argc >= 4 && strcmp(argv[1], "rwseq") == 0)
        return cmd_rwseq(argv[2], argv[3]);
    if (argc >= 3 && strcmp(argv[1], "ofdlock") == 0)
        return cmd_ofdlock(argv[2]);
    fprintf(stderr,
            "usage: vdtest seekmap FILE | zeromap FILE UNIT | parread GOT EXPECT THREADS ITER |"
            " errno FILE OP [ARGS] | pattern BYTE COUNT |"
            " fsyncwriter FILE SIZE BS SEED LOG | fsyncexpect LOG | ofdlock FILE |"
            " rwseq FILE CHUNK\n");
    return 2;
}
