#!/bin/bash
# stop refuses to go on when swapoff fails: it says so with what swapoff
# said, tries again twice where RAM is to spare, exits 1 and leaves
# everything running; a swapoff that fails once with ENOMEM and then works
# lets stop go through.  swapoff is a fake around the real one.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

vs start --backend host --size 64M --dir "$DIR"
expect_rc 0 "start gpu0"
LOOP=$(loops_under "$DIR/gpu0")
swap_active "$LOOP" || fail "gpu0 did not start"

info "swapoff fails: stop says so, exits 1, and everything keeps running"
PID=$(daemon_pid "$DIR/gpu0")
# shellcheck disable=SC2016 # $1 is the fake's argument
fake swapoff 'echo "swapoff: $1: swapoff failed: Cannot allocate memory" >&2; exit 255'
PATH=$FAKE_PATH vs stop --dir "$DIR"
expect_rc 1 "stop with swapoff failing"
# With RAM to spare the message says what swapoff said, and no guess that
# RAM was short.
grep -q "^vramswap: gpu0: swapoff $LOOP failed: swapoff: $LOOP: swapoff failed: Cannot allocate memory; left running$" <<<"$ERR" ||
  { show stop; fail "stop does not explain the swapoff failure"; }
# ENOMEM with RAM to spare is tried 3 times in all before stop gives up.
[ "$(grep -c "^vramswap: gpu0: swapoff $LOOP: swapoff: $LOOP: swapoff failed: Cannot allocate memory, with RAM to spare; trying again$" <<<"$ERR")" = 2 ] ||
  { show stop; fail "stop did not try swapoff again twice"; }
swap_active "$LOOP" || fail "the swap went away although swapoff failed"
[ "$(loops_under "$DIR/gpu0")" = "$LOOP" ] || fail "the loop device went away although swapoff failed"
mountpoint -q "$DIR/gpu0" || fail "the mount went away although swapoff failed"
alive "$PID" || fail "the daemon was stopped although its swap is active"
vs status --dir "$DIR"
expect_rc 0 "status after the refused stop"

info "a swapoff that fails once with ENOMEM, then works: stop goes through"
real_swapoff=$(PATH=/usr/sbin:/sbin:$PATH command -v swapoff)
fake swapoff "if [ ! -e '$BASE/swapoff-failed' ]; then
  touch '$BASE/swapoff-failed'
  echo \"swapoff: \$1: swapoff failed: Cannot allocate memory\" >&2
  exit 255
fi
exec '$real_swapoff' \"\$@\""
PATH=$FAKE_PATH vs stop --dir "$DIR"
expect_rc 0 "stop with swapoff failing once"
grep -q "swapoff failed: Cannot allocate memory, with RAM to spare; trying again" <<<"$ERR" ||
  { show stop; fail "stop did not say that it tried swapoff again"; }
[ -z "$(loops_under "$BASE")" ] || fail "loop devices left after stop"
[ -z "$(vramfs_mounts_under "$BASE")" ] || fail "mounts left after stop"
! swap_of_ours "$LOOP" || fail "$LOOP is still swap"
[ ! -e "$DIR/gpu0" ] || fail "stop left $DIR/gpu0"
echo "PASS"
