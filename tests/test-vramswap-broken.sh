#!/bin/bash
# Broken states that status shows and stop ends cleanly: a mount without
# swap (start refuses to build on it), and a daemon that died.  Backend
# host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

info "a mount without swap: status shows it, start refuses, stop unmounts"
# The state, not the device, matters here: a host mount named gpu3.
VRAMFS_TEST_BACKEND=host mount_vramfs "$DIR/gpu3" "size=64M"
expect_broken 3 no-swap "gpu3: mounted but not used as swap.*vramswap stop --gpu 3"
vs start --backend host --size 64M --gpu 3 --dir "$DIR"
expect_rc 1 "start over a half set-up gpu3"
grep -q "gpu3: partly set up" <<<"$ERR" || fail "start over gpu3 says: $ERR"
[ -z "$(loops_under "$DIR/gpu3")" ] || fail "the refused start attached a loop device"
vs stop --gpu 3 --dir "$DIR"
expect_rc 0 "stop gpu3"
assert_clean "after stopping the mount without swap"

info "a daemon that died: status says so, stop cleans up"
vs start --backend host --size 64M --no-failover --dir "$DIR"
expect_rc 0 "start for the dead-daemon test"
LOOP=$(loop_of 0)
# Swap goes off by hand first: a dead swap device that holds pages of other
# processes on this machine would hurt them.
swapoff "$LOOP"
kill -9 "$(daemon_pid "$DIR/gpu0")"
sleep 0.5
expect_broken 0 dead \
  "gpu0: the vramfs daemon is gone (Transport endpoint is not connected).*vramswap stop --gpu 0" "$LOOP"
vs stop --dir "$DIR"
expect_rc 0 "stop a dead instance"
assert_clean "after stopping the dead instance"

assert_clean "at the end"
echo "PASS"
