#!/bin/bash
# test-idle.sh again, over FUSE's io_uring transport; skipped, saying why,
# where this vramfs or the kernel lacks it (see functions.sh).
: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
export TESTS_DIR VRAMFS_TEST_TRANSPORT=uring
exec bash "$TESTS_DIR/test-idle.sh"
