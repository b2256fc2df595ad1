#!/bin/bash
# A resize that dies half-way leaves nothing half-done for good: killed
# with SIGKILL in the middle of a shrink (one stripe's swap off, the next
# one's swapoff under way) or of a grow (the file longer, a stripe attached
# and not yet swap), status says so and how to finish it, and the next
# resize finishes it first; a resize stopped with SIGTERM puts back what it
# had changed.  A process's pages, in swap meanwhile, all verify.  The
# steps are slowed down by wrappers of swapoff and mkswap.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

mnt=$DIR/gpu0

# slow NAME: NAME sleeps 2 s first, in BASE/slow (first on PATH for the
# resizes that are to be cut short).
mkdir -p "$BASE/slow"
slow() {
  local real
  real=$(PATH=/usr/sbin:/sbin:$PATH command -v "$1")
  printf '#!/bin/bash\nsleep 2\nexec %s "$@"\n' "$real" >"$BASE/slow/$1"
  chmod +x "$BASE/slow/$1"
}
slow swapoff
slow mkswap

# stripe_dev S: the loop device of stripe S (64 MiB each).
stripe_dev() {
  local d
  for d in $(loops_under "$mnt"); do
    [ "$(cat "/sys/block/${d#/dev/}/loop/offset")" != $(($1 * 64 * MiB)) ] || echo "$d"
  done
}

start_with_swapper 60 31
# Its pages stay in the swap while the resizes run; room in its cgroup
# for those that come back.
kill -STOP "$SOAK"
if [ -f "$CG/memory.max" ]; then echo max >"$CG/memory.max"; else echo -1 >"$CG/memory.limit_in_bytes"; fi

info "SIGKILL in the middle of a shrink to 64 MiB"
last=$(stripe_dev 3)
PATH=$BASE/slow:$PATH setsid "$VRAMSWAP" resize --size 64M --dir "$DIR" >"$BASE/r1.out" 2>&1 &
resizer=$!
first_off() { ! swap_active "$last"; }
wait_for 30 first_off || { cat "$BASE/r1.out"; fail "the shrink never took stripe 3 off"; }
sleep 0.5  # the next swapoff is sleeping
kill -KILL -- "-$resizer"
wait "$resizer" || true
swap_active "$(stripe_dev 2)" || fail "the killed shrink took stripe 2 off too: nothing to finish"
[ -e "$DIR/.gpu0.resizing" ] || fail "the killed resize left no record"
vs status --dir "$DIR"
echo "$OUT"
awk '$1 == "0" { exit !($NF == "degraded") }' <<<"$OUT" || fail "status does not show it degraded"
grep -q "^gpu0: a vramswap resize to 64 MiB was interrupted (killed?) half-way; 'vramswap resize --gpu 0 --size 64M --dir $DIR' finishes it" <<<"$OUT" ||
  fail "status does not say how to finish the resize"

info "the next resize finishes it, then does its own"
vs resize --size 192M --dir "$DIR"
show "resize --size 192M"
expect_rc 0 "the resize after a killed one"
grep -q "gpu0: a resize to 64 MiB was interrupted; finishing it" <<<"$ERR" || fail "it did not say it finishes the last one"
grep -q "^gpu0: shrunk from 256 MiB to 64 MiB: vramswap resize --size 64M (finished after an interruption)" <<<"$OUT" || fail "the last one was not finished"
grep -q "^gpu0: grown from 64 MiB to 192 MiB" <<<"$OUT" || fail "its own was not done"
expect_swap_size 192 3 "finished, then grown"

info "SIGKILL in the middle of a grow to 256 MiB (the file longer, the stripe attached, no swap yet)"
PATH=$BASE/slow:$PATH setsid "$VRAMSWAP" resize --size 256M --dir "$DIR" >"$BASE/r2.out" 2>&1 &
resizer=$!
attached() { [ -n "$(stripe_dev 3)" ]; }
wait_for 30 attached || { cat "$BASE/r2.out"; fail "the grow never attached stripe 3"; }
kill -KILL -- "-$resizer"
wait "$resizer" || true
! swap_active "$(stripe_dev 3)" || fail "the killed grow got as far as swapon: nothing to finish"
vs status --dir "$DIR"
grep -q "^gpu0: a vramswap resize to 256 MiB was interrupted" <<<"$OUT" || { echo "$OUT"; fail "status does not say the grow was cut short"; }
vs resize --size 256M --dir "$DIR"
show "resize --size 256M"
expect_rc 0 "the grow after a killed one"
expect_swap_size 256 4 "the grow finished"

info "SIGTERM in the middle of a shrink: what it took off goes back"
PATH=$BASE/slow:$PATH "$VRAMSWAP" resize --size 64M --dir "$DIR" >"$BASE/r3.out" 2>&1 &
resizer=$!
last=$(stripe_dev 3)
wait_for 30 first_off || { cat "$BASE/r3.out"; fail "the shrink never took stripe 3 off"; }
kill -TERM "$resizer"
status=0
wait "$resizer" || status=$?
cat "$BASE/r3.out"
[ "$status" = 143 ] || fail "the resize stopped with SIGTERM exited $status"
grep -q "gpu0: interrupted (SIGTERM); the stripes are as they were, nothing changed" "$BASE/r3.out" || fail "it did not say it put everything back"
expect_swap_size 256 4 "put back after SIGTERM"
read_stats "$mnt"
[ "${STATS[resizes]}" = 3 ] || fail "vramfs counted ${STATS[resizes]} resizes, not 3"

kill -CONT "$SOAK"
expect_swapper_verified
vs stop --dir "$DIR"
expect_rc 0 "stop"
nothing_left "after stop"
echo PASS
