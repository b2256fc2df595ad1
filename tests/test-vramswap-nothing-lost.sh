#!/bin/bash
# stop says that pages were lost only where some were: a failover mount in
# failed mode (no server could be started after the last one died, so
# vramfs took its swap off itself) whose swap held nothing, and a dead
# daemon whose swap held nothing, stop cleanly, saying that nothing was
# lost.  (test-vramswap-daemon-killed.sh checks that a real loss is reported.)  Backend
# host; failed mode by VRAMFS_INJECT_FAULT=takeover:1, as
# test-failover-edges.sh makes it.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

# nothing_lost WHAT: stop ends well and does not report lost pages.
nothing_lost() {
  vs stop --dir "$DIR"
  show stop
  expect_rc 0 "stop, $1"
  grep -q "^gpu0: stopped" <<<"$OUT" || fail "$1: stop does not say it stopped gpu0"
  ! grep -q "could not be read back\|lost:" <<<"$ERR" || fail "$1: stop reports lost pages"
  grep -q "nothing was lost" <<<"$OUT" || fail "$1: stop does not say that nothing was lost"
  nothing_left "$1"
}

info "failed mode, nothing in the swap"
VRAMFS_INJECT_FAULT=takeover:1 vs start --backend host --size 64M --dir "$DIR"
expect_rc 0 "start"
kill -9 "$(stat_value "$DIR/gpu0" pid)"
for ((i = 0; i < 300; i++)); do
  [ "$(stat_value "$DIR/gpu0" state 2>/dev/null)" != failed ] || break
  nap 0.1
done
[ "$(stat_value "$DIR/gpu0" state)" = failed ] || fail "no failed mode within 30 s"
vs status --dir "$DIR"
grep -q " failed$" <<<"$OUT" || { show status; fail "status does not show gpu0 failed"; }
nothing_lost "failed mode, nothing in the swap"

info "a dead daemon, nothing in the swap"
vs start --backend host --size 64M --no-failover --dir "$DIR"
expect_rc 0 "start --no-failover"
kill -9 "$(daemon_pid "$DIR/gpu0")"
sleep 0.5
nothing_lost "a dead daemon, nothing in the swap"
echo PASS
