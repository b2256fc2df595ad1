#!/bin/bash
# Bounded memory: the daemon's resident memory is its store (for the host
# backend), its cache and a fixed overhead, however much I/O passes through.
# VRAMFS_STRESS_SECONDS (default 8) is how long each stress run lasts.
# It swaps nothing and attaches no loop device: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_root
requires_fuse

dir=$(make_tempdir)
mnt=$dir/mnt
seconds=${VRAMFS_STRESS_SECONDS:-8}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

mount_vramfs "$mnt" "size=256M,cache=16M,threads=8"
pid=$(daemon_pid "$mnt")
[ -n "$pid" ] || fail "no daemon for $mnt"
# The sanitizer build (memory_locked 0) keeps freed memory in quarantine.
[ "$(stat_value "$mnt" memory_locked)" = 1 ] || skip_optional "sanitizer build: resident memory is not bounded there"
before=$(rss_kib "$pid")
info "resident after mount: $((before >> 10)) MiB"
"$VRAMFS_IO" stress "$mnt/swapfile" 8 "$seconds" 21
"$VRAMFS_IO" random "$mnt/swapfile" 2000 $((1 << 20)) 22
"$VRAMFS_IO" stress "$mnt/swapfile" 8 "$(((seconds + 1) / 2))" 23
after=$(rss_kib "$pid")
info "resident after $(( $(stat_value "$mnt" read_bytes) + $(stat_value "$mnt" write_bytes) >> 20 )) MiB of I/O: $((after >> 10)) MiB"
# Generous: libfuse's and libc's own buffers may settle after the first
# requests, but nothing grows with the amount of I/O.
[ $((after - before)) -lt $((32 << 10)) ] ||
  fail "resident memory grew by $(((after - before) >> 10)) MiB under I/O"
umount "$mnt"

info "lazy: resident memory follows the data held, not the I/O done"
mount_vramfs "$mnt" "size=256M,cache=16M,threads=8,lazy"
pid=$(daemon_pid "$mnt")
base=$(rss_kib "$pid")
"$VRAMFS_IO" stress "$mnt/swapfile" 8 "$seconds" 24
"$VRAMFS_IO" punch "$mnt/swapfile" 0 $((256 << 20))
held=$(stat_value "$mnt" held_bytes)
now=$(rss_kib "$pid")
info "resident $((base >> 10)) MiB at mount, $((now >> 10)) MiB after stress and a full discard (held: $((held >> 20)) MiB)"
[ "$held" = 0 ] || fail "$held bytes still held after discarding everything"
[ $((now - base)) -lt $((32 << 10)) ] || fail "resident memory grew by $(((now - base) >> 10)) MiB"
