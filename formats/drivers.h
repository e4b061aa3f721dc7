/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The driver table: one VD_DRIVER(name) line per format, in probe-tie
 * order. Each formats/<name>.c defines `const VdDriver vd_<name>_driver`.
 * Included twice by src/vd-registry.c, so no include guard.
 */
VD_DRIVER(qcow2)
VD_DRIVER(raw)
VD_DRIVER(vpc)
VD_DRIVER(vhdx)
VD_DRIVER(vmdk)
VD_DRIVER(bochs)
VD_DRIVER(cloop)
VD_DRIVER(dmg)
VD_DRIVER(split_raw)
VD_DRIVER(qcow)
VD_DRIVER(qed)
VD_DRIVER(vdi)
VD_DRIVER(parallels)
VD_DRIVER(parallels_bundle)
VD_DRIVER(luks)
