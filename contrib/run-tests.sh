#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Build in ./build and run the whole test suite (unit + real mounts).
# The last line is always "N passed, N failed".
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
summary() {
    log=build/test-suite.log
    pass=0 fail=$1
    if [ -f "$log" ]; then
        pass=$(sed -n 's/^# PASS: *//p' "$log" | head -n1)
        f=$(sed -n 's/^# FAIL: *//p' "$log" | head -n1)
        e=$(sed -n 's/^# ERROR: *//p' "$log" | head -n1)
        x=$(sed -n 's/^# XPASS: *//p' "$log" | head -n1)
        fail=$(( ${f:-0} + ${e:-0} + ${x:-0} + fail ))
    fi
    echo "${pass:-0} passed, $fail failed"
}
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
    autoreconf -fi || { summary 1; exit 1; }
fi
mkdir -p build
cd build
if [ ! -f Makefile ]; then
    ../configure -q || { cd "$top"; summary 1; exit 1; }
fi
make -j"$(nproc)" >/dev/null || { cd "$top"; summary 1; exit 1; }
rm -f test-suite.log
make -j"$(nproc)" check
status=$?
cd "$top"
if [ $status -ne 0 ] && [ -f build/test-suite.log ]; then
    # Show what failed, then the counts.
    grep -E '^(FAIL|ERROR)' build/test-suite.log || true
fi
summary 0
exit $status
