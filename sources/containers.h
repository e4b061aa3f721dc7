/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The container table: one VD_CONTAINER(name) line per container, each
 * sources/<name>.c defining `const VdContainer vd_<name>_container`.
 * Included twice by src/vd-container.c, so no include guard.
 */
VD_CONTAINER(xz)
VD_CONTAINER(ewf)
VD_CONTAINER(gzip)
VD_CONTAINER(bzip2)
VD_CONTAINER(tar)
#ifdef HAVE_ZSTD /* configure --without-zstd leaves it out */
VD_CONTAINER(zstd)
#endif
