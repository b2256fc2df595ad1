#!/bin/bash
# A bad line in the configuration file, written while swap runs, blocks
# only start: status, metrics and stop work on what runs and say which line
# is bad; doctor fails a check that names it; start refuses the file with
# the line, changing nothing.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

printf 'BACKEND=host\nSIZE=64M\nSTRIPES=1\nDIR=%s\n' "$DIR" >"$VRAMSWAP_CONF"
vs start
expect_rc 0 "start"
loop=$(loops_under "$DIR/gpu0")
printf 'PRIORITY=high\n' >>"$VRAMSWAP_CONF"
bad="$VRAMSWAP_CONF:5: bad PRIORITY value 'high'"

# warns: ERR names the bad line.
warns() { grep -q "^vramswap: $bad" <<<"$ERR" || { show "$1"; fail "$1 does not say that line 5 is bad"; }; }

info "status works, and says the file is bad"
vs status
expect_rc 0 "status with a bad line"
grep -q "^0 .* active$" <<<"$OUT" || { show status; fail "status does not show the running swap"; }
warns status
info "status --json and metrics too"
vs status --json
expect_rc 0 "status --json with a bad line"
python3 -c 'import json, sys; j = json.load(sys.stdin); assert j["active"] == 1, j' <<<"$OUT" ||
  fail "status --json with a bad line: $OUT"
warns "status --json"
vs metrics
expect_rc 0 "metrics with a bad line"
grep -q '^vramswap_active 1$' <<<"$OUT" || { show metrics; fail "metrics do not show the running swap"; }
warns metrics

info "doctor fails a check that names the line"
vs doctor
expect_rc 1 "doctor with a bad line"
grep -q "^fail  config  *$bad" <<<"$OUT" || { show doctor; fail "doctor does not fail the bad line"; }

info "start refuses the file, naming the line"
vs start
expect_rc 2 "start with a bad line"
[ "$ERR" = "vramswap: $bad: expected a number from 0 to 32767" ] || { show start; fail "start does not refuse the bad line"; }
swap_active "$loop" || fail "the refused start changed the running swap"

info "stop works, and says the file is bad"
vs stop
expect_rc 0 "stop with a bad line"
warns stop
grep -q "gpu0: stopped" <<<"$OUT" || { show stop; fail "stop did not stop gpu0"; }
nothing_left "after stop"
echo PASS
