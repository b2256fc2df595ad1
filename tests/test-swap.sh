#!/bin/bash
# The whole path: vramfs -> loop device with direct I/O -> mkswap -> swapon,
# and a process in a memory cgroup that works on four times its limit, with
# every page verified after its trip through swap.  VRAMFS_SWAP_LIMIT_MIB
# (default 64) is that limit, VRAMFS_SWAP_PASSES (default 3) how many times
# the process goes over its memory.
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

dir=$(make_tempdir)
mnt=$dir/mnt
limit_mib=${VRAMFS_SWAP_LIMIT_MIB:-64}
work_mib=$((4 * limit_mib))
passes=${VRAMFS_SWAP_PASSES:-3}

mount_vramfs "$mnt" "size=$((2 * work_mib))M,cache=16M"
loop=$(attach_loop "$mnt/swapfile")
info "loop device $loop"
[ "$(cat "/sys/block/$(basename "$loop")/loop/dio")" = 1 ] || fail "direct I/O did not take on $loop"

enable_swap "$loop" --priority 32000
grep -q "^$loop " /proc/swaps || fail "$loop is not in /proc/swaps"
[ "$(stat_value "$mnt" open_count)" -ge 1 ] || fail "the data file is not open"

cg=$(make_memory_cgroup "$limit_mib")
info "a process limited to ${limit_mib} MiB works on ${work_mib} MiB, $passes passes"
writes_before=$(stat_value "$mnt" write_bytes)
run_in_cgroup "$cg" "$VRAMFS_IO" swapper "$work_mib" "$passes" 11 || fail "pages came back wrong from swap"

written=$(( $(stat_value "$mnt" write_bytes) - writes_before ))
read=$(stat_value "$mnt" read_bytes)
info "swapped out $((written >> 20)) MiB, swapped in $((read >> 20)) MiB through vramfs"
[ "$written" -ge $(( (work_mib - limit_mib) << 20 )) ] ||
  fail "only $((written >> 20)) MiB reached vramfs: the process did not swap"
[ "$read" -ge $(( (work_mib - limit_mib) << 20 )) ] || fail "only $((read >> 20)) MiB read back"
[ "$(stat_value "$mnt" errors)" = 0 ] || fail "vramfs counted errors"
grep -E "cache_hits|cache_misses|flushes" "$mnt/.stats"

info "swapoff brings every page back; then the loop device and the mount go"
swapoff "$loop"
losetup -d "$loop"
umount "$mnt"
