#!/bin/bash
# Crash survival (-o failover): memory-limited processes swap through one
# vramfs while its server is killed with SIGKILL again and again, at random
# moments, each time once the standby server is ready to take over.
# Passes when every process verified every page of every pass (no page
# lost, no SIGBUS, nobody killed), each takeover came within a second,
# .stats counts every restart and no error, and the kernel logged no I/O
# error on the swap's loop device.  It prints the takeovers' times: from
# the death to the successor serving, and to its first answer.
#
# VRAMFS_FAILOVER_KILLS (default 5), VRAMFS_FAILOVER_PROCS (default 3) and
# VRAMFS_FAILOVER_SECONDS (default 25) make it harder; tests/run-gpu runs it
# on the GPU with backend=cuda, 8 processes and 20 kills.
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

kill_count=${VRAMFS_FAILOVER_KILLS:-5}
procs=${VRAMFS_FAILOVER_PROCS:-3}
seconds=${VRAMFS_FAILOVER_SECONDS:-25}
limit_mib=32
work_mib=$((4 * limit_mib))
dir=$(make_tempdir)
mnt=$dir/mnt

mount_vramfs "$mnt" "size=$((procs * work_mib + 256))M,cache=16M,failover"
[ "$(stat_value "$mnt" failover)" = 1 ] || fail ".stats does not say failover 1"
keeper=$(stat_value "$mnt" keeper_pid)
alive "$keeper" || fail "no keeper process ($keeper)"
loop=$(attach_loop "$mnt/swapfile")
enable_swap "$loop" --priority 32000

log_readable=1
kernel_log >/dev/null || log_readable=0
log_before=$(kernel_log | wc -l)

# stat_now reads .stats with a deadline: while no server runs, a read
# waits for the next.

info "$procs processes, each $work_mib MiB in a $limit_mib MiB cgroup, for $seconds s; $kill_count SIGKILLs of the server"
pids=()
for ((p = 0; p < procs; p++)); do
  spawn_in_cgroup "$(make_memory_cgroup $limit_mib)" "$dir/soak.$p" \
    "$VRAMFS_IO" soak $work_mib "$seconds" $((200 + p))
  pids+=("$SPAWNED")
done

# Let the processes fill their memory and push it out first.
sleep 3
worst_ms=0
takeovers_us=() pauses_ms=()
standby_settled() { local s; s=$(stat_now "$mnt" standby); [ "$s" = ready ] || [ "$s" = off ] || [ "$s" = unavailable ]; }
for ((k = 1; k <= kill_count; k++)); do
  wait_for 30 standby_settled || fail "kill $k: the standby server is still $(stat_now "$mnt" standby) after 30 s"
  server=$(stat_now "$mnt" pid)
  if [ -z "$server" ] || ! alive "$server"; then fail "kill $k: no server to kill"; fi
  [ "$server" != "$keeper" ] || fail "kill $k: .stats names the keeper as the server"
  used=$(swap_used_kib "$loop")
  kill -KILL "$server"
  start=$(date +%s%N)
  # Swap resumes when a new server answers: .stats is served by it.
  until [ "$(stat_now "$mnt" restarts)" = "$k" ] && [ "$(stat_now "$mnt" pid)" != "$server" ]; do
    [ $(( ($(date +%s%N) - start) / 1000000 )) -lt 5000 ] ||
      fail "kill $k: no server took over within 5 s"
    nap 0.02
  done
  took=$(stat_now "$mnt" last_takeover_ms)
  takeovers_us+=("$(stat_now "$mnt" last_takeover_us)")
  pauses_ms+=("$(stat_now "$mnt" last_pause_ms)")
  info "kill $k: server $server killed with $((${used:-0} / 1024)) MiB in swap; a new one took over in $took ms (${takeovers_us[-1]} us; first answer ${pauses_ms[-1]} ms after the death)"
  [ "$took" -lt 1000 ] || fail "kill $k: the takeover took $took ms, not under a second"
  [ "$took" -le "$worst_ms" ] || worst_ms=$took
  alive "$keeper" || fail "kill $k: the keeper died"
  # A random moment for the next one: mid-swap-in, mid-write-back; never
  # sooner than a crash loop (docs/design.md).
  sleep "$((RANDOM % 2)).$((RANDOM % 7 + 3))$((RANDOM % 10))"
done

all_verified "$dir/soak" "${pids[@]}" || fail "a swapping process lost pages or was killed"

[ "$(stat_value "$mnt" restarts)" = "$kill_count" ] ||
  fail ".stats counts $(stat_value "$mnt" restarts) restarts, not $kill_count"
[ "$(stat_value "$mnt" errors)" = 0 ] || fail "vramfs counted $(stat_value "$mnt" errors) errors"
info "$kill_count kills, $kill_count restarts, 0 errors; the slowest takeover took $worst_ms ms"
percentiles() { sort -n | awk '{ v[NR] = $1 } END { i50 = int((NR + 1) / 2); i99 = int(NR * 0.99 + 0.999); if (i99 < 1) i99 = 1; printf "p50 %s, p99 %s, max %s\n", v[i50], v[i99], v[NR] }'; }
info "takeover (death to serving, us): $(printf '%s\n' "${takeovers_us[@]}" | percentiles)"
info "first answer after the death (ms): $(printf '%s\n' "${pauses_ms[@]}" | percentiles)"

new_log=$(kernel_log | tail -n +"$((log_before + 1))" || true)
if [ "$log_readable" = 0 ]; then
  unchecked "the kernel log (dmesg, /dev/kmsg) cannot be read here: I/O errors on $loop"
elif grep -E "(I/O error|Read-error|Write-error).*${loop#/dev/}|blocked for more than" <<<"$new_log"; then
  fail "the kernel logged the lines above: the swap saw errors"
fi

info "swapoff reads every page back, served by the last server"
swapoff "$loop"
losetup -d "$loop"
umount "$mnt"
for _ in $(seq 50); do alive "$keeper" || break; nap 0.1; done
alive "$keeper" && fail "the keeper still runs after the unmount"
echo PASS
