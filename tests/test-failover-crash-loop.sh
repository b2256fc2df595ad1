#!/bin/bash
# A crash loop after the takeover (-o failover): every server that takes
# over dies on the first request the kernel resends it.  Serving once must
# not reset the count: the mount reaches failed mode (every request
# answered EIO at once, nothing hangs) within seconds, instead of
# restarting servers for ever.
# It swaps nothing and attaches no loop device: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

dir=$(make_tempdir)
mnt=$dir/mnt
file=$mnt/swapfile
mkdir -p "$mnt"
VRAMFS_INJECT_FAULT=takeover_crash:1 "$VRAMFS" "$mnt" -f \
  -o "backend=$VRAMFS_TEST_BACKEND,size=64M,cache=8M,failover" >"$dir/fg.log" 2>&1 &
register mount "$mnt"
answers() { [ -n "$(stat_value "$mnt" pid 2>/dev/null)" ]; }
wait_for 10 answers || fail "the mount does not answer: $(cat "$dir/fg.log")"
"$VRAMFS_IO" fill "$file" 0 $((16 << 20)) 3 direct || fail "cannot write"

# Reads keep coming, so that each new server meets one at once.
( while "$VRAMFS_IO" verify "$file" 0 $((1 << 20)) 3 direct 2>/dev/null; do :; done ) &
reader=$!
cleanup_first() { kill "$reader" 2>/dev/null; }
start=$(date +%s)
kill -KILL "$(stat_value "$mnt" pid)"
failed() { [ "$(stat_value "$mnt" state 2>/dev/null)" = failed ]; }
wait_for 30 failed || fail "no failed mode after 30 s of a crash loop: restarts $(stat_value "$mnt" restarts); $(tail -3 "$dir/fg.log")"
echo "ok: failed mode $(($(date +%s) - start)) s after the first death, $(stat_value "$mnt" restarts) restarts"
grep -q "died before they served .* or soon after" "$dir/fg.log" || fail "the log does not say why: $(tail -5 "$dir/fg.log")"
# Failed mode answers at once.
t0=$(date +%s%N)
"$VRAMFS_IO" verify "$file" 0 4096 3 direct 2>/dev/null && fail "a read of lost data succeeded"
[ $(( ($(date +%s%N) - t0) / 1000000 )) -lt 5000 ] || fail "a read in failed mode took over 5 s"
kill "$reader" 2>/dev/null || true
umount "$mnt"
echo PASS
