#!/bin/bash
# status run by a user who is not root says it needs root, and does not
# call a healthy swap unresponsive.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

info "status without root says it needs root"
vs start --backend host --size 64M --dir "$DIR"
expect_rc 0 "start for the status-without-root test"
RC=0
OUT=$(setpriv --reuid=65534 --regid=65534 --clear-groups env VRAMSWAP_CONF=/nonexistent \
  "$VRAMSWAP" status --dir "$DIR" 2>&1) || RC=$?
echo "$OUT"
[ "$RC" = 1 ] || fail "status without root: exit status $RC, expected 1"
grep -q "^vramswap: status needs root" <<<"$OUT" || fail "status without root does not say it needs root"
! grep -q unresponsive <<<"$OUT" || fail "status without root calls a healthy swap unresponsive"
vs stop --dir "$DIR"
expect_rc 0 "stop after the status-without-root test"

assert_clean "at the end"
echo "PASS"
