#!/bin/bash
# With failover, what does not answer is the server, not its keeper: when
# the server is stopped (SIGSTOP), stop and status name the server's pid,
# and say that it is stopped.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
SERVER=
cleanup_first() { [ -z "$SERVER" ] || kill -CONT "$SERVER" 2>/dev/null; }

vs start --backend host --size 64M --dir "$DIR"
expect_rc 0 "start"
KEEPER=$(stat_value "$DIR/gpu0" keeper_pid)
SERVER=$(stat_value "$DIR/gpu0" pid)
[ "$KEEPER" != "$SERVER" ] || fail "no failover: keeper and server are one process"
kill -STOP "$SERVER"
probes_of_a_stopped_daemon

info "stop names the server"
vs stop --dir "$DIR"
expect_rc 1 "stop, the server stopped"
grep -q "^vramswap: gpu0: the vramfs server $SERVER does not answer" <<<"$ERR" ||
  { show stop; fail "stop does not name the server $SERVER (the keeper is $KEEPER)"; }
grep -q "it is stopped (SIGSTOP?): kill -CONT $SERVER" <<<"$ERR" || { show stop; fail "stop does not say that the server is stopped"; }

info "status names the server"
vs status --dir "$DIR"
grep -q "^gpu0: the vramfs server $SERVER does not answer" <<<"$OUT" ||
  { show status; fail "status does not name the server $SERVER (the keeper is $KEEPER)"; }

kill -CONT "$SERVER"
SERVER=
probes_of_a_running_daemon
vs stop --dir "$DIR"
expect_rc 0 "stop once the server runs again"
echo PASS
