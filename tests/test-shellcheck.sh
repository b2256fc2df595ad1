#!/bin/bash
# Every shell script of the project is shellcheck-clean (shellcheck -x, so
# that what each sources is checked with it; but for the tests, which reach
# vramswap's library through functions.sh, it is checked once, as a file of
# vramswap, not again with each test).  The files of vramswap's
# commands are checked each on its own, as it is read.
: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps nothing and attaches no loop device: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
command -v shellcheck >/dev/null || skip "shellcheck is not installed"

cd "$TESTS_DIR/.."
scripts=(scripts/vramswap.in scripts/vramswap-*.sh scripts/install-deps
  bench/run bench/sweep .ci/run .ci/package debian/vramfs.postinst debian/vramfs.postrm
  tests/run-gpu tests/functions.sh tests/vramswap_functions.sh tests/no-check.sh tests/test-*.sh)
# A few files per shellcheck, as many at once as there are CPUs: each file
# brings what it sources along (-x), so one run over all of them takes
# half a minute on two cores.  At a lower priority: make check runs it beside the
# tests that hold the swap lock, whose time is the suite's.
printf '%s\0' "${scripts[@]}" | nice -n 10 xargs -0 -n 8 -P "$(nproc)" shellcheck -x ||
  fail "shellcheck finds the problems above"
echo "ok: ${#scripts[@]} scripts are clean"
