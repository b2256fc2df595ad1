#!/bin/bash
# vramswap sleep and wake, the decisions of the suspend and hibernation
# units, with faked driver settings and memory figures (VRAMSWAP_SYSROOT)
# and a host swap taken for GPU memory (VRAMSWAP_TEST_HOST_IS_VRAM): RAM is
# kept; GPU memory that the driver preserves is kept across suspend;
# otherwise the swap is taken off when its pages fit in RAM and started
# again, as it was, by wake; when they do not fit the sleep is refused with
# the swap left on; hibernation is refused when its resume device is a VRAM
# swap.  A process's pages come back whole.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
R=$FAKE_ROOT
export VRAMSWAP_SYSROOT=$R PATH=$BASE/bin:$PATH
printf 'BACKEND=host\nSIZE=256M\nDIR=%s\n' "$DIR" >"$BASE/sleep.conf"
export VRAMSWAP_CONF=$BASE/sleep.conf
active() { swap_active "$(loops_under "$DIR/gpu0" | head -n 1)"; }

vs start --priority 7 --stripes 2
expect_rc 0 "start"
LOOPS=$(loops_under "$DIR/gpu0" | xargs)
CG=$(make_memory_cgroup 32)
spawn_in_cgroup "$CG" "$BASE/swapper.out" "$VRAMFS_IO" swapper 128 3 61
SWAPPER=$SPAWNED
for ((i = 0; i < 600; i++)); do
  used=0
  for l in $LOOPS; do used=$((used + $(swap_used_kib "$l"))); done
  [ "$used" -lt $((64 * 1024)) ] || break
  nap 0.1
done
kill -STOP "$SWAPPER"
unlimit_cgroup "$CG"
info "$((used / 1024)) MiB in the swap"

info "RAM survives suspend: kept"
fake_machine 24000000 0 disabled
vs sleep suspend
expect_rc 0 "sleep suspend, host backend"
grep -q "gpu0: its memory survives suspend: kept" <<<"$OUT" || { show sleep; fail "a host swap was not kept"; }
active || fail "the host swap went off for a suspend"
export VRAMSWAP_TEST_HOST_IS_VRAM=1

info "GPU memory that does not survive, and RAM too small for its pages: suspend refused"
fake_machine $((used / 2)) 0 disabled
vs sleep suspend
expect_rc 1 "sleep suspend, pages do not fit"
grep -Eq "^vramswap: refusing to suspend: GPU memory does not survive it here \(the NVIDIA driver does not preserve it: see vramswap doctor\), and the [0-9]+ MiB in VRAM swap do not fit in the [0-9]+ MiB of RAM available" <<<"$ERR" ||
  { show sleep; fail "the refused suspend does not say why"; }
active || fail "a refused suspend took the swap off"
[ ! -e "$R/run/vramswap.sleep" ] || fail "a refused suspend left a record for wake"

info "the driver preserves GPU memory (PreserveVideoMemoryAllocations=1, nvidia-suspend.service): kept"
fake_machine $((used / 2)) 1 enabled
vs sleep suspend
expect_rc 0 "sleep suspend, memory preserved"
grep -q "gpu0: its memory survives suspend: kept" <<<"$OUT" || { show sleep; fail "preserved GPU memory was not kept"; }
active || fail "the swap went off although the driver preserves it"
info "... PreserveVideoMemoryAllocations=1 without nvidia-suspend.service is not enough"
fake_machine $((used / 2)) 1 disabled
vs sleep suspend
expect_rc 1 "sleep suspend, Preserve=1, nvidia-suspend disabled, pages do not fit"

info "hibernation with its resume device on a VRAM swap: refused"
fake_machine 24000000 1 enabled "LABEL=vramswap-gpu0"
vs sleep hibernate
expect_rc 1 "sleep hibernate, resume= on VRAM swap"
grep -q "^vramswap: refusing to hibernate: the kernel command line's resume=LABEL=vramswap-gpu0 is a VRAM swap" <<<"$ERR" ||
  { show sleep; fail "hibernation onto VRAM swap is not refused"; }
active || fail "a refused hibernation took the swap off"

info "hibernation, room in RAM: the swap goes off; wake starts it again as it was"
fake_machine 24000000 1 enabled
vs sleep hibernate
expect_rc 0 "sleep hibernate"
echo "$OUT"
grep -q "^gpu0: stopped" <<<"$OUT" || { show sleep; fail "sleep hibernate did not stop the swap"; }
[ -z "$(loops_under "$DIR")" ] || fail "loop devices left after sleep"
[ -z "$(vramfs_mounts_under "$DIR")" ] || fail "mounts left after sleep"
grep -q "$DIR	0	--backend host --size 268435456 --stripes 2 --priority 7 .*--failover" "$R/run/vramswap.sleep" ||
  fail "sleep recorded: $(cat "$R/run/vramswap.sleep")"
unset VRAMSWAP_TEST_HOST_IS_VRAM
vs wake
expect_rc 0 "wake"
echo "$OUT"
[ ! -e "$R/run/vramswap.sleep" ] || fail "wake left its record"
[ "$(loops_under "$DIR/gpu0" | wc -l)" = 2 ] || fail "wake did not start the 2 stripes again"
for l in $(loops_under "$DIR/gpu0"); do
  [ "$(awk -v d="$l" '$1 == d { print $5 }' /proc/swaps)" = 7 ] || fail "wake did not start $l at priority 7"
done
[ "$(stat_value "$DIR/gpu0" failover)" = 1 ] || fail "wake did not start it with failover"
vs wake
expect_rc 0 "wake with nothing to do"
grep -q "nothing to start again" <<<"$OUT" || fail "wake with nothing to do says: $OUT"

info "the process's pages came back whole"
kill -CONT "$SWAPPER"
rc=0
wait "$SWAPPER" || rc=$?
cat "$BASE/swapper.out"
if [ "$rc" != 0 ] || ! grep -q verified "$BASE/swapper.out"; then fail "the swapper failed (exit $rc)"; fi
vs stop
expect_rc 0 "stop"
echo PASS
