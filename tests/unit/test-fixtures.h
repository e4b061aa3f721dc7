/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers every unit test needs (a scratch directory, running qemu-img,
 * writing a file, reading a whole image back), in one place so that the
 * tests do not each carry a copy. Each fails the test rather than return
 * an error: a fixture that cannot be set up is not a result.
 */
#ifndef TEST_FIXTURES_H
#define TEST_FIXTURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/vd-container.h"
#include "src/vd-image.h"

/* A new directory from g_dir_make_tmp's template (say "vdtest-XXXXXX"). */
char *tf_tmpdir(const char *tmpl);
/* Remove path and, when it is a directory, all below it (symlinks are
 * removed, not followed). Missing paths are fine. */
void tf_rm_rf(const char *path);

/* Run a command line (g_shell_parse_argv's quoting, no shell): the test
 * stops with its output unless it exits 0. */
void tf_run(const char *cmd);
/* Run it once: true if it exited 0 (for commands that fail now and then,
 * retried by the caller). */
bool tf_try(const char *cmd);

/* Write len bytes to path, replacing it. */
void tf_write_file(const char *path, const void *data, size_t len);

/* The whole virtual disk of img, read with vd_image_pread. */
uint8_t *tf_read_image(VdImage *img);
/* got equals want; otherwise the first differing offset is reported
 * (prefixed by what unless NULL) and the test marked failed. */
void tf_assert_same(const uint8_t *got, const uint8_t *want, uint64_t len, const char *what);

/* A container opened over a file written for the test. */
typedef struct {
    const VdContainer *c; /* what vd_container_probe found in its bytes */
    const VdSourceOps *ops;
    void *opaque;
    uint64_t size;
} TfContainer;
/* Write n bytes of data to dir/name (a new path, g_free) and open it as
 * the container its bytes are (which must be one): true, or false with
 * error set by the container's open. */
bool tf_container_open(VdContext *ctx, const char *dir, const char *name, const void *data,
                       size_t n, TfContainer *o, GError **error);

#endif
