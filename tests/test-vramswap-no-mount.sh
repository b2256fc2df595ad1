#!/bin/bash
# Swap whose vramfs mount was lazily unmounted: status says so, and stop
# reads every page back through the loop device (the daemon still serves
# them), takes the swap off and ends the daemon; nothing is lost.  Backend
# host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
ORPHAN_LOOP=
# A loop device whose mount was lazily unmounted: its file reads
# /swapfile, not a path under BASE, so the teardown must be told.
cleanup_first() {
  if [ -n "$ORPHAN_LOOP" ] && [ "$(loop_backing "$ORPHAN_LOOP")" = /swapfile ]; then
    register swap "$ORPHAN_LOOP"
    register loop "$ORPHAN_LOOP"
  fi
}

info "swap whose mount was lazily unmounted: status says so, stop cleans up"
vs start --backend host --size 256M --dir "$DIR"
expect_rc 0 "start for the no-mount test"
LOOP=$(loop_of 0)
PID=$(daemon_pid "$DIR/gpu0")
ORPHAN_LOOP=$LOOP
# Pages in the swap, which stop reads back through the loop device: the
# daemon serves them although its mount is gone, so nothing is lost.
swapper_in_swap "$LOOP" 32 96 4 13 "$BASE/lazy.out"
kill -STOP "$SWAPPER_PID"
unlimit_cgroup "$CG"
umount -l "$DIR/gpu0"
expect_broken 0 no-mount "gpu0: swap on $LOOP but its vramfs mount is gone" "$LOOP"
vs stop --dir "$DIR"
show stop
expect_rc 0 "stop without mount, pages in the swap"
! grep -q "could not be read back" <<<"$ERR" || fail "stop reports lost pages although the daemon served them"
swap_active "$LOOP" && fail "$LOOP is still swap after stop"
ORPHAN_LOOP=
assert_clean "after stopping the unmounted instance"
info "... every page the process had in the swap came back"
kill -CONT "$SWAPPER_PID"
rc=0
wait "$SWAPPER_PID" || rc=$?
SWAPPER_PID=
cat "$BASE/lazy.out"
if [ "$rc" != 0 ] || ! grep -q verified "$BASE/lazy.out"; then
  fail "the process failed (exit $rc) after stop read its pages back from a lazily unmounted instance"
fi
! alive "$PID" || fail "the daemon $PID still runs after stop"

assert_clean "at the end"
echo "PASS"
