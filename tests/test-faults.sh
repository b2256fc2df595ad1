#!/bin/bash
# Device failures, injected with VRAMFS_INJECT_FAULT: an I/O error for the
# request that met it, counted, and nothing lost; a lost device answers every
# request with an error at once and never hangs.  And a failed read of
# /dev/fuse, retried.
# It swaps nothing and attaches no loop device: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_root
requires_fuse

dir=$(make_tempdir)
mnt=$dir/mnt
file=$mnt/swapfile

info "one failed copy: EIO for that request, counted, and the data is intact"
# 8 MiB of 64 KiB blocks through a 1 MiB cache: the fill and fsync copy each
# of the 128 blocks to the store exactly once, so copy 138 is the 10th block
# that the read back fetches.
VRAMFS_INJECT_FAULT=copy:138 mount_vramfs "$mnt" "size=64M,cache=1M"
"$VRAMFS_IO" fill "$file" 0 $((8 << 20)) 4
if dd if="$file" of=/dev/null bs=1M count=8 iflag=direct status=none 2>"$dir/err"; then
  fail "no read failed"
fi
grep -q "Input/output error" "$dir/err" || fail "the failed read said: $(cat "$dir/err")"
[ "$(stat_value "$mnt" errors)" = 1 ] || fail "errors is $(stat_value "$mnt" errors), expected 1"
"$VRAMFS_IO" verify "$file" 0 $((8 << 20)) 4
umount "$mnt"

info "a lost device: every copy fails from then on, quickly, and unmount works"
VRAMFS_INJECT_FAULT=sticky:20 mount_vramfs "$mnt" "size=64M,cache=1M"
status=0
timeout 60 "$VRAMFS_IO" fill "$file" 0 $((16 << 20)) 5 2>"$dir/err" || status=$?
[ "$status" -ne 124 ] || fail "writing to a lost device hung"
[ "$status" -ne 0 ] || fail "writing 16 MiB through a 1 MiB cache to a lost device succeeded"
grep -q "Input/output error" "$dir/err" || fail "the failed write said: $(cat "$dir/err")"
timeout 20 dd if="$file" of=/dev/null bs=1M count=16 iflag=direct status=none 2>/dev/null &&
  fail "reading from a lost device succeeded"
[ "$(stat_value "$mnt" errors)" -gt 0 ] || fail "no errors counted"
timeout 20 umount "$mnt" || fail "unmounting after a lost device failed or hung"

info "a stalled GPU: past copy_timeout the store fails with a log line, and nothing hangs"
# In the foreground, for its log; the first wait for copies never ends.
VRAMFS_INJECT_FAULT=stall:1 "$VRAMFS" "$mnt" -f \
  -o "backend=$VRAMFS_TEST_BACKEND,size=64M,cache=1M,copy_timeout=1" 2>"$dir/stall.log" &
daemon=$!
register mount "$mnt"
for _ in $(seq 100); do [ -e "$file" ] && break; nap 0.1; done
start=$(date +%s)
if timeout 30 dd if=/dev/urandom of="$file" bs=64K count=32 oflag=direct conv=notrunc,fsync \
  status=none 2>/dev/null; then
  fail "writing and fsyncing through a stalled store succeeded"
fi
[ $(($(date +%s) - start)) -lt 20 ] || fail "the stalled store took $(($(date +%s) - start)) s to fail"
grep -q "did not finish within 1 s" "$dir/stall.log" || fail "no log line about the stall: $(cat "$dir/stall.log")"
timeout 10 dd if="$file" of=/dev/null bs=64K count=1 iflag=direct status=none 2>/dev/null &&
  fail "a read from the failed store succeeded"
timeout 20 umount "$mnt" || fail "unmounting after a stall failed or hung"
wait "$daemon" || true

info "a read error on /dev/fuse is logged and retried: the daemon never exits under its mount"
# The third read of /dev/fuse fails with EIO (tests/fail_fuse_read.cpp).  A
# sanitizer's runtime would insist on coming first; here it comes second.
[ -f "$FAIL_FUSE_READ_LIB" ] || fail "no $FAIL_FUSE_READ_LIB: make check builds it"
LD_PRELOAD=$FAIL_FUSE_READ_LIB FAIL_FUSE_READ_AT=3 \
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
  "$VRAMFS" "$mnt" -f \
  -o "backend=$VRAMFS_TEST_BACKEND${VRAMFS_TEST_TRANSPORT:+,transport=$VRAMFS_TEST_TRANSPORT},size=64M" \
  >"$dir/fuse_read.log" 2>&1 &
register mount "$mnt"
answers() { [ -n "$(stat_value "$mnt" pid 2>/dev/null)" ]; }
wait_for 10 answers || fail "the mount does not answer: $(cat "$dir/fuse_read.log")"
"$VRAMFS_IO" fill "$file" 0 $((4 << 20)) 7
"$VRAMFS_IO" verify "$file" 0 $((4 << 20)) 7
[ -n "$(stat_value "$mnt" pid)" ] || fail "the daemon stopped answering after a read error"
# The failed read happened, and was logged and retried.
grep -q "reading /dev/fuse failed: Input/output error; retrying" "$dir/fuse_read.log" ||
  fail "the failed read is not in the log: $(cat "$dir/fuse_read.log")"
umount "$mnt"
