#!/bin/bash
# Many threads of random writes, reads and discards at once, against a small
# cache so that lines are evicted and written back all the time; every read
# is checked against a shadow copy.  VRAMFS_STRESS_SECONDS makes it longer.
# It swaps nothing and attaches no loop device: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_root
requires_fuse

seconds=${VRAMFS_STRESS_SECONDS:-10}
dir=$(make_tempdir)
mnt=$dir/mnt

for mode in "cache=1M,block=64K" "cache=1M,block=4K,lazy"; do
  info "stress for ${seconds}s with $mode"
  mount_vramfs "$mnt" "size=128M,$mode"
  "$VRAMFS_IO" stress "$mnt/swapfile" 8 "$seconds" 3
  [ "$(stat_value "$mnt" errors)" = 0 ] || fail "errors counted: $(stat_value "$mnt" errors)"
  [ "$(stat_value "$mnt" flushes)" -gt 0 ] || fail "nothing was written back: the cache was not stressed"
  umount "$mnt"
done
