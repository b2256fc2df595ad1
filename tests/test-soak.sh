#!/bin/bash
# A swap soak: several memory-limited processes swap through one vramfs at
# once for a set time, each verifying every page on every pass.  Passes when
# every process verified all its passes, vramfs counted no errors, and the
# kernel logged no I/O error and no hung task meanwhile.
#
# VRAMFS_SOAK_SECONDS (default 20) and VRAMFS_SOAK_PROCS (default 3) make
# it longer or wider; tests/run-gpu runs it on the GPU with backend=cuda.
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

seconds=${VRAMFS_SOAK_SECONDS:-20}
procs=${VRAMFS_SOAK_PROCS:-3}
limit_mib=32
work_mib=96
dir=$(make_tempdir)
mnt=$dir/mnt

mount_vramfs "$mnt" "size=$((procs * work_mib + 256))M,cache=16M"
loop=$(attach_loop "$mnt/swapfile")
enable_swap "$loop" --priority 32000

# Only what the kernel logs from here on counts.  Without access to the
# kernel log (dmesg_restrict, no /dev/kmsg) that part of the check cannot
# be made, and the test says so loudly.
log_readable=1
kernel_log >/dev/null || log_readable=0
log_before=$(kernel_log | wc -l)

info "$procs processes, each $work_mib MiB in a $limit_mib MiB cgroup, for $seconds s"
pids=()
for ((p = 0; p < procs; p++)); do
  spawn_in_cgroup "$(make_memory_cgroup $limit_mib)" "$dir/soak.$p" \
    "$VRAMFS_IO" soak $work_mib "$seconds" $((100 + p))
  pids+=("$SPAWNED")
done
peak=0
while :; do
  running=0
  for pid in "${pids[@]}"; do alive "$pid" && running=1; done
  used=$(swap_used_kib "$loop")
  [ "${used:-0}" -le "$peak" ] || peak=$used
  [ "$running" = 1 ] || break
  sleep 1
done
all_verified "$dir/soak" "${pids[@]}" || fail "a soak process failed"

written=$(stat_value "$mnt" write_bytes)
read=$(stat_value "$mnt" read_bytes)
info "peak swap use $((peak / 1024)) MiB; $((written >> 20)) MiB written to and $((read >> 20)) MiB read from vramfs"
[ "$peak" -ge $((procs * (work_mib - limit_mib) * 1024 / 2)) ] ||
  fail "peak swap use was only $((peak / 1024)) MiB: the processes hardly swapped"
[ "$(stat_value "$mnt" errors)" = 0 ] || fail "vramfs counted $(stat_value "$mnt" errors) errors"

new_log=$(kernel_log | tail -n +"$((log_before + 1))" || true)
if [ "$log_readable" = 0 ]; then
  unchecked "the kernel log (dmesg, /dev/kmsg) cannot be read here: hung tasks and I/O errors"
elif grep -E "blocked for more than|hung_task|I/O error|Read-error|Write-error" <<<"$new_log"; then
  fail "the kernel logged the lines above during the soak"
else
  echo "kernel log: no hung task, no I/O error during the soak"
fi

swapoff "$loop"
losetup -d "$loop"
umount "$mnt"
echo PASS
