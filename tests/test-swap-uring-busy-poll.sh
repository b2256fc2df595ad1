#!/bin/bash
# test-swap.sh again over FUSE's io_uring transport, its threads polling
# between requests (busy_poll=50); skipped, saying why, where this vramfs
# or the kernel lacks io_uring (see functions.sh).
: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
export TESTS_DIR VRAMFS_TEST_TRANSPORT=uring VRAMFS_TEST_OPTS=busy_poll=50
exec bash "$TESTS_DIR/test-swap.sh"
