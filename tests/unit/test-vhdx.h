/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Shared between test-vhdx.c and test-vhdx-more.c. */
#ifndef TEST_VHDX_H
#define TEST_VHDX_H

#include <stdint.h>

#include "src/vd-image.h"
#include "tests/unit/test-vhd-gen.h"
#include "tests/unit/test-fixtures.h"

#define MiB       (1024u * 1024u)
#define DISK_SIZE (8 * MiB)
#define BLOCK     MiB
#define SECTORS   (BLOCK / 512)

#define PARENT_DWG "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
#define OTHER_DWG  "12345678-bbbb-4ccc-8ddd-eeeeeeeeeeee"

uint8_t pat(uint64_t off, uint8_t seed);
/* The 8 MiB parent: blocks 0-5 present, 6 NOT_PRESENT, 7 ZERO. */
VhdxGen parent_gen(void);
/* Its child with every block state. */
VhdxGen child_gen(void);
char *write_gen(const char *dir, const char *name, const VhdxGen *g);
char *write_bytes(const char *dir, const char *name, const GByteArray *b);
void put_le64_at(uint8_t *p, uint64_t v);
void set_le32(uint8_t *p, uint32_t v);

/* test-vhdx-more.c */
void vhdx_add_more_tests(void);

#endif
