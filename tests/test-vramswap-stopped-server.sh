#!/bin/bash
# A vramfs server that does not answer (SIGSTOP) hangs none of vramswap's
# commands that look at the swap: doctor (which reads the swap signatures
# with blkid for its resume check) and sleep hibernate (the same check)
# end within their probes' deadlines, say that the daemon does not answer
# and leave the swap as it is.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
STOPPED=
# A stopped server must run again, or the teardown's swapoff would wait on it.
cleanup_first() { [ -z "$STOPPED" ] || kill -CONT "$STOPPED" 2>/dev/null; }

printf 'BACKEND=host\nSIZE=64M\nSTRIPES=2\nDIR=%s\n' "$DIR" >"$VRAMSWAP_CONF"
vs start
expect_rc 0 "start"
stripes=$(loops_under "$DIR/gpu0" | xargs)
STOPPED=$(stat_value "$DIR/gpu0" pid)
# What blkid would read must not come from the page cache.
echo 3 >/proc/sys/vm/drop_caches
kill -STOP "$STOPPED"
probes_of_a_stopped_daemon

info "doctor"
within 30 doctor
[ "$RC" = 1 ] || { show doctor; fail "doctor: exit $RC, expected 1 (the swap's daemon does not answer)"; }
grep -q "^fail  swap .*gpu0 unresponsive" <<<"$OUT" || { show doctor; fail "doctor does not fail the stopped server"; }
grep -q "^ok  *resume " <<<"$OUT" || { show doctor; fail "doctor did not get to its resume check"; }

info "sleep hibernate"
fake_machine 24000000 0 disabled
VRAMSWAP_SYSROOT=$FAKE_ROOT VRAMSWAP_TEST_HOST_IS_VRAM=1 within 30 sleep hibernate
grep -q "gpu0: unresponsive" <<<"$ERR" || { show sleep; fail "sleep does not say that gpu0 does not answer"; }
for l in $stripes; do swap_active "$l" || fail "sleep took $l off although its server does not answer"; done

kill -CONT "$STOPPED"
STOPPED=
probes_of_a_running_daemon
vs stop
expect_rc 0 "stop once the server answers again"
echo PASS
