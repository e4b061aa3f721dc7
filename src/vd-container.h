/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Containers: files that hold a disk image (or any image file) rather
 * than being one - compressed streams, EWF evidence files. Each is a
 * source (src/vd-source.h) under the formats: vd_file_open() recognises
 * a container by its magic and hands out the source's descriptor, so a
 * qcow2 inside an .xz, or a raw disk inside an E01, is opened like any
 * other file. The table is sources/containers.h, one VD_CONTAINER(name)
 * line each, after the driver table's model.
 */
#ifndef VD_CONTAINER_H
#define VD_CONTAINER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

#include "vd-context.h"
#include "vd-source.h"

#define VD_CONTAINER_HEAD 512

typedef struct VdContainer {
    const char *name;   /* "xz" */
    const char *suffix; /* ".xz": the image is shown without it, where that name is free */
    const char *const *more_suffixes; /* optional, NULL-terminated: others treated alike */
    /* What it holds is a disk (EWF's media): raw unless its content is an
     * image format, whatever the name inside. Else, as for a compressed
     * stream, a name inside without a raw extension is not an image. */
    bool holds_disk;
    /* Whether the first bytes (up to VD_CONTAINER_HEAD) are this container's. */
    bool (*probe)(const uint8_t *head, size_t len, uint64_t file_size);
    /* Take fd (read-only, the container file at path) and describe what it
     * holds: its size and the operations that read it. fd is the source's
     * from then on (closed by ops->close), also when open fails. */
    bool (*open)(VdContext *ctx, int fd, const char *path, const char *name,
                 const VdSourceOps **ops, void **opaque, uint64_t *size, GError **error);
    /* Optional, for containers whose size costs decoding all they hold
     * (a gzip stream records none): decode only the first len bytes of
     * it into buf, for a probe; *got of them, *all when that is the
     * whole. *got 0 without *all: it cannot tell cheaply (open it then).
     * Reads fd at its offsets (pread), leaves it open. */
    bool (*head)(VdContext *ctx, int fd, const char *name, uint8_t *buf, size_t len, size_t *got,
                 bool *all, GError **error);
    /* Optional, for archives of several images: the names (g_free) of
     * the images fd holds when there are two or more, which the mount
     * then shows as a directory named like the archive; else (one image,
     * or none) an empty array. */
    bool (*list)(VdContext *ctx, int fd, const char *name, GPtrArray **members, GError **error);
    /* Optional: open the image named member (one of list's) as open does. */
    bool (*open_member)(VdContext *ctx, int fd, const char *path, const char *name,
                        const char *member, const VdSourceOps **ops, void **opaque, uint64_t *size,
                        GError **error);
} VdContainer;

extern const VdContainer *const vd_containers[];

/* The container whose magic head (len bytes) has, or NULL. */
const VdContainer *vd_container_probe(const uint8_t *head, size_t len, uint64_t file_size);

/* For a probe: a source over the first VD_CONTAINER_PROBE_SPAN bytes of
 * what c holds, as open does (the same arguments; fd is the source's
 * from then on), when c can tell them cheaply (its head op); *partial
 * unless they are all of it, and then the size is theirs, not the
 * content's. False with *declined when it cannot (open it whole; fd is
 * still the caller's then). */
#define VD_CONTAINER_PROBE_SPAN (64u << 10)
bool vd_container_open_head(const VdContainer *c, VdContext *ctx, int fd, const char *name,
                            const VdSourceOps **ops, void **opaque, uint64_t *size, bool *partial,
                            bool *declined, GError **error);

/* The name a container file is shown under: without its container's
 * suffix when it has one (g_free), else NULL. */
char *vd_container_shown_name(const VdContainer *c, const char *basename);

#endif
