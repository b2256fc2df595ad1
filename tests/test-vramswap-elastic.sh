#!/bin/bash
# Elastic mode against a faked free-VRAM reading (VRAMSWAP_GPU_MEMORY_FILE):
# a "GPU" of 1024 MiB whose free memory is what neither the swap nor a hog
# holds.  The swap shrinks by as many stripes as bring free VRAM back over
# the headroom, and no further; free memory that rises above the headroom
# and a stripe only for moments grows nothing (hysteresis); once it stays
# there, the swap grows back to its configured size.  The reasons are in
# status, its JSON and the watcher's log, and stop ends the watcher.
# Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

mnt=$DIR/gpu0
total_mib=1024
reading=$BASE/gpu-memory
hog=$BASE/hog-mib
echo 0 >"$hog"
export VRAMSWAP_GPU_MEMORY_FILE=$reading VRAMSWAP_ELASTIC_INTERVAL=0.2 VRAMSWAP_ELASTIC_GROW_AFTER=4

# The fake driver: free = total - hog - what vramfs holds, written afresh
# every 50 ms (through a rename, so that the watcher never reads half a
# line).
held_mib() { awk '$1 == "held_bytes" { print int($2 / 1048576) }' "$mnt/.stats" 2>/dev/null || echo 0; }
fake_driver() {
  local h held
  while :; do
    read -r h <"$hog" || h=0
    held=$(held_mib)
    echo "$(((total_mib - h - ${held:-0}) * MiB)) $((total_mib * MiB))" >"$reading.tmp" && mv -f "$reading.tmp" "$reading"
    nap 0.05
  done
}
echo "$((total_mib * MiB)) $((total_mib * MiB))" >"$reading"
fake_driver &
driver=$!
# Before the teardown: the fake driver, and a watcher that a failure left
# running (in a session of its own, so start's cleanup does not see it).
cleanup_first() {
  local pid
  kill "$driver" 2>/dev/null
  pid=$(awk '$1 == "pid" { print $2 }' "$DIR/.gpu0.elastic" 2>/dev/null)
  [ -z "$pid" ] || kill -KILL -- "-$pid" 2>/dev/null
}

size_mib() { read_stats "$mnt" >/dev/null 2>&1 && echo $((STATS[size_bytes] / MiB)); }
resizes() { read_stats "$mnt" >/dev/null 2>&1 && echo "${STATS[resizes]}"; }

vs start --backend host --size 256M --stripes 4 --elastic 300M --dir "$DIR"
show "start --elastic 300M"
expect_rc 0 "start --elastic 300M"
grep -q "^gpu0: elastic: keeps 300M of VRAM free for other programs" <<<"$OUT" || fail "start does not name the watcher"
has_note() { grep -q "^note .*$1" "$DIR/.gpu0.elastic" 2>/dev/null; }
wait_for 20 has_note "the swap has its configured size, 256 MiB" ||
  fail "the watcher did not settle: $(cat "$DIR/.gpu0.elastic" "$DIR/.gpu0.elastic.log" 2>&1)"
[ "$(resizes)" = 0 ] || fail "the swap was resized with free VRAM above the headroom"

info "a hog takes 500 MiB: free VRAM 268 MiB, 32 MiB below the headroom: one stripe of 64 MiB goes"
echo 500 >"$hog"
at192() { [ "$(size_mib)" = 192 ]; }
wait_for 30 at192 || fail "the swap did not shrink to 192 MiB: $(size_mib) MiB; $(cat "$DIR/.gpu0.elastic" 2>&1)"
info "then free VRAM is 332 MiB: above the headroom, below it and a stripe; nothing more changes for 3 s"
sleep 3
[ "$(size_mib)" = 192 ] || fail "the swap went on to $(size_mib) MiB"
[ "$(resizes)" = 1 ] || fail "$(resizes) resizes, not 1"
[ "$(loops_under "$mnt" | wc -l)" = 3 ] || fail "not 3 stripes: $(loops_under "$mnt" | xargs)"

vs status --dir "$DIR"
expect_rc 0 "status"
echo "$OUT"
awk '$1 == "0" { exit !($6 == "192M" && $7 == "256M") }' <<<"$OUT" || fail "status does not show 192M of 256M"
grep -q "^gpu0: last resized .*, from 256 MiB to 192 MiB: elastic: free VRAM 268 MiB was below the headroom of 300 MiB$" <<<"$OUT" ||
  fail "status does not give the shrink's reason"
grep -q "^gpu0: elastic: keeps 300 MiB of VRAM free; 332 of 1024 MiB free at .*; free VRAM 332 MiB, headroom 300 MiB: holding 192 of 256 MiB" <<<"$OUT" ||
  fail "status does not give the watcher's reading and note"
vs status --json --dir "$DIR"
expect_rc 0 "status --json"
python3 -c '
import json, sys
s = json.load(sys.stdin)["swaps"][0]
print(json.dumps({k: s[k] for k in s if "size" in k or "resize" in k or "elastic" in k}))
' <<<"$OUT" || fail "status --json is not JSON"

info "free VRAM rises above the headroom and a stripe (364 MiB) for 2 s at a time, 2 s less than the watcher waits for: no grow"
# Each dip lasts longer than the watcher takes between two readings, so that
# it sees every one.
for _ in 1 2 3; do
  echo 400 >"$hog"  # free 432 MiB
  sleep 2
  echo 500 >"$hog"  # free 332 MiB
  sleep 2
done
[ "$(size_mib)" = 192 ] ||
  fail "the swap grew to $(size_mib) MiB on moments of free memory: $(cat "$DIR/.gpu0.elastic.log")"
[ "$(resizes)" = 1 ] || fail "$(resizes) resizes on moments of free memory"

info "the hog exits: the swap grows back to 256 MiB after 4 s"
echo 0 >"$hog"
SECONDS=0
# Grown: the file is 256 MiB and its 4 stripes swap (a grow truncates the
# file first, then attaches the stripe and turns it on).
at256() { [ "$(size_mib)" = 256 ] && [ "$(swapping_stripes)" = 4 ]; }
swapping_stripes() { local d n=0; for d in $(loops_under "$mnt"); do if swap_active "$d"; then n=$((n + 1)); fi; done; echo "$n"; }
wait_for 30 at256 || fail "the swap did not grow back: $(size_mib) MiB; $(cat "$DIR/.gpu0.elastic" "$DIR/.gpu0.elastic.log" 2>&1)"
[ "$SECONDS" -ge 4 ] || fail "the swap grew back after $SECONDS s, before free VRAM had stayed up for 4 s"
info "grown back in $SECONDS s"
prios=$(for d in $(loops_under "$mnt"); do awk -v d="$d" '$1 == d { print $5 }' /proc/swaps; done | sort -u | xargs)
[ "$prios" = 100 ] || fail "the stripes' priorities: $prios"
sleep 1
[ "$(resizes)" = 2 ] || fail "$(resizes) resizes, not 2 (one shrink, one grow)"
grep -c "shrunk\|grown" "$DIR/.gpu0.elastic.log" || true
cat "$DIR/.gpu0.elastic.log"

info "a hog that takes all but 100 MiB: the swap goes down to one stripe, never to none"
echo 700 >"$hog"
at64() { [ "$(size_mib)" = 64 ]; }
wait_for 30 at64 || fail "the swap did not shrink to 64 MiB: $(size_mib) MiB"
wait_for 10 has_note "the swap is at its smallest, one stripe of 64 MiB" ||
  fail "the watcher does not say why it stops shrinking: $(cat "$DIR/.gpu0.elastic" 2>&1)"

info "stop ends the watcher"
pid=$(awk '$1 == "pid" { print $2 }' "$DIR/.gpu0.elastic")
vs stop --dir "$DIR"
expect_rc 0 "stop"
! alive "$pid" || fail "the watcher (pid $pid) outlived stop"
nothing_left "stop"
echo "PASS"
