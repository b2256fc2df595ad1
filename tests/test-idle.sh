#!/bin/bash
# Idle costs nothing: a second after the last request, the daemon (keeper,
# server and standby, threads polling between requests; over io_uring,
# test-idle-uring, the server alone) uses under 1% of one CPU, measured
# over 2 s.
# It swaps nothing and attaches no loop device: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

dir=$(make_tempdir)
mnt=$dir/mnt
if [ "${VRAMFS_TEST_TRANSPORT:-dev}" = uring ]; then
  # Failover needs the dev transport: the uring queues' threads alone,
  # which sleep between requests (busy_poll is the dev transport's).
  mount_vramfs "$mnt" "size=64M,cache=8M"
else
  mount_vramfs "$mnt" "size=64M,cache=8M,failover,busy_poll=50"
  standby_ready() { [ "$(stat_value "$mnt" standby 2>/dev/null)" = ready ]; }
  wait_for 20 standby_ready || fail "no standby became ready"
fi
# Without failover there is no keeper: the server is the whole daemon.
keeper=$(stat_value "$mnt" keeper_pid)
[ "$keeper" != 0 ] || keeper=$(stat_value "$mnt" pid)
# A sanitizer build (memory_locked 0) spends CPU of its own: what it uses
# idle is not what vramfs costs (the plain build's run measures that).
[ "$(stat_value "$mnt" memory_locked)" = 1 ] || skip_optional "sanitizer build: its idle CPU is the sanitizer's"

# CPU ticks of the keeper and every process it started.
ticks() {
  local pid sum=0
  for pid in "$keeper" $(children "$keeper"); do
    sum=$((sum + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$sum"
}
info "a burst of requests, then nothing"
"$VRAMFS_IO" random "$mnt/swapfile" 20000 65536 5 >/dev/null || fail "the burst failed"
sleep 1
before=$(ticks)
sleep 2
used=$(( $(ticks) - before ))
hz=$(getconf CLK_TCK)
echo "idle: $used ticks of 1/$hz s in 2 s"
# 1% of one CPU over 2 s is 20 ms.
[ $((used * 1000 / hz)) -lt 20 ] || fail "the idle daemon used $((used * 1000 / hz)) ms of CPU in 2 s"
umount "$mnt"
echo PASS
