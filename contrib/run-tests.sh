#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# The test command: builds and runs the whole test suite, four ways, and
# the Debian package:
#   1. build/        the normal build: make check (unit + real mounts)
#   2. build-asan/   the same suite under ASan + UBSan (sanitizer reports,
#                    leaks included, from any process count as failures)
#   3. build-tsan/   the threaded tests under ThreadSanitizer (any report,
#                    from any process, daemons included, is a failure)
#   4. build-fuzz/   clang libFuzzer targets, each format for FUZZ_SECONDS
#   5. build-deb/    dpkg-buildpackage -b and lintian (no errors allowed)
# The last line is always "N passed, N failed".
#   contrib/run-tests.sh [--quick]     (--quick: stage 1 only)
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
quick=0
[ "${1:-}" = --quick ] && quick=1
jobs=$(nproc)
total_pass=0
total_fail=0

count() { # LOG -> adds its automake counts
    [ -f "$1" ] || { total_fail=$((total_fail + 1)); return; }
    p=$(sed -n 's/^# PASS: *//p' "$1" | head -n1)
    f=$(sed -n 's/^# FAIL: *//p' "$1" | head -n1)
    e=$(sed -n 's/^# ERROR: *//p' "$1" | head -n1)
    x=$(sed -n 's/^# XPASS: *//p' "$1" | head -n1)
    total_pass=$((total_pass + ${p:-0}))
    total_fail=$((total_fail + ${f:-0} + ${e:-0} + ${x:-0}))
    grep -E '^(FAIL|ERROR|XPASS):' "$1" || true
}

finish() {
    echo "$total_pass passed, $total_fail failed"
    [ "$total_fail" -eq 0 ]
    exit $?
}

if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
    autoreconf -fi || { total_fail=1; finish; }
fi

# check_reports DIR WHAT: every file in DIR is a report (of any process,
# daemons included) and fails the run; none is one pass.
check_reports() {
    if [ -n "$(ls "$1")" ]; then
        echo "FAIL: $2 reports:"
        head -n 80 "$1"/*
        total_fail=$((total_fail + $(ls "$1" | wc -l)))
    else
        total_pass=$((total_pass + 1))
        echo "PASS: no $2 reports"
    fi
}

# stage DIR CONFIGURE_ARGS...: configure (once) and build in DIR
stage_build() {
    dir=$1
    shift
    mkdir -p "$dir"
    if [ ! -f "$dir/Makefile" ]; then
        (cd "$dir" && "$top/configure" -q "$@") || return 1
    fi
    make -C "$dir" -j"$jobs" >/dev/null
}

echo "== stage 1: make check"
if stage_build build; then
    rm -f build/test-suite.log
    make -C build -j"$jobs" check >build/check.out 2>&1
    grep -E '^(PASS|FAIL|ERROR|SKIP|XPASS)' build/check.out | grep -v '^PASS' || true
    count build/test-suite.log
else
    echo "FAIL: build"
    total_fail=$((total_fail + 1))
fi
[ $quick = 1 ] && finish

echo "== stage 2: make check under ASan + UBSan"
if stage_build build-asan --enable-sanitizers; then
    rm -rf build-asan/test-suite.log build-asan/sanitizer-logs
    mkdir -p build-asan/sanitizer-logs
    logs=$top/build-asan/sanitizer-logs
    # The crash loops' point is covered in stage 1; here they look for
    # memory errors, for which a few rounds do.
    CRASH_ROUNDS=3 ASAN_OPTIONS="log_path=$logs/asan:detect_leaks=1:abort_on_error=0" \
        UBSAN_OPTIONS="log_path=$logs/ubsan:print_stacktrace=1:halt_on_error=1" \
        make -C build-asan -j"$jobs" check >build-asan/check.out 2>&1
    grep -E '^(FAIL|ERROR|XPASS)' build-asan/check.out || true
    count build-asan/test-suite.log
    check_reports "$logs" "sanitizer"
else
    echo "FAIL: sanitizer build"
    total_fail=$((total_fail + 1))
fi

echo "== stage 3: threaded tests under ThreadSanitizer"
# What has threads: the big-reader lock, the caches under it, the decode
# pool and read-ahead (the unit tests with concurrent readers and
# writers, by GTest path), and a mount read and written by many threads at
# once. Not the whole suite: TSan costs 5-15x, and the single-threaded
# rest is covered above.
tsan_units="test-brlock
test-table-cache
test-cloop -p /cloop/parallel
test-qed -p /qed/concurrent
test-vhdx -p /vhdx/concurrent-read-write
test-vmdk-write -p /vmdk/write/concurrent-readers
test-qcow2 -p /qcow2/fast-write -p /qcow2/readahead-invalidation
test-dmg -p /dmg/all-types
test-index-cache -p /index-cache/concurrent
test-bzip2 -p /bzip2/concurrent
test-compressed -p /gzip/concurrent -p /xz/blocks -p /xz/check -p /xz/resume -p /xz/host-error
test-ro-cache -p /ro-cache/concurrent-readers -p /ro-cache/stress"
tsan_integration="tests/integration/test-threads.sh tests/integration/test-uring.sh"
if stage_build build-tsan --enable-tsan && make -C build-tsan -j"$jobs" check TESTS= >/dev/null; then
    rm -rf build-tsan/test-suite.log build-tsan/tsan-logs build-tsan/tsan-test-*.log
    mkdir -p build-tsan/tsan-logs
    logs=$top/build-tsan/tsan-logs
    # hard_rss_limit_mb: a test that allocates much must not take the
    # machine down with TSan's shadow memory on top.
    # suppressions: GLib's slice allocator, see the file. history_size:
    # that suppression matches the slab's allocation in the earlier
    # access's stack, which TSan must still have (CI once reported such a
    # race with "failed to restore the stack": the slab came from an open
    # long before the write that raced with it).
    TSAN_OPTIONS="log_path=$logs/tsan:second_deadlock_stack=1:hard_rss_limit_mb=4096"
    TSAN_OPTIONS="$TSAN_OPTIONS:history_size=7"
    TSAN_OPTIONS="$TSAN_OPTIONS:suppressions=$top/tests/tsan/suppressions.txt"
    export TSAN_OPTIONS
    echo "$tsan_units" | while read -r prog args; do
        # shellcheck disable=SC2086
        (cd build-tsan && G_TEST_SRCDIR="$top/tests" "tests/unit/$prog" $args) \
            >"build-tsan/tsan-$prog.log" 2>&1
        echo "exit $?" >>"build-tsan/tsan-$prog.log"
    done
    for f in build-tsan/tsan-test-*.log; do
        p=$(grep -c '^ok ' "$f")
        n=$(grep -c '^not ok ' "$f")
        if [ "$n" -gt 0 ] || ! grep -q '^exit 0$' "$f" || [ "$p" = 0 ]; then
            echo "FAIL: $f"
            n=$((n > 0 ? n : 1))
        fi
        total_pass=$((total_pass + p))
        total_fail=$((total_fail + n))
    done
    make -C build-tsan -j"$jobs" check TESTS="$tsan_integration" >build-tsan/check.out 2>&1
    grep -E '^(FAIL|ERROR|XPASS)' build-tsan/check.out || true
    count build-tsan/test-suite.log
    unset TSAN_OPTIONS
    check_reports "$logs" "ThreadSanitizer"
else
    echo "FAIL: ThreadSanitizer build"
    total_fail=$((total_fail + 1))
fi

echo "== stage 4: fuzz smoke"
if command -v clang >/dev/null && stage_build build-fuzz CC=clang --enable-fuzzing; then
    make -C build-fuzz fuzz-smoke FUZZ_SECONDS="${FUZZ_SECONDS:-10}" >build-fuzz/fuzz.out 2>&1
    cat build-fuzz/fuzz.out | grep -E '^(PASS|FAIL): fuzz' || true
    p=$(sed -n 's/^# fuzz PASS: *//p' build-fuzz/fuzz.out)
    f=$(sed -n 's/^# fuzz FAIL: *//p' build-fuzz/fuzz.out)
    [ -n "$p$f" ] || f=1
    total_pass=$((total_pass + ${p:-0}))
    total_fail=$((total_fail + ${f:-0}))
else
    echo "FAIL: fuzz build (needs clang)"
    total_fail=$((total_fail + 1))
fi
echo "== stage 5: Debian package"
# dpkg-buildpackage -b on a copy of the tree (it writes next to the tree),
# then lintian: the .deb must build and lintian report no errors.
pkg=$top/build-deb
rm -rf "$pkg"
mkdir -p "$pkg/src"
if command -v dpkg-buildpackage >/dev/null && command -v lintian >/dev/null &&
    (git ls-files -co --exclude-standard 2>/dev/null | grep -v '^build' |
        tar -cf - -T - | tar -xf - -C "$pkg/src") &&
    (cd "$pkg/src" && dpkg-buildpackage -b -us -uc >"$pkg/build.log" 2>&1); then
    lintian --fail-on error "$pkg"/*.changes >"$pkg/lintian.log" 2>&1
    if [ $? -eq 0 ]; then
        echo "PASS: Debian package ($(cd "$pkg" && ls vdiskfs_*.deb))"
        total_pass=$((total_pass + 1))
    else
        echo "FAIL: lintian reports errors:"
        grep '^E:' "$pkg/lintian.log" | head -20
        total_fail=$((total_fail + 1))
    fi
else
    echo "FAIL: Debian package build (see build-deb/build.log)"
    tail -20 "$pkg/build.log" 2>/dev/null
    total_fail=$((total_fail + 1))
fi
finish
