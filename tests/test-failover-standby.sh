#!/bin/bash
# The standby server (-o failover): a second server waits, ready, beside
# the serving one, and takes over at once when that one dies; a death that
# comes before a new standby is ready falls back to a cold start; every
# byte written survives both.  standby=0 runs without one, and a GPU that
# admits one process at a time (faked here) gets none, saying why.
# It swaps nothing and attaches no loop device: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

dir=$(make_tempdir)
mnt=$dir/mnt
file=$mnt/swapfile

mount_vramfs "$mnt" "size=128M,cache=8M,failover"
keeper=$(stat_value "$mnt" keeper_pid)
standby_ready() { [ "$(stat_value "$mnt" standby 2>/dev/null)" = ready ]; }
wait_for 20 standby_ready || fail "no standby became ready: standby $(stat_value "$mnt" standby)"
server=$(stat_value "$mnt" pid)
standby=$(children "$keeper" | grep -vx "$server")
[ "$(wc -w <<<"$standby")" = 1 ] || fail "the keeper has not one standby beside server $server: $standby"

info "every byte written before and during the deaths is read back after them"
half=$((64 << 20))
"$VRAMFS_IO" fill "$file" 0 "$half" 7 direct || fail "cannot write the data"
# Requests in flight at each death: reads of the first half, checked, and
# writes of the second.
( while "$VRAMFS_IO" verify "$file" 0 "$half" 7 direct; do :; done ) >"$dir/reader" 2>&1 &
reader=$!
( while "$VRAMFS_IO" fill "$file" "$half" "$half" 8 direct; do :; done ) >"$dir/writer" 2>&1 &
writer=$!
cleanup_first() { kill "$reader" "$writer" 2>/dev/null; }
sleep 1

info "the serving server killed: the standby ($standby) takes over"
kill -KILL "$server"
took_over() { [ "$(stat_value "$mnt" pid 2>/dev/null)" = "$1" ]; }
wait_for 10 took_over "$standby" || fail "the standby $standby did not take over (pid $(stat_value "$mnt" pid))"
echo "ok: the standby took over in $(stat_value "$mnt" last_takeover_us) us after the death"

info "killed again at once, before a new standby is ready: a cold start, nothing lost"
kill -KILL "$standby"
replaced() { local now; now=$(stat_value "$mnt" pid 2>/dev/null); [ -n "$now" ] && [ "$now" != "$standby" ]; }
wait_for 20 replaced || fail "no server took over after two deaths in a row"
[ "$(stat_value "$mnt" restarts)" = 2 ] || fail ".stats counts $(stat_value "$mnt" restarts) restarts, not 2"
[ "$(stat_value "$mnt" state)" = serving ] || fail "two deaths in a row put the mount in state $(stat_value "$mnt" state)"
wait_for 20 standby_ready || fail "no new standby after the cold start"

# VRAMFS_DOUBLE_DEATHS (default 1): the two deaths above, this many times
# in all.  The successor is killed while it reads its first requests: with
# request buffers not yet in memory (a sanitizer build, where nothing is
# locked) the kernel lost such a request with EIO.
for ((round = 2; round <= ${VRAMFS_DOUBLE_DEATHS:-1}; round++)); do
  server=$(stat_value "$mnt" pid)
  standby=$(children "$keeper" | grep -vx "$server")
  kill -KILL "$server"
  wait_for 10 took_over "$standby" || fail "round $round: the standby $standby did not take over"
  kill -KILL "$standby"
  wait_for 20 replaced || fail "round $round: no server took over after two deaths in a row"
  wait_for 20 standby_ready || fail "round $round: no new standby after the cold start"
  alive "$writer" || fail "round $round: a write during the deaths failed: $(cat "$dir/writer")"
done

sleep 1
alive "$reader" || fail "a read during the deaths failed: $(cat "$dir/reader")"
alive "$writer" || fail "a write during the deaths failed: $(cat "$dir/writer")"
kill "$reader" "$writer"
wait "$writer" 2>/dev/null || true
"$VRAMFS_IO" fill "$file" "$half" "$half" 8 direct || fail "cannot write after the deaths"
"$VRAMFS_IO" verify "$file" 0 "$half" 7 direct || fail "data written before the deaths came back wrong"
"$VRAMFS_IO" verify "$file" "$half" "$half" 8 direct || fail "data written during the deaths came back wrong"
[ "$(stat_value "$mnt" errors)" = 0 ] || fail "vramfs counted $(stat_value "$mnt" errors) errors"
umount "$mnt"
gone() { ! kill -0 "$1" 2>/dev/null; }
wait_for 10 gone "$keeper" || fail "the keeper still runs after the unmount"
for pid in $(pgrep -f "$VRAMFS $mnt"); do fail "vramfs process $pid still runs after the unmount"; done

info "standby=0: no second server"
mount_vramfs "$mnt" "size=64M,cache=8M,failover,standby=0"
sleep 1
keeper=$(stat_value "$mnt" keeper_pid)
[ "$(stat_value "$mnt" standby)" = off ] || fail "standby=0 shows standby $(stat_value "$mnt" standby)"
[ "$(children "$keeper" | wc -l)" = 1 ] || fail "standby=0 runs $(children "$keeper" | wc -l) servers"
umount "$mnt"

info "a GPU that admits one process at a time: no standby, and the log says why"
VRAMFS_INJECT_FAULT=single_process:1 "$VRAMFS" "$mnt" -f \
  -o "backend=$VRAMFS_TEST_BACKEND,size=64M,cache=8M,failover" >"$dir/fg.log" 2>&1 &
register mount "$mnt"
answers() { [ "$(stat_value "$mnt" standby 2>/dev/null)" = unavailable ]; }
wait_for 10 answers || fail "standby is $(stat_value "$mnt" standby), not unavailable: $(cat "$dir/fg.log")"
keeper=$(stat_value "$mnt" keeper_pid)
sleep 1
[ "$(children "$keeper" | wc -l)" = 1 ] || fail "a standby runs beside a one-process GPU"
grep -q "admits one process at a time" "$dir/fg.log" || fail "the log does not say why: $(cat "$dir/fg.log")"
umount "$mnt"
echo PASS
