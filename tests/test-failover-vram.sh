#!/bin/bash
# Crash survival on a GPU: what was written to VRAM before the server was
# killed reads back after the takeover, byte for byte, and the GPU's free
# memory is what it was: the new server maps the same memory (which the
# keeper kept alive through its descriptors), it allocates none twice, and
# the dead one's leaks nothing.  Skipped where there is no GPU.
: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_root
requires_fuse
requires_gpu
"$VRAMFS" --version | grep -q cuda || skip_optional "this vramfs was built without CUDA"

dir=$(make_tempdir)
mnt=$dir/mnt
file=$mnt/swapfile
free_mib() { nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits -i 0 | tr -d ' '; }

for mode in reserved lazy; do
  extra=
  [ "$mode" = reserved ] || extra=,lazy
  info "$mode: 2 GiB in VRAM through a failover mount, the server killed, all of it read back"
  free_before_mount=$(free_mib)
  mount_vramfs "$mnt" "backend=cuda,size=4G,cache=16M,failover$extra"
  # Past the cache: fsync puts every byte in VRAM.
  "$VRAMFS_IO" fill "$file" $((256 << 20)) $((2 << 30)) 17 direct  # and fsync
  [ "$(stat_now "$mnt" dirty_bytes)" -le $((16 << 20)) ] || fail "dirty_bytes $(stat_now "$mnt" dirty_bytes)"
  held=$(stat_now "$mnt" vram_bytes)
  sleep 1
  free_before=$(free_mib)
  server=$(stat_now "$mnt" pid)
  kill -KILL "$server"
  for _ in $(seq 100); do
    now=$(stat_now "$mnt" pid)
    [ -n "$now" ] && [ "$now" != "$server" ] && break
    nap 0.1
  done
  [ "$(stat_now "$mnt" restarts)" = 1 ] || fail "no takeover after the kill"
  info "took over in $(stat_now "$mnt" last_takeover_ms) ms; VRAM held: $((held >> 20)) MiB before, $(( $(stat_now "$mnt" vram_bytes) >> 20 )) MiB after"
  [ "$(stat_now "$mnt" vram_bytes)" = "$held" ] || fail "the new server holds $(stat_now "$mnt" vram_bytes) bytes of VRAM, not $held"
  "$VRAMFS_IO" verify "$file" $((256 << 20)) $((2 << 30)) 17 direct
  "$VRAMFS_IO" zeros "$file" 0 $((1 << 20))
  sleep 1
  free_after=$(free_mib)
  info "GPU free memory: $free_before_mount MiB before the mount, $free_before MiB before the kill, $free_after MiB after the takeover"
  # A new CUDA context replaces the dead one's; the data's VRAM (2 GiB or
  # more) must be neither freed nor taken twice.
  diff=$((free_after - free_before))
  [ "${diff#-}" -lt 512 ] || fail "free VRAM moved by $diff MiB across the takeover"
  [ "$(stat_now "$mnt" errors)" = 0 ] || fail "vramfs counted errors"
  umount "$mnt"
  for _ in $(seq 100); do [ "$(free_mib)" -ge $((free_before_mount - 256)) ] && break; nap 0.1; done
  [ "$(free_mib)" -ge $((free_before_mount - 256)) ] ||
    fail "after the unmount the GPU has $(free_mib) MiB free, against $free_before_mount before: VRAM leaked"
done
echo PASS
