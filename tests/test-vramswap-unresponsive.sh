#!/bin/bash
# A daemon that does not answer (SIGSTOP, without failover): status says
# so; stop refuses while its swap is on, and with the swap off, status and
# stop end within their deadlines and leave it mounted; once it answers,
# stop takes it down.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
STOPPED_DAEMON=
# A daemon stopped on purpose must run again, or swapoff would wait on it.
cleanup_first() { [ -z "$STOPPED_DAEMON" ] || kill -CONT "$STOPPED_DAEMON" 2>/dev/null; }

info "a daemon that does not answer: status says so, stop leaves it running"
vs start --backend host --size 64M --no-failover --dir "$DIR"
expect_rc 0 "start for the unresponsive test"
LOOP=$(loop_of 0)
STOPPED_DAEMON=$(daemon_pid "$DIR/gpu0")
kill -STOP "$STOPPED_DAEMON"
probes_of_a_stopped_daemon
expect_broken 0 unresponsive "gpu0: the vramfs server $STOPPED_DAEMON does not answer" "$LOOP"
vs stop --dir "$DIR"
expect_rc 1 "stop with an unresponsive daemon"
echo "$ERR"
grep -Eq "gpu0: the vramfs server $STOPPED_DAEMON does not answer.*swapoff would wait on it" <<<"$ERR" ||
  fail "stop does not say why it refused"
swap_active "$LOOP" || fail "stop turned the swap off although the daemon does not answer"
info "... and without swap: status and stop still end, within their deadlines"
swapoff "$LOOP"
SECONDS=0
RC=0
timeout 60 "$VRAMSWAP" status --dir "$DIR" >"$BASE/out" 2>&1 || RC=$?
[ "$RC" != 124 ] || fail "status hangs on a daemon that does not answer"
grep -q " unresponsive$" "$BASE/out" || { cat "$BASE/out"; fail "status does not show the stopped daemon as unresponsive"; }
RC=0
timeout 60 "$VRAMSWAP" stop --dir "$DIR" >"$BASE/out" 2>"$BASE/err" || RC=$?
OUT=$(cat "$BASE/out") ERR=$(cat "$BASE/err")
[ "$RC" != 124 ] || fail "stop hangs on a daemon that does not answer"
[ "$SECONDS" -lt 40 ] || fail "status and stop took $SECONDS s on a stopped daemon"
expect_rc 1 "stop, a stopped daemon without swap"
grep -q "gpu0: the vramfs server $STOPPED_DAEMON does not answer .*nothing is swapped to it" <<<"$ERR" ||
  { show stop; fail "stop does not say why it left the stopped daemon"; }
is_mounted "$DIR/gpu0" || fail "stop unmounted a daemon that does not answer"
kill -CONT "$STOPPED_DAEMON"
STOPPED_DAEMON=
probes_of_a_running_daemon
vs stop --dir "$DIR"
expect_rc 0 "stop once the daemon answers again"
assert_clean "after stopping the resumed instance"

assert_clean "at the end"
echo "PASS"
