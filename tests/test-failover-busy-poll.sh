#!/bin/bash
# test-failover.sh again with the dev transport's threads polling between
# requests (busy_poll=50, the default on machines of 4 CPUs or more; this
# one may have fewer).
: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
export TESTS_DIR VRAMFS_TEST_OPTS=busy_poll=50
exec bash "$TESTS_DIR/test-failover.sh"
