/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * qcow2 internal snapshots: the snapshot table, and read-only views that
 * map through a snapshot's own L1 table with its own virtual size.
 */
#include "config.h"

#include <fcntl.h>
#include <string.h>

#include "formats/qcow2.h"
#include "src/vd-endian.h"
#include "src/vd-error.h"
#include "src/vd-io.h"

#define SNAPSHOT_TABLE_MAX (64u << 20)

void qcow2_snapshot_free(Qcow2Snapshot *sn)
{
    if (sn == NULL)
        return;
    g_free(sn->id);
    g_free(sn->name);
    g_free(sn);
}

bool qcow2_read_snapshots(Qcow2State *s, uint64_t file_size, GError **error)
{
    s->snapshots = g_ptr_array_new_with_free_func((GDestroyNotify)qcow2_snapshot_free);
    if (s->nb_snapshots == 0)
        return true;
    if (s->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
        vd_set_error(error, EIO, "%s: %u snapshots is more than the limit of %u", s->name,
                     s->nb_snapshots, QCOW2_MAX_SNAPSHOTS);
        return false;
    }
    if (s->snapshots_offset & (s->cluster_size - 1) || s->snapshots_offset < s->cluster_size) {
        vd_set_error(error, EIO, "%s: snapshot table offset 0x%" G_GINT64_MODIFIER "x is invalid",
                     s->name, s->snapshots_offset);
        return false;
    }
    uint64_t pos = s->snapshots_offset;
    for (uint32_t i = 0; i < s->nb_snapshots; i++) {
        uint8_t h[40];
        if (!vd_range_within(pos, sizeof h, file_size) ||
            pos - s->snapshots_offset > SNAPSHOT_TABLE_MAX) {
            vd_set_error(error, EIO,
                         "%s: snapshot table entry %u at 0x%" G_GINT64_MODIFIER
                         "x lies beyond the end of the file",
                         s->name, i, pos);
            return false;
        }
        if (!vd_host_pread(s->fd, s->name, h, sizeof h, pos, false, error))
            return false;
        uint16_t id_len = vd_be16(h + 12), name_len = vd_be16(h + 14);
        uint32_t extra_len = vd_be32(h + 36);
        if (extra_len > QCOW2_MAX_SNAPSHOT_EXTRA) {
            vd_set_error(error, EIO, "%s: snapshot %u has %u bytes of extra data", s->name, i,
                         extra_len);
            return false;
        }
        uint64_t var_len = (uint64_t)extra_len + id_len + name_len;
        if (!vd_range_within(pos + sizeof h, var_len, file_size)) {
            vd_set_error(error, EIO, "%s: snapshot table entry %u lies beyond the end of the file",
                         s->name, i);
            return false;
        }
        g_autofree uint8_t *var = g_malloc(var_len + 1);
        if (!vd_host_pread(s->fd, s->name, var, var_len, pos + sizeof h, false, error))
            return false;
        Qcow2Snapshot *sn = g_new0(Qcow2Snapshot, 1);
        sn->l1_offset = vd_be64(h);
        sn->l1_size = vd_be32(h + 8);
        sn->date_sec = vd_be32(h + 16);
        sn->date_nsec = vd_be32(h + 20);
        sn->vm_clock_nsec = vd_be64(h + 24);
        sn->vm_state_size = vd_be32(h + 32);
        /* Extra data from QEMU 5.0 on records icount; all ones is "none". */
        sn->icount = extra_len >= 24 ? vd_be64(var + 16) : UINT64_MAX;
        if (extra_len >= 8)
            sn->vm_state_size = vd_be64(var);
        sn->virtual_size = extra_len >= 16 ? vd_be64(var + 8) : s->virtual_size;
        sn->id = g_strndup((const char *)var + extra_len, id_len);
        sn->name = g_strndup((const char *)var + extra_len + id_len, name_len);
        g_ptr_array_add(s->snapshots, sn);
        pos = qcow2_round_up(pos + sizeof h + var_len, 8);
    }
    s->snapshots_size = pos - s->snapshots_offset;
    return true;
}

GPtrArray *qcow2_snapshot_list(VdImage *img, GError **error)
{
    Qcow2State *s = qcow2_state(img);
    GPtrArray *out = g_ptr_array_new_with_free_func((GDestroyNotify)vd_snapshot_info_free);
    for (guint i = 0; s->snapshots != NULL && i < s->snapshots->len; i++) {
        const Qcow2Snapshot *sn = s->snapshots->pdata[i];
        VdSnapshotInfo *vi = g_new0(VdSnapshotInfo, 1);
        vi->id = g_strdup(sn->id);
        vi->name = g_strdup(sn->name);
        vi->date_sec = sn->date_sec;
        vi->date_nsec = sn->date_nsec;
        vi->virtual_size = sn->virtual_size;
        vi->vm_state_size = sn->vm_state_size;
        vi->vm_clock_nsec = sn->vm_clock_nsec;
        vi->has_icount = sn->icount != UINT64_MAX;
        vi->icount = sn->icount;
        g_ptr_array_add(out, vi);
    }
    return out;
}

bool qcow2_snapshot_open(VdImage *img, const char *id, VdImage *snap, GError **error)
{
    Qcow2State *s = qcow2_state(img);
    const Qcow2Snapshot *sn = NULL;
    for (guint i = 0; s->snapshots != NULL && i < s->snapshots->len && sn == NULL; i++) {
        const Qcow2Snapshot *c = s->snapshots->pdata[i];
        if (strcmp(c->id, id) == 0)
            sn = c;
    }
    if (sn == NULL) {
        vd_set_error(error, ENOENT, "%s: no snapshot with ID %s", img->name, id);
        return false;
    }
    if (sn->virtual_size > INT64_MAX) {
        vd_set_error(error, EIO, "%s: snapshot %s has an impossible size", img->name, id);
        return false;
    }
    Qcow2State *v = g_new0(Qcow2State, 1);
    /* Scalars (geometry, feature bits) are the image's; tables are the snapshot's. */
    *v = *s;
    vd_brlock_init(&v->l1_lock); /* the view's own: its L1 never changes, but is freed with it */
    v->name = snap->name;
    v->img = snap;
    v->fd = snap->fd;
    v->is_snapshot = true;
    v->own_data_fd = false;
    v->data_fd = snap->fd;
    v->backing_file = v->backing_format = v->data_file = v->data_file_path = NULL;
    v->features = NULL;
    v->snapshots = NULL;
    v->crypto = s->crypto ? vd_luks_ref(s->crypto) : NULL;
    v->l1 = NULL;
    v->l2_cache = NULL;
    v->decode = NULL;
    v->rc = NULL;
    v->meta = NULL;
    v->trust = NULL;
    v->virtual_size = sn->virtual_size;
    if (s->own_data_fd) {
        v->data_fd = fcntl(s->data_fd, F_DUPFD_CLOEXEC, 0);
        if (v->data_fd < 0) {
            vd_set_error_errno(error, errno, "%s: data file", snap->name);
            v->data_fd = snap->fd;
            qcow2_state_free(v);
            return false;
        }
        v->own_data_fd = true;
    }
    uint64_t file_size = qcow2_file_size(v);
    if (!vd_image_mem_reserve(snap, (uint64_t)sn->l1_size * 8, "snapshot L1 table", error) ||
        !qcow2_load_l1(v, sn->l1_offset, sn->l1_size, file_size, &v->l1, error)) {
        qcow2_state_free(v);
        return false;
    }
    v->l1_entries = sn->l1_size;
    v->l1_offset = sn->l1_offset;
    v->l2_cache = qcow2_l2_cache_new(v, img->ctx->metadata_cache_bytes / 4);
    v->decode = qcow2_decode_cache_new(v->cluster_size, img->ctx->decode_cache_bytes / 4);
    snap->opaque = v;
    snap->size = sn->virtual_size;
    snap->read_only = true;
    return true;
}
