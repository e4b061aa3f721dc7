/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include "vd-driver.h"

#define VD_DRIVER(n) extern const VdDriver vd_##n##_driver;
#include "formats/drivers.h"
#undef VD_DRIVER

#define VD_DRIVER(n) &vd_##n##_driver,
const VdDriver *const vd_drivers[] = {
#include "formats/drivers.h"
    NULL,
};
#undef VD_DRIVER
