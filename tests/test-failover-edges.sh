#!/bin/bash
# Crash survival (-o failover) at its edges: the server killed during the
# mount, under a flood of queued requests, and during swapoff; the keeper
# killed; and a server that can no longer be started (failed mode).  No
# hang, no lost data, and nothing left mounted when a mount is abandoned.
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

dir=$(make_tempdir)
mnt=$dir/mnt
mkdir -p "$mnt"
file=$mnt/swapfile
opts="backend=$VRAMFS_TEST_BACKEND,failover"

mounted() { grep -q " $mnt fuse.vramfs " /proc/mounts; }

info "the server killed during the mount: the start fails, and nothing stays mounted"
VRAMFS_INJECT_FAULT=slow_start:2000 "$VRAMFS" "$mnt" -o "$opts,size=64M" 2>"$dir/start.err" &
caller=$!
register mount "$mnt"
wait_for 10 mounted || fail "the server never mounted: $(cat "$dir/start.err")"
answers() { [ -n "$(stat_now "$mnt" pid)" ]; }
wait_for 10 answers || fail "the server does not answer"
server=$(stat_now "$mnt" pid)
keeper=$(stat_now "$mnt" keeper_pid)
kill -KILL "$server"
status=0
wait "$caller" || status=$?
[ "$status" = 1 ] || fail "vramfs exited $status after its server was killed during the start"
grep -q "during startup" "$dir/start.err" || fail "the start said: $(cat "$dir/start.err")"
unmounted() { ! mounted; }
gone() { ! kill -0 "$1" 2>/dev/null; }
wait_for 10 unmounted || fail "an abandoned mount stayed"
wait_for 10 gone "$keeper" || fail "the keeper of an abandoned mount still runs"
echo "ok: $(cat "$dir/start.err")"

info "the server killed twice under a flood of queued requests: every request answered, every byte right"
mount_vramfs "$mnt" "size=256M,cache=8M,failover"
"$VRAMFS_IO" stress "$file" 16 8 41 >"$dir/stress" 2>&1 &
stress=$!
for delay in 2 3; do
  sleep "$delay"
  server=$(stat_now "$mnt" pid)
  kill -KILL "$server"
  replaced() { local now; now=$(stat_now "$mnt" pid); [ -n "$now" ] && [ "$now" != "$1" ]; }
  wait_for 5 replaced "$server" || fail "no server took over under the flood"
done
status=0
wait "$stress" || status=$?
cat "$dir/stress"
[ "$status" = 0 ] || fail "the stress run failed (exit $status) across the kills"
[ "$(stat_now "$mnt" restarts)" = 2 ] || fail "restarts is $(stat_now "$mnt" restarts), expected 2"
[ "$(stat_now "$mnt" errors)" = 0 ] || fail "vramfs counted $(stat_now "$mnt" errors) errors"

info "the server killed during swapoff: swapoff finishes and every page comes back"
loop=$(attach_loop "$file")
enable_swap "$loop" --priority 32000
cg=$(make_memory_cgroup 32)
spawn_in_cgroup "$cg" "$dir/swapper" "$VRAMFS_IO" soak 128 600 77
swapper=$SPAWNED
swapped() { [ "$(swap_used_kib "$loop")" -gt $((64 * 1024)) ]; }
wait_for 30 swapped || fail "the process did not swap"
kill -STOP "$swapper"
unlimit_cgroup "$cg"  # swapoff charges the pages back to their cgroup
swapoff "$loop" &
swapoff_pid=$!
sleep 0.3
kill -KILL "$(stat_now "$mnt" pid)"
timeout 60 tail --pid="$swapoff_pid" -f /dev/null || fail "swapoff hung after the server was killed"
wait "$swapoff_pid" || fail "swapoff failed after the server was killed"
kill -CONT "$swapper"
sleep 2
kill -TERM "$swapper" 2>/dev/null || true
status=0
wait "$swapper" || status=$?
grep -q "came back changed" "$dir/swapper" && fail "a page came back changed: $(cat "$dir/swapper")"
[ "$status" != 135 ] || fail "the swapping process got SIGBUS"
[ "$(stat_now "$mnt" errors)" = 0 ] || fail "vramfs counted errors during swapoff"
losetup -d "$loop"
umount "$mnt"

info "the keeper killed: the server goes on, but says it can no longer be replaced"
mount_vramfs "$mnt" "size=64M,failover"
keeper=$(stat_now "$mnt" keeper_pid)
kill -KILL "$keeper"
keeper_dead() { [ "$(stat_now "$mnt" keeper_alive)" = 0 ]; }
wait_for 5 keeper_dead || fail ".stats still says keeper_alive 1"
"$VRAMFS_IO" fill "$file" 0 $((4 << 20)) 9
"$VRAMFS_IO" verify "$file" 0 $((4 << 20)) 9
server=$(stat_now "$mnt" pid)
umount "$mnt"
wait_for 10 gone "$server" || fail "the server still runs after the unmount"

info "no server can start any more: failed mode answers EIO at once and takes the swap off"
VRAMFS_INJECT_FAULT=takeover:1 mount_vramfs "$mnt" "size=128M,failover"
loop=$(attach_loop "$file")
enable_swap "$loop" --priority 32000
kill -KILL "$(stat_now "$mnt" pid)"
# Five servers die at their start, with growing pauses; then failed mode.
failed_mode() { [ "$(stat_now "$mnt" state)" = failed ]; }
swap_off() { ! grep -q "^$loop " /proc/swaps; }
wait_for 30 failed_mode || fail "no failed mode: state is $(stat_now "$mnt" state)"
wait_for 20 swap_off || fail "failed mode did not take $loop off"
start=$(date +%s)
if timeout 20 dd if="$file" of=/dev/null bs=4K count=1 skip=$((16 << 10)) iflag=direct status=none 2>/dev/null; then
  fail "a read in failed mode succeeded"
fi
[ $(($(date +%s) - start)) -lt 5 ] || fail "a read in failed mode took $(($(date +%s) - start)) s"
losetup -d "$loop"
timeout 20 umount "$mnt" || fail "unmounting in failed mode failed or hung"
echo PASS
