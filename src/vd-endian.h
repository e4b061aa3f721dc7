/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Field-by-field decoding of on-disk structures. Never cast a struct over
 * an image buffer: these keep alignment safe and endianness visible.
 */
#ifndef VD_ENDIAN_H
#define VD_ENDIAN_H

#include <stdint.h>

#include <glib.h>

static inline uint16_t vd_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t vd_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t vd_be64(const uint8_t *p)
{
    return ((uint64_t)vd_be32(p) << 32) | vd_be32(p + 4);
}

static inline uint16_t vd_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t vd_le32(const uint8_t *p)
{
    return p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t vd_le64(const uint8_t *p)
{
    return vd_le32(p) | ((uint64_t)vd_le32(p + 4) << 32);
}

static inline void vd_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline void vd_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void vd_put_be64(uint8_t *p, uint64_t v)
{
    vd_put_be32(p, (uint32_t)(v >> 32));
    vd_put_be32(p + 4, (uint32_t)v);
}

static inline void vd_put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void vd_put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void vd_put_le64(uint8_t *p, uint64_t v)
{
    vd_put_le32(p, (uint32_t)v);
    vd_put_le32(p + 4, (uint32_t)(v >> 32));
}

/* A GUID as text, the way EFI, GPT, VHD(X) and VDI store it: the first
 * three fields little-endian, the rest as bytes. out: 37 bytes. */
static inline void vd_guid_format(const uint8_t g[16], char out[37])
{
    g_snprintf(out, 37, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", vd_le32(g),
               vd_le16(g + 4), vd_le16(g + 6), g[8], g[9], g[10], g[11], g[12], g[13], g[14],
               g[15]);
}

#endif
