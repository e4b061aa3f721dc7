/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What every image opened on behalf of one mount (or one vdisk command)
 * shares: where images may live, how backing files are resolved, where
 * passphrases come from, and cache sizes.
 */
#ifndef VD_CONTEXT_H
#define VD_CONTEXT_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

typedef enum {
    VD_BACKING_CONFINED, /* backing files must resolve inside root */
    VD_BACKING_ANY,
} VdBackingPolicy;

typedef struct VdContext {
    gint refcount;
    char *root; /* realpath of IMAGEDIR, or NULL (vdisk on a lone file) */
    VdBackingPolicy backing_policy;
    GKeyFile *keyfile;             /* passphrases, one group per image path; NULL if none */
    char **raw_extensions;         /* lower case, without the dot */
    uint64_t metadata_cache_bytes; /* per image, for L2/BAT/grain caches */
    uint64_t decode_cache_bytes;   /* per image, decompressed clusters */
    unsigned max_chain_depth;
    /* Read-only opens take no QEMU-compatible locks (qemu-img -U); writers
     * always do. */
    bool force_share;
    /* Encrypted images without a passphrase still open (vdisk info):
     * described from their headers, read-only, every data read EACCES. */
    bool open_locked;
    int root_fd; /* O_PATH of root, for confined opens (vd-file.c), or -1 */
    /* -o overlay=DIR (vd-overlay.c): realpath of DIR and its O_PATH fd;
     * NULL and -1 without overlays. */
    char *overlay_dir;
    int overlay_fd;
    /* Images of IMAGEDIR that are symlinks resolving outside it: hidden
     * (confined, the default) or followed (any). */
    VdBackingPolicy symlink_policy;
    /* What the tables of all open images (L1 tables, BATs, block maps,
     * refcount tables) may take together, in bytes (0: no bound), so that
     * hostile headers cannot make a directory of images exhaust the host.
     * mem_used is atomic (vd_context_mem_reserve). */
    uint64_t mem_budget;
    gint64 mem_used;
    GMutex lock_lock;            /* guards locked_files */
    GHashTable *locked_files;    /* "dev:ino" -> number of our locked opens (vd-lock.c) */
    gint lock_warned;            /* the host refused locks: warned once */
    uint32_t kdf_max_iterations; /* PBKDF2 iterations an image may ask for (vd-kdf.h) */
    gint cancelled;              /* the mount is shutting down: atomic, see vd_context_cancel */
    /* Where containers that decode all they hold on first open (gzip)
     * write it for later reads (src/vd-spill.h); NULL: nowhere. */
    char *spill_dir;
} VdContext;

/* IMAGEDIR's realpath, or NULL (for code outside the block layer). */
static inline const char *vd_context_root(const VdContext *ctx)
{
    return ctx->root;
}

#define VD_DEFAULT_RAW_EXTENSIONS "img,raw,iso,dd,bin"
#define VD_DEFAULT_METADATA_CACHE (32u << 20)
#define VD_DEFAULT_DECODE_CACHE   (8u << 20)
#define VD_DEFAULT_CHAIN_DEPTH    64
#define VD_DEFAULT_MEM_BUDGET     (1024ull << 20)

/*
 * The default cap on PBKDF2 iterations, 2^25 = 33554432. Measured on a
 * 2-core AMD EPYC with SHA extensions (OpenSSL 3.0; cryptsetup benchmark:
 * PBKDF2-SHA256 at 4.3 million iterations per second): qemu-img create -o
 * encrypt.format=luks with its default iter-time of 2 s wrote key slots of
 * 8.4 million iterations, cryptsetup luksFormat (luks1, and luks2 with
 * --pbkdf pbkdf2) 4.5-4.8 million, their key digests 0.3-2.1 million. The
 * cap accepts images made the default way on machines four times faster
 * than that one; a slot at the cap costs 8 s of one core there (16 s for
 * 64-byte XTS keys, two SHA-256 blocks per iteration).
 */
#define VD_DEFAULT_KDF_MAX_ITERATIONS (1u << 25)
/* The largest cap -o kdf_max_iterations takes (OpenSSL counts in an int). */
#define VD_KDF_MAX_ITERATIONS_LIMIT 2147483647u

VdContext *vd_context_new(const char *root, GError **error);
VdContext *vd_context_ref(VdContext *ctx);
void vd_context_unref(VdContext *ctx);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VdContext, vd_context_unref)

/* "img,raw" -> extension list; false with a message if malformed. */
bool vd_context_set_raw_extensions(VdContext *ctx, const char *list, GError **error);

/* Load a passphrase file; refused unless owned by the caller (or root) and
 * neither group- nor world-readable. */
bool vd_context_load_keyfile(VdContext *ctx, const char *path, GError **error);

/* Send every write to overlays in dir (created if missing), which must not
 * lie inside root. */
bool vd_context_set_overlay_dir(VdContext *ctx, const char *dir, GError **error);

/* Reserve bytes of the memory budget for a table of name's (what: "L1
 * table"): ENOMEM with a message giving the budget when they do not fit.
 * Give them back with vd_context_mem_release(). */
bool vd_context_mem_reserve(VdContext *ctx, uint64_t bytes, const char *name, const char *what,
                            GError **error);
void vd_context_mem_release(VdContext *ctx, uint64_t bytes);

/* The file name has one of the raw extensions. */
bool vd_context_is_raw_name(const VdContext *ctx, const char *basename);

/* The passphrase for an image (group = image name relative to IMAGEDIR,
 * key "passphrase"). EACCES with a reason when there is none. Free the
 * result with vd_secret_free(), which wipes it. */
char *vd_context_passphrase(const VdContext *ctx, const char *image_name, GError **error);
void vd_secret_free(char *secret);

/* Ask every wait done on behalf of this context (key derivation) to give
 * up with ECANCELED: the mount is going away. Async-signal-safe. */
void vd_context_cancel(VdContext *ctx);
bool vd_context_cancelled(const VdContext *ctx);
#endif
