#!/bin/bash
# A stripe taken off by hand (swapoff, and losetup -d too) leaves the swap
# degraded: status (table, JSON, metrics) says so and what to do, doctor
# warns, and stop still takes the rest down.  Backend host, two stripes.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine
command -v python3 >/dev/null || skip "no python3 to read the JSON back"

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

# degraded WHAT: status, status --json, metrics and doctor say gpu0 is
# degraded.
degraded() {
  vs status --dir "$DIR"
  expect_rc 0 "status, $1 (the swap still works)"
  grep -q "^0 .* degraded$" <<<"$OUT" || { show status; fail "$1: status does not show gpu0 degraded"; }
  grep -q "^gpu0: only 1 of its 2 stripes are swap" <<<"$OUT" || { show status; fail "$1: status says nothing of the missing stripe"; }
  vs status --json --dir "$DIR"
  python3 -c 'import json, sys; s = json.load(sys.stdin)["swaps"][0]; assert s["state"] == "degraded", s' <<<"$OUT" ||
    fail "$1: status --json does not say degraded"
  vs metrics --dir "$DIR"
  grep -q '^vramswap_state{.*state="degraded"} 1$' <<<"$OUT" || { show metrics; fail "$1: metrics do not say degraded"; }
  printf 'BACKEND=host\nDIR=%s\n' "$DIR" >"$BASE/doctor.conf"
  VRAMSWAP_CONF=$BASE/doctor.conf vs doctor
  grep -q "^warn  swap  *gpu0 degraded" <<<"$OUT" || { show doctor; fail "$1: doctor does not warn about gpu0"; }
}

vs start --backend host --size 128M --stripes 2 --dir "$DIR"
expect_rc 0 "start"
read -r first second <<<"$(loops_under "$DIR/gpu0" | xargs)"

info "a stripe swapped off by hand"
swapoff "$second"
degraded "one stripe swapped off"

info "... and detached too"
losetup -d "$second"
wait_detached "$second"
degraded "one stripe swapped off and detached"

info "stop takes the rest down"
vs stop --dir "$DIR"
expect_rc 0 "stop"
! swap_active "$first" || fail "$first is still swap"
nothing_left "after stop"
echo PASS
