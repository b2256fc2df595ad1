#!/bin/bash
# doctor's priority check compares other swap with the priority VRAM swap
# runs at, not the configured one: VRAM swap started with --priority 7 and
# a disk swap at 50 is a warning, though PRIORITY is 100.  The other swap
# is faked (VRAMSWAP_SYSROOT's proc/swaps); VRAM swap runs.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

R=$BASE/root
mkdir -p "$R/proc"
printf 'BACKEND=host\nPRIORITY=100\nDIR=%s\n' "$DIR" >"$VRAMSWAP_CONF"

vs start --size 64M --priority 7
expect_rc 0 "start --priority 7"
loop=$(loops_under "$DIR/gpu0")
{
  printf 'Filename\tType\tSize\tUsed\tPriority\n'
  printf '%s partition\t65532\t0\t7\n' "$loop"
  printf '/dev/sdz2 partition\t1000\t0\t50\n'
} >"$R/proc/swaps"

VRAMSWAP_SYSROOT=$R vs doctor
grep -q "^warn  priority  *.*/dev/sdz2 at 50: swap at a priority equal to or above VRAM swap's 7" <<<"$OUT" ||
  { show doctor; fail "doctor does not warn about a disk swap above the running VRAM swap"; }

info "with nothing running, the configured priority"
vs stop
expect_rc 0 "stop"
printf 'Filename\tType\tSize\tUsed\tPriority\n/dev/sdz2 partition\t1000\t0\t50\n' >"$R/proc/swaps"
VRAMSWAP_SYSROOT=$R vs doctor
grep -q "^ok  *priority  *other swap below VRAM swap's 100: /dev/sdz2 at 50" <<<"$OUT" ||
  { show doctor; fail "doctor does not compare with PRIORITY when nothing runs"; }
echo PASS
