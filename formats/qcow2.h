/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2: state shared by the driver's files (header, mapping, caches,
 * compression, encryption, snapshots, refcounts, allocation).
 * Layout facts from QEMU's docs/interop/qcow2.txt.
 */
#ifndef QCOW2_H
#define QCOW2_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "src/vd-brlock.h"
#include "src/vd-endian.h"
#include "src/vd-image.h"
#include "src/vd-luks.h"
#include "src/vd-metamap.h"
#include "src/vd-table-cache.h"

#define QCOW2_MAGIC 0x514649fbu

#define QCOW2_INCOMPAT_DIRTY       (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT     (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE   (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2       (1ull << 4)
#define QCOW2_INCOMPAT_KNOWN       0x1full

#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)

#define QCOW2_AUTOCLEAR_BITMAPS       (1ull << 0)
#define QCOW2_AUTOCLEAR_DATA_FILE_RAW (1ull << 1)

#define QCOW2_EXT_END         0x00000000u
#define QCOW2_EXT_BACKING_FMT 0xe2792acau
#define QCOW2_EXT_FEATURES    0x6803f857u
#define QCOW2_EXT_BITMAPS     0x23852875u
#define QCOW2_EXT_CRYPTO      0x0537be77u
#define QCOW2_EXT_DATA_FILE   0x44415441u
/* vdiskfs's own: what an overlay recorded about its original (QEMU keeps
 * unknown extensions and ignores them). */
#define QCOW2_EXT_ORIGIN 0x76644f72u

#define QCOW2_CRYPT_NONE 0
#define QCOW2_CRYPT_AES  1
#define QCOW2_CRYPT_LUKS 2

#define QCOW2_COMPRESS_ZLIB 0
#define QCOW2_COMPRESS_ZSTD 1

#define QCOW2_OFLAG_COPIED     (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO       (1ull << 0)
#define QCOW2_OFFSET_MASK      0x00fffffffffffe00ull /* L1 and standard L2 entries */
#define QCOW2_REFT_OFFSET_MASK 0xfffffffffffffe00ull

/* QEMU's implementation limits, which we share (they bound allocations). */
#define QCOW2_MAX_L1_BYTES       (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
#define QCOW2_MAX_SNAPSHOTS      65536u
#define QCOW2_MAX_SNAPSHOT_EXTRA 1024u
#define QCOW2_MAX_BACKING_NAME   1023u
#define QCOW2_SUBCLUSTERS        32u
#define QCOW2_SECTOR             512u
#define QCOW2_MIN_CLUSTER_BITS   9u
#define QCOW2_MAX_CLUSTER_BITS   21u
#define QCOW2_HEADER_V2_LENGTH   72u
#define QCOW2_HEADER_V3_MIN      104u

typedef struct Qcow2DecodeCache Qcow2DecodeCache;
typedef struct Qcow2Refcounts Qcow2Refcounts;
typedef struct Qcow2Trust Qcow2Trust;

typedef struct {
    uint8_t type; /* 0 incompatible, 1 compatible, 2 autoclear */
    uint8_t bit;
    char name[47];
} Qcow2FeatureName;

typedef struct {
    char *id;
    char *name;
    uint64_t l1_offset;
    uint32_t l1_size;
    int64_t date_sec;
    uint32_t date_nsec;
    uint64_t vm_state_size;
    uint64_t virtual_size;
    uint64_t vm_clock_nsec;
    uint64_t icount; /* UINT64_MAX when not recorded */
} Qcow2Snapshot;

/* One (sub)cluster as the mapping describes it. */
typedef enum {
    QCOW2_SC_UNALLOCATED, /* backing file (or zeros) */
    QCOW2_SC_ZERO,        /* reads as zeros */
    QCOW2_SC_NORMAL,      /* host_offset holds the data */
    QCOW2_SC_COMPRESSED,  /* the whole cluster, compressed */
    QCOW2_SC_INVALID,     /* contradictory entry: corruption */
} Qcow2ScType;

typedef struct Qcow2State {
    /* Immutable after open. */
    const char *name; /* the image's name for messages (owned by the VdImage) */
    VdImage *img;     /* the image this state belongs to (not a reference) */
    int fd;           /* the qcow2 file (owned by the VdImage) */
    int data_fd;      /* guest data: fd, or the external data file */
    bool own_data_fd;
    bool is_snapshot; /* a read-only view of an internal snapshot */
    uint32_t version;
    unsigned cluster_bits;
    uint64_t cluster_size;
    unsigned l2_bits;     /* log2 of entries per L2 table */
    unsigned l2_esize;    /* bytes per L2 entry: 8, or 16 with extended L2 */
    bool ext_l2;          /* 32 subclusters per cluster */
    unsigned sc_bits;     /* log2 of the subcluster size (cluster_bits without ext L2) */
    unsigned csize_shift; /* compressed descriptor: sector count field position */
    uint64_t csize_mask;
    uint64_t coffset_mask;
    uint32_t crypt_method;
    uint64_t incompat, compat, autoclear;
    unsigned refcount_order;
    uint32_t header_length;
    uint8_t compression_type;
    uint64_t refcount_table_offset; /* write side may move it (under write_lock) */
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    uint64_t snapshots_size; /* bytes the table spans */
    uint64_t crypto_offset, crypto_length;
    uint64_t bitmaps_offset; /* of the bitmap directory */
    uint64_t bitmaps_dir_size;
    uint32_t bitmaps_count;
    bool has_bitmaps_ext;
    GBytes *origin; /* QCOW2_EXT_ORIGIN's contents, or NULL */
    char *backing_file;
    char *backing_format;
    char *data_file;      /* as recorded in the header extension */
    char *data_file_path; /* resolved host path */
    bool data_file_raw;
    GArray *features;      /* Qcow2FeatureName */
    GPtrArray *snapshots;  /* Qcow2Snapshot * */
    VdLuks *crypto;        /* NULL when not encrypted (reference counted) */
    uint64_t virtual_size; /* of this view; the active size lives in img->size */

    /* Mapping: the L1 table (host byte order) and the L2 tables.
     *
     * l1, l1_entries and l1_offset are read under l1_lock and changed
     * under its write side by the write side (which also holds
     * img->write_lock, so it reads them without l1_lock). They need a
     * lock of their own because l2_cache's lock is a leaf that guards
     * only the cache: a reader must see an L1 entry and the L2 table it
     * points at as one snapshot, or it could follow an entry the write
     * side just moved to a fresh table into the table it left, which is
     * freed later. A big-reader lock, as the L2 cache's own lock used to
     * be, so that parallel readers share no lock word. Readers hold it
     * across vd_table_cache_read (the cache's lock nests inside, a load
     * on a miss included); the write side never calls into l2_cache with
     * it held, so a load never waits for it.
     *
     * pwrite_fast runs under img->write_lock's read side, which excludes
     * the write side: it reads l1 and the trusted tables (qcow2-trust.c)
     * without l1_lock. */
    VdBrLock l1_lock;
    uint64_t *l1;
    uint32_t l1_entries;
    uint64_t l1_offset;
    /* Cluster-sized L2 tables as on disk, keyed by host offset; flushing
     * it first flushes rc's refcount blocks (its dependency). */
    VdTableCache *l2_cache;
    Qcow2DecodeCache *decode; /* decompressed clusters (own lock) */

    /* Write side: only touched under img->write_lock. */
    Qcow2Refcounts *rc;
    /* Where the metadata lies in the qcow2 file (qcow2-meta.c), with rc.
     * Changed under img->write_lock held for writing; looked up by
     * pwrite_fast too (the map has its own lock). */
    VdMetaMap *meta;
    Qcow2Trust *trust;                 /* which COPIED flags hold (qcow2-trust.c), with rc */
    uint32_t l1_dirty_lo, l1_dirty_hi; /* dirty L1 index range [lo, hi) */
    bool write_ready;                  /* header prepared for writing */
} Qcow2State;

/* ---- qcow2.c ---- */
void qcow2_state_free(Qcow2State *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Qcow2State, qcow2_state_free)
/* Read and validate an L1 table (or a snapshot's) into host byte order. */
bool qcow2_load_l1(Qcow2State *s, uint64_t offset, uint32_t entries, uint64_t file_size,
                   uint64_t **out, GError **error);
uint64_t qcow2_l1_entries_for(const Qcow2State *s, uint64_t size);

/* ---- qcow2.c: the L1 table ---- */
/* Set L1 entry i (the write side) under l1_lock and mark it dirty. */
void qcow2_l1_set(Qcow2State *s, uint64_t i, uint64_t entry);
/* The table caches' callbacks: a cluster-sized table at key in s->fd
 * (L2 loads also check the table lies within the file, past the header). */
bool qcow2_l2_load(void *opaque, uint64_t key, uint8_t *data, GError **error);
bool qcow2_table_load(void *opaque, uint64_t key, uint8_t *data, GError **error);
bool qcow2_table_store(void *opaque, uint64_t key, const uint8_t *data, GError **error);
VdTableCache *qcow2_l2_cache_new(Qcow2State *s, uint64_t max_bytes);
/* Dirty tables in a cache. */
unsigned qcow2_dirty_tables(VdTableCache *c);

/* ---- qcow2-cluster.c: mapping, block status, reads ---- */
bool qcow2_block_status(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                        VdExtent *ext, GError **error);
bool qcow2_pread(VdImage *img, void *buf, size_t len, uint64_t offset, GError **error);
/* Read entry i of an L2 table's bytes (first word and, with ext L2, the bitmap). */
static inline uint64_t qcow2_l2_word(const Qcow2State *s, const uint8_t *t, uint64_t i)
{
    return vd_be64(t + i * s->l2_esize);
}
uint64_t qcow2_l2_bitmap(const Qcow2State *s, const uint8_t *t, uint64_t i);
void qcow2_l2_set(const Qcow2State *s, uint8_t *t, uint64_t i, uint64_t entry, uint64_t bitmap);
/* Change entry i of a pinned L2 table through the cache (readers see the
 * old entry and bitmap or the new ones). */
void qcow2_l2_update(Qcow2State *s, VdTable *t, uint64_t i, uint64_t entry, uint64_t bitmap);
/* Replace entries [first, first + n) of a pinned L2 table with raw (as on
 * disk) in one change. */
void qcow2_l2_store(Qcow2State *s, VdTable *t, uint64_t first, uint64_t n, const uint8_t *raw);
/* Type of subcluster sc (0 without ext L2) of an L2 entry; host offset of the
 * cluster for NORMAL (the subcluster's own offset is added by the caller). */
Qcow2ScType qcow2_sc_type(const Qcow2State *s, uint64_t entry, uint64_t bitmap, unsigned sc);
/* Host bytes [start, start + len) of a compressed descriptor. */
void qcow2_compressed_range(const Qcow2State *s, uint64_t entry, uint64_t *start, uint64_t *len);
/* EIO for an L2 entry that contradicts itself; false. */
bool qcow2_entry_error(Qcow2State *s, uint64_t guest, uint64_t entry, uint64_t bitmap,
                       GError **error);
/* The L2 entry (and bitmap) for a guest offset: false with error on
 * corruption; entry 0 when no L2 table is allocated. */
bool qcow2_get_entry(Qcow2State *s, uint64_t guest, uint64_t *entry, uint64_t *bitmap,
                     GError **error);

/* ---- qcow2-compress.c ---- */
Qcow2DecodeCache *qcow2_decode_cache_new(uint64_t cluster_size, uint64_t max_bytes);
void qcow2_decode_cache_free(Qcow2DecodeCache *d);
/* The decompressed cluster for an L2 entry, into out (cluster_size bytes). */
/* Decompress one cluster into out; keep: remember it for reads of parts
 * of it (whole-cluster reads, sequential ones, would only churn the cache). */
bool qcow2_read_compressed(Qcow2State *s, uint64_t entry, uint8_t *out, bool keep, GError **error);
bool qcow2_compression_supported(uint8_t type);

/* ---- qcow2-crypto.c ---- */
/* Unlock with the passphrase from the context; EACCES without one. */
bool qcow2_crypto_open(Qcow2State *s, VdImage *img, GError **error);
/* Sector number used for data at host/guest offset. */
uint64_t qcow2_crypto_sector(const Qcow2State *s, uint64_t host, uint64_t guest);
void qcow2_crypto_describe(const Qcow2State *s, VdInfo *info);

/* ---- qcow2-snapshot.c ---- */
bool qcow2_read_snapshots(Qcow2State *s, uint64_t file_size, GError **error);
GPtrArray *qcow2_snapshot_list(VdImage *img, GError **error);
bool qcow2_snapshot_open(VdImage *img, const char *id, VdImage *snap, GError **error);
void qcow2_snapshot_free(Qcow2Snapshot *sn);

/* ---- qcow2-refcount.c ---- */
bool qcow2_refcount_init(Qcow2State *s, GError **error);
void qcow2_refcount_free(Qcow2Refcounts *rc);
/* The cache of refcount blocks (cluster-sized, as on disk). */
VdTableCache *qcow2_refcount_blocks(const Qcow2State *s);
/* Allocate up to n contiguous fresh clusters (at least 1); refcounts set to 1. */
bool qcow2_alloc_clusters(Qcow2State *s, uint64_t n, uint64_t *offset, uint64_t *got,
                          GError **error);
/* n contiguous clusters past everything allocated (tables). */
bool qcow2_alloc_contiguous(Qcow2State *s, uint64_t n, uint64_t *offset, GError **error);
uint64_t qcow2_refcount_pending_bytes(const Qcow2State *s);
/* Queue the release of host bytes [start, start + len) (cluster-granular
 * refcount decrement), applied once the metadata no longer pointing there
 * is durable. */
void qcow2_free_later(Qcow2State *s, uint64_t start, uint64_t len);
/* Write back dirty refcount blocks (no sync). */
bool qcow2_refcount_writeback(Qcow2State *s, GError **error);
/* Apply queued frees (after the references are durable). */
bool qcow2_refcount_apply_frees(Qcow2State *s, GError **error);
bool qcow2_refcount_has_pending(const Qcow2State *s);
bool qcow2_refcount_dirty(const Qcow2State *s);
bool qcow2_refcount_pressure(const Qcow2State *s);
/* Refcounts of many clusters that mostly share a block: the cursor keeps
 * that block pinned between calls (start it zeroed, end it once). */
typedef struct {
    VdTable *block;
    uint64_t index; /* refcount table index of block */
} Qcow2RcCursor;
bool qcow2_refcount_read(Qcow2State *s, Qcow2RcCursor *cur, uint64_t cluster, uint64_t *value,
                         GError **error);
void qcow2_refcount_cursor_end(Qcow2State *s, Qcow2RcCursor *cur);
/* Low-level access for the repair code. */
bool qcow2_refcount_get(Qcow2State *s, uint64_t cluster, uint64_t *value, GError **error);
bool qcow2_refcount_set(Qcow2State *s, uint64_t cluster, uint64_t value, GError **error);
uint64_t qcow2_refcount_block_entries(const Qcow2State *s);
uint64_t qcow2_refcount_table_entries(const Qcow2State *s);
uint64_t qcow2_refcount_block_at(const Qcow2State *s, uint64_t region);
bool qcow2_refcount_new_block(Qcow2State *s, uint64_t region, uint64_t offset, GError **error);
uint64_t qcow2_refcount_max(const Qcow2State *s);
/* Rebuild refcounts from the metadata (dirty / lazy-refcount images). */
bool qcow2_repair(Qcow2State *s, GError **error);
/* vdisk check: counts against refcounts and COPIED flags, read-only. */
bool qcow2_check(VdImage *img, VdCheckReport *report, GError **error);

/* ---- qcow2-meta.c: the metadata's host ranges (read-write opens) ---- */
/* Corruption found while writing: the image marked corrupt (logged once,
 * QEMU's corrupt bit) and EIO with the same text, so that recording the
 * error at the FUSE boundary logs nothing more. False. */
bool qcow2_corrupt(Qcow2State *s, GError **error, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* Map every structure (header, L1 and its L2 tables, refcount table and
 * blocks, snapshot table and L1 tables, LUKS header, bitmaps) into
 * s->meta: EIO naming them when one lies outside the file, is unaligned,
 * or overlaps another. */
bool qcow2_meta_build(Qcow2State *s, GError **error);
/* Every host range the valid persistent bitmaps use (directory, tables,
 * data clusters), in order, to visit (false stops with its error). */
typedef bool (*Qcow2BitmapVisit)(void *opaque, uint64_t start, uint64_t len, const char *what,
                                 GError **error);
bool qcow2_bitmap_clusters(const Qcow2State *s, Qcow2BitmapVisit visit, void *opaque,
                           GError **error);
/* vdisk info: the persistent bitmaps as "bitmaps" list items. */
void qcow2_describe_bitmaps(const Qcow2State *s, VdInfo *info);
/* Freshly allocated clusters [off, off + len) must hold no metadata: if
 * they do, the refcounts lie, and the image is marked corrupt (EIO). */
bool qcow2_meta_check_free(Qcow2State *s, uint64_t off, uint64_t len, GError **error);
/* [off, off + len) becomes metadata (a static what), or EIO (image marked
 * corrupt) when it would overlap some. */
bool qcow2_meta_claim(Qcow2State *s, uint64_t off, uint64_t len, const char *what, GError **error);
/* The structure starting at off is no longer metadata of the active image. */
void qcow2_meta_release(Qcow2State *s, uint64_t off);
/* The metadata range [off, off + len) touches, if any. */
bool qcow2_meta_find(Qcow2State *s, uint64_t off, uint64_t len, VdMetaRange *hit);

/* ---- qcow2-trust.c: which COPIED flags the write side believes ---- */
Qcow2Trust *qcow2_trust_new(void);
void qcow2_trust_free(Qcow2Trust *tr);
/* Check a pinned L2 table's COPIED entries once per session (dropping the
 * flag where a snapshot shares the cluster); EIO, image marked corrupt,
 * where the refcount is 0 or another trusted entry names the cluster. */
bool qcow2_trust_table(Qcow2State *s, VdTable *t, GError **error);
/* A table the write side just made empty: trusted as it is. */
void qcow2_trust_new_table(Qcow2State *s, VdTable *t);
/* Whether the L2 table at off was checked this session (or made by us):
 * write side, or pwrite_fast under img->write_lock's read side. */
bool qcow2_trust_known(const Qcow2State *s, uint64_t off);
/* An entry of a trusted table changes from old_entry to new_entry. */
void qcow2_trust_update(Qcow2State *s, uint64_t old_entry, uint64_t new_entry);
/* Whether a trusted entry names one of the clusters [first, first + n). */
bool qcow2_trust_is_claimed(Qcow2State *s, uint64_t first, uint64_t n, uint64_t *which);

/* ---- qcow2-alloc.c ---- */
bool qcow2_pwrite(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error);
int qcow2_pwrite_fast(VdImage *img, const void *buf, size_t len, uint64_t offset, GError **error);
bool qcow2_write_zeroes(VdImage *img, uint64_t offset, uint64_t length, unsigned flags,
                        GError **error);
bool qcow2_truncate(VdImage *img, uint64_t new_size, GError **error);
bool qcow2_flush(VdImage *img, GError **error);
/* Write back every dirty table in dependency order (no final data sync). */
bool qcow2_metadata_writeback(Qcow2State *s, GError **error);
/* Host file size of the qcow2 file, or a large value on error. */
uint64_t qcow2_file_size(const Qcow2State *s);

static inline Qcow2State *qcow2_state(VdImage *img)
{
    return img->opaque;
}

static inline uint64_t qcow2_round_up(uint64_t v, uint64_t align)
{
    return (v + align - 1) & ~(align - 1);
}

#endif
