/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * mkvmdk: VMDK extents that qemu-img cannot make, for the integration
 * tests, written by the unit tests' generators (tests/unit/test-vmdk-gen.c)
 * so that both kinds of test read the same layouts.
 *
 *   mkvmdk sesparse OUT [EXPECT|- [OFFSET=VALUE...]]
 *
 * OUT: a 64 MiB seSparse extent. Data grains (4 KiB) 0, 3, 4095-4096
 * (across tables 0 and 1), 8000 and 12287 (the last of table 2), stored
 * out of order; grains 1 and 4100 zero, 2 unmapped; table 3 missing.
 * EXPECT: the raw disk it holds. Each OFFSET=VALUE then overwrites the
 * little-endian u64 at byte OFFSET of OUT (hostile variants).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/test-vmdk-gen.h"

#define SE_SECTORS (4 * 32768)
#define SE_GRAIN   4096
#define SE_SEED    7

static const uint64_t se_data[] = {0, 3, 4095, 4096, 8000, 12287};
static const uint64_t se_idx[] = {4, 0, 2, 1, 5, 3};
static const uint64_t se_zero[] = {1, 4100};
static const uint64_t se_unmapped[] = {2};

static int write_expect(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)SE_SECTORS * SECTOR) < 0) {
        fprintf(stderr, "mkvmdk: %s: %s\n", path, strerror(errno));
        return 1;
    }
    uint8_t grain[SE_GRAIN];
    for (size_t i = 0; i < G_N_ELEMENTS(se_data); i++) {
        uint64_t off = se_data[i] * SE_GRAIN;
        gen_fill(grain, sizeof grain, off, SE_SEED);
        if (pwrite(fd, grain, sizeof grain, (off_t)off) != (ssize_t)sizeof grain) {
            fprintf(stderr, "mkvmdk: %s: %s\n", path, strerror(errno));
            close(fd);
            return 1;
        }
    }
    return close(fd) == 0 ? 0 : 1;
}

static int mk_sesparse(int argc, char **argv)
{
    GenBuf b = {0};
    GenSe s = {.capacity = SE_SECTORS,
               .data = se_data,
               .data_idx = se_idx,
               .n_data = G_N_ELEMENTS(se_data),
               .zero = se_zero,
               .n_zero = G_N_ELEMENTS(se_zero),
               .unmapped = se_unmapped,
               .n_unmapped = G_N_ELEMENTS(se_unmapped),
               .seed = SE_SEED};
    gen_sesparse(&b, &s);
    for (int i = 2; i < argc; i++) {
        char *eq = strchr(argv[i], '='), *end1 = NULL, *end2 = NULL;
        uint64_t off = eq ? strtoull(argv[i], &end1, 0) : 0;
        uint64_t val = eq ? strtoull(eq + 1, &end2, 0) : 0;
        if (eq == NULL || end1 != eq || *end2 != '\0' || off > b.len || b.len - off < 8) {
            fprintf(stderr, "mkvmdk: bad OFFSET=VALUE '%s'\n", argv[i]);
            gen_free(&b);
            return 2;
        }
        gen_le64(&b, off, val);
    }
    gen_write_file(&b, argv[0]);
    gen_free(&b);
    return argc >= 2 && strcmp(argv[1], "-") != 0 ? write_expect(argv[1]) : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "sesparse") == 0)
        return mk_sesparse(argc - 2, argv + 2);
    fprintf(stderr, "usage: mkvmdk sesparse OUT [EXPECT|- [OFFSET=VALUE...]]\n");
    return 2;
}
