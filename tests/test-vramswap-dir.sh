#!/bin/bash
# vramswap's --dir: a folder with spaces, several levels of it new; a
# relative one, which a plain status and stop (no --dir) still find.
# Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

info "a DIR with spaces, several levels of it new"
SDIR="$BASE/with space/run dir"
vs start --backend host --size 64M --dir "$SDIR"
expect_rc 0 "start with spaces in DIR"
LOOP=$(loops_under "$SDIR/gpu0")
echo "$LOOP" >>"$BASE/seen"
[ -n "$LOOP" ] || fail "no loop device for $SDIR/gpu0"
swap_active "$LOOP" || fail "no swap for $SDIR/gpu0"
mountpoint -q "$SDIR/gpu0" || fail "$SDIR/gpu0 is not mounted"
vs status --dir "$SDIR"
expect_rc 0 "status with spaces in DIR"
grep -q "$SDIR/gpu0 .* active$" <<<"$OUT" || { echo "$OUT"; fail "status does not show $SDIR/gpu0"; }
vs stop --dir "$SDIR"
expect_rc 0 "stop with spaces in DIR"
assert_clean "after stop with spaces in DIR"

info "a relative --dir: a plain status and stop (no --dir) find it"
(cd "$BASE" && vs start --backend host --size 64M --dir rel/run && expect_rc 0 "start --dir rel/run")
mountpoint -q "$BASE/rel/run/gpu0" || fail "start --dir rel/run did not mount $BASE/rel/run/gpu0"
vs status
expect_rc 0 "status without --dir, an instance under $BASE/rel/run"
grep -q "^0 .*$BASE/rel/run/gpu0 .* active$" <<<"$OUT" || { show status; fail "a plain status does not show $BASE/rel/run/gpu0"; }
vs stop --gpu 0
expect_rc 0 "stop --gpu 0 without --dir"
grep -q "gpu0: stopped" <<<"$OUT" || { show stop; fail "a plain stop did not stop $BASE/rel/run/gpu0"; }
assert_clean "after a plain stop of an instance under a relative --dir"

assert_clean "at the end"
echo "PASS"
