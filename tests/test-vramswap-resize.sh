#!/bin/bash
# vramswap resize under a swapping process: the swap shrinks by stripes
# (their pages come back, the memory behind them goes back: vramfs holds
# and its keeper keeps exactly what is left) and grows again (the stripes
# come back at the same priority and take pages), while a process in a
# memory cgroup works on three times its limit; every page verifies.
# status, status --json and metrics show the configured and the current
# size and the last resize with its reason.  Backend host, failover.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

mnt=$DIR/gpu0

# cgroup_limit CGROUP MIB: sets its memory limit.  cgroup v1 refuses a limit
# below the usage (EBUSY) when one round of reclaim does not get there: it
# is tried again, while the pages go out to swap.
cgroup_limit() {
  local file=$1/memory.limit_in_bytes i
  [ ! -f "$1/memory.max" ] || file=$1/memory.max
  for ((i = 0; i < 20; i++)); do
    echo $(($2 * MiB)) 2>/dev/null >"$file" && return 0
    nap 0.5
  done
  fail "cannot limit $1 to $2 MiB (usage $(cat "$1/memory.usage_in_bytes" "$1/memory.current" 2>/dev/null))"
}

info "a process in a 32 MiB cgroup works on 96 MiB for 60 s"
start_with_swapper 60 17
expect_swap_size 256 4 "started"
swap_used_of_all() { swap_used_under "$mnt"; }
swapped() { [ "$(swap_used_of_all)" -gt $((40 * 1024)) ]; }

info "shrink to 3 stripes with the cgroup at its limit: its pages there fit in the stripes that stay"
vs resize --size 192M --dir "$DIR"
show "resize --size 192M"
expect_rc 0 "resize --size 192M, the cgroup at its limit"
expect_swap_size 192 3 "shrunk at the limit"
alive "$SOAK" || { cat "$BASE/soak.out"; fail "the process died in the shrink at its limit"; }
vs resize --size 256M --dir "$DIR"
expect_rc 0 "resize --size 256M"
expect_swap_size 256 4 "grown back"

info "shrink to 2 stripes: its cgroup given room first"
cgroup_limit "$CG" 512
vs resize --size 128M --dir "$DIR"
show "resize --size 128M"
expect_rc 0 "resize --size 128M"
grep -q "^gpu0: shrunk from 256 MiB to 128 MiB: vramswap resize --size 128M" <<<"$OUT" || fail "resize said: $OUT"
expect_swap_size 128 2 "shrunk"
alive "$SOAK" || { cat "$BASE/soak.out"; fail "the process died in the shrink"; }

info "its limit back to 32 MiB: its pages go to the two stripes left"
cgroup_limit "$CG" 32
wait_for 60 swapped || fail "the process did not swap again ($(swap_used_of_all) KiB)"

info "status shows the configured and the current size, and the last resize"
vs status --dir "$DIR"
expect_rc 0 "status"
echo "$OUT"
awk '$1 == "0" { exit !($6 == "128M" && $7 == "256M" && $NF == "active") }' <<<"$OUT" ||
  fail "status does not show 128M of 256M, active"
grep -q "^gpu0: last resized .*, from 256 MiB to 128 MiB: vramswap resize --size 128M$" <<<"$OUT" ||
  fail "status does not show the last resize"
vs status --json --dir "$DIR"
python3 -c '
import json, sys
s = json.load(sys.stdin)["swaps"][0]
assert s["size_bytes"] == 128 << 20 and s["max_size_bytes"] == 256 << 20, s
r = s["last_resize"]
assert r["from_bytes"] == 256 << 20 and r["to_bytes"] == 128 << 20, r
assert r["reason"] == "vramswap resize --size 128M", r
assert s["stats"]["resizes"] == 3, s["stats"]
' <<<"$OUT" || fail "status --json: $OUT"
vs metrics --dir "$DIR"
grep -q '^vramswap_max_size_bytes{gpu="0",.*} 268435456$' <<<"$OUT" || fail "metrics lack the configured size"
grep -q '^vramswap_size_bytes{gpu="0",.*} 134217728$' <<<"$OUT" || fail "metrics lack the size"
grep -q '^vramswap_resizes_total{gpu="0",.*} 3$' <<<"$OUT" || fail "metrics lack the resizes"

info "grow back to 256 MiB while it swaps: the stripes come back and take pages"
vs resize --size 100% --dir "$DIR"
show "resize --size 100%"
expect_rc 0 "resize --size 100%"
expect_swap_size 256 4 "grown"
new_used() {
  local d s=0
  for d in $(loops_under "$mnt"); do
    [ "$(loop_sysfs_offset "$d")" -ge $((128 * MiB)) ] || continue
    s=$((s + $(swap_used_kib "$d")))
  done
  [ "$s" -gt 0 ]
}
loop_sysfs_offset() { cat "/sys/block/${1#/dev/}/loop/offset"; }
cgroup_limit "$CG" 512
cgroup_limit "$CG" 24
wait_for 60 new_used || fail "no page went to the stripes that came back"

info "shrink to one stripe and grow again, room given each time"
cgroup_limit "$CG" 512
vs resize --size 64M --dir "$DIR"
expect_rc 0 "resize --size 64M"
expect_swap_size 64 1 "one stripe"
# 48 MiB of its 96 in a 64 MiB swap.
cgroup_limit "$CG" 48
vs resize --size 192M --dir "$DIR"
expect_rc 0 "resize --size 192M"
expect_swap_size 192 3 "three stripes"

expect_swapper_verified
read_stats "$mnt"
[ "${STATS[errors]}" = 0 ] || fail "vramfs counted ${STATS[errors]} errors"
[ "${STATS[resizes]}" = 6 ] || fail "vramfs counted ${STATS[resizes]} resizes, not 6"

vs stop --dir "$DIR"
expect_rc 0 "stop after resizes"
nothing_left "after stop"
[ ! -e "$DIR" ] || fail "stop left $DIR: $(ls -A "$DIR")"
echo PASS
