#!/bin/bash
# stop while a memory-limited process has pages in the swap: refused,
# naming the cgroup, while that cgroup could not take its pages back;
# --force stops anyway; a plain stop goes through once the limit is raised,
# and every page comes back.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

info "stop while a memory-limited process has pages in the swap"
# Two instances at one priority: the swapper's pages go to both.
vs start --backend host --size 256M --gpu 0,1 --dir "$DIR"
expect_rc 0 "start for the pressure test"
LOOP1=$(loop_of 1)
LOOP=$(loop_of 0)
# 256 MiB in a 64 MiB cgroup: most of it must go through the swap, every
# page is checked on each pass.
swapper_in_swap "$LOOP" 64 256 8 11 "$BASE/swapper.out"
info "... refused while the swapper's cgroup could not take its pages back"
# Stopped, so that what stop reads is what was measured: a running swapper
# frees swap slots as it writes its pages back in, and its cgroup may drop
# below its limit for a moment, and stop would then rightly let it through.
kill -STOP "$SWAPPER_PID"
vs stop --dir "$DIR" --gpu 0
expect_rc 1 "stop with a memory-limited cgroup in the swap"
echo "$ERR"
grep -Eq "^vramswap: cgroup /${CG##*/} holds [0-9]+ MiB in swap and has [0-9]+ MiB of headroom; its processes would be OOM-killed; raise its limit or stop them first" <<<"$ERR" ||
  { show stop; fail "stop does not name the cgroup whose processes swapoff would OOM-kill"; }
swap_active "$LOOP" || fail "the refused stop turned the swap off"
alive "$SWAPPER_PID" || fail "the swapper died in the refused stop"
info "... --force stops gpu0 anyway (the cgroup makes room in gpu1's swap)"
vs stop --dir "$DIR" --gpu 0 --force
echo "$ERR"
expect_rc 0 "stop --gpu 0 --force"
grep -q "^vramswap: cgroup /${CG##*/} holds .* --force: its processes may be OOM-killed" <<<"$ERR" ||
  { show stop; fail "stop --force does not name the cgroup at risk"; }
! swap_active "$LOOP" || fail "stop --force left gpu0's swap on"
swap_active "$LOOP1" || fail "stop --gpu 0 --force turned gpu1's swap off"
alive "$SWAPPER_PID" || fail "the swapper died in stop --force"
info "... and a plain stop goes through once the limit is raised"
LOOP=$LOOP1
unlimit_cgroup "$CG"  # first: the swapper does not go on against its old limit
kill -CONT "$SWAPPER_PID"
used=$(swap_used_kib "$LOOP")
alive "$SWAPPER_PID" || fail "the swapper finished before stop; nothing was tested"
info "$((used / 1024)) MiB of the swapper's pages in the swap; stopping"
vs stop --dir "$DIR"
expect_rc 0 "stop with pages in the swap"
assert_clean "after stop with pages in the swap"
if alive "$SWAPPER_PID" && [ "$(awk 'NR > 1' /proc/swaps | wc -l)" = 0 ]; then
  swapped=$(awk '/^VmSwap:/ { print $2 }' "/proc/$SWAPPER_PID/status" 2>/dev/null || echo 0)
  [ "${swapped:-0}" = 0 ] || fail "the swapper still has $swapped KiB swapped after swapoff"
fi
rc=0
wait "$SWAPPER_PID" || rc=$?
SWAPPER_PID=
CG=
cat "$BASE/swapper.out"
[ "$rc" = 0 ] || fail "the swapper failed (exit $rc) after its pages came back from the swap"
grep -q "verified" "$BASE/swapper.out" || fail "the swapper did not verify its pages"

assert_clean "at the end"
echo "PASS"
