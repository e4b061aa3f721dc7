/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Sources: what a format reads its bytes from when they are not a plain
 * host file - a member of a tar archive, a compressed stream, EWF evidence
 * segments. Formats read through host file descriptors (vd_host_pread,
 * vd_host_size, vd_host_seek_data); a source is reached through a
 * descriptor of its own, an O_PATH descriptor of the container file (so
 * that fstat tells the container's owner, mode and times, and a read that
 * bypassed this layer would fail rather than read the container's raw
 * bytes), and those functions send its reads here. So every format reads
 * from every source without knowing it, and plain files keep their
 * zero-copy path: a source that holds its bytes as they are says where
 * (vd_source_host_range), the others are copied from.
 *
 * Sources are read-only. The descriptor must be closed with vd_file_close
 * (src/vd-file.h), which forgets the source first.
 */
#ifndef VD_SOURCE_H
#define VD_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

struct VdInfo;

typedef struct {
    const char *name; /* "xz", "tar member"... */
    /* Read len bytes at off (< size, off + len <= size). */
    bool (*pread)(void *opaque, void *buf, size_t len, uint64_t off, GError **error);
    /* Optional: whether [off, off+len) reads as zeros as far as is known
     * cheaply; *run is how far from off the answer holds (> 0). */
    bool (*is_zero)(void *opaque, uint64_t off, uint64_t len, bool *zero, uint64_t *run);
    /* Optional: where [off, off+len) lies as it is in a host file: that
     * file's descriptor and *host_off, or -1. */
    int (*host_range)(void *opaque, uint64_t off, uint64_t len, uint64_t *host_off);
    /* Optional: the host paths of the other files the source reads (EWF's
     * later segments), NULL-terminated, kept while the source is. The
     * image read from it lists them as its members: hidden from
     * listings, counted in its host bytes. */
    const char *const *(*members)(void *opaque);
    /* Optional: take QEMU's reader locks on those files, when the
     * container's own file is locked (vd_file_lock); they go with the
     * source. */
    bool (*lock)(void *opaque, GError **error);
    /* Optional: what the container records about what it holds (EWF's
     * hashes and acquisition metadata), keys prefixed with its name
     * ("ewf.md5"): vdisk info shows them, and the mount as
     * user.vdiskfs.<key>. */
    void (*describe)(void *opaque, struct VdInfo *info);
    /* Optional: the unit the source decodes in (EWF's chunk), so that the
     * image on top splits reads at it to decode them side by side. */
    uint64_t (*unit)(void *opaque);
    /* Optional: the name of what the source holds, when the container's
     * own name does not tell it (a tar member's): the image is shown
     * under it where it is free. */
    const char *(*inner_name)(void *opaque);
    /* Optional: the host bytes what it holds occupies, when that is only
     * part of the container file (a member of an archive of several
     * disks): the image's st_blocks and disk size. Else the container
     * file's allocation counts. */
    bool (*host_bytes)(void *opaque, uint64_t *bytes);
    /* Optional: check what it holds against what the container records
     * (an OVA manifest's digests), when the image is opened for use - not
     * when a listing probes or peeks it; EIO with the reason. */
    bool (*verify)(void *opaque, GError **error);
    /* Optional: whether reading at off costs decoding far more than is
     * read (a single-block xz stream, decoded from its start): a probe
     * then looks at the end of what it holds only where the name asks
     * for a format known by its end (disk.vhd.xz). */
    bool (*costly_at)(void *opaque, uint64_t off);
    void (*close)(void *opaque);
} VdSourceOps;

/* Register a source of size bytes behind the descriptor fd (an O_PATH of
 * the container); the source owns opaque from now on. */
void vd_source_attach(int fd, const VdSourceOps *ops, void *opaque, uint64_t size);
/* Forget fd's source (closing it), if it has one. */
void vd_source_detach(int fd);

/* Whether fd is a source's. */
bool vd_source_is(int fd);

/* The dispatch points used by vd-io.c: true when fd is a source's, and
 * then *ok is what the operation returned. */
bool vd_source_pread(int fd, const char *name, void *buf, size_t len, uint64_t offset,
                     bool zero_past_eof, bool *ok, GError **error);
bool vd_source_size(int fd, uint64_t *size);
/* SEEK_DATA/SEEK_HOLE over a source: -1 with errno (ENXIO) like lseek. */
bool vd_source_seek(int fd, uint64_t offset, int whence, int64_t *result);
int vd_source_host_range(int fd, uint64_t off, uint64_t len, uint64_t *host_off);
/* The source's members (NULL when fd is no source's or it has none), its
 * locks (true when there is nothing to lock), its description (false when
 * it has none). */
const char *const *vd_source_members(int fd);
bool vd_source_lock(int fd, GError **error);
bool vd_source_describe(int fd, struct VdInfo *info);
/* The source's decoding unit, 0 when fd is no source's or it says none. */
uint64_t vd_source_unit(int fd);
/* The name inside (NULL when fd is no source's or it has none); the
 * source's verification (true when it has none). */
const char *vd_source_inner_name(int fd);
/* The source's own host bytes (false when fd is no source's or it says
 * none: the file's allocation is the answer then). */
bool vd_source_host_bytes(int fd, uint64_t *bytes);
bool vd_source_verify(int fd, GError **error);
/* Whether a read at off costs the source a long decode (false when fd
 * is no source's or it does not say). */
bool vd_source_costly_at(int fd, uint64_t off);

#endif
