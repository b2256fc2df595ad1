#!/bin/bash
# The daemon's rules for a swap path: locked memory, a fixed pool of threads
# that all carry IO_FLUSHER, and no exit while a loop device holds the file.
# It attaches a loop device, but pushes no process into swap: it runs
# beside others that do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_root
requires_fuse
requires_loop

dir=$(make_tempdir)
mnt=$dir/mnt
mkdir -p "$mnt"

# In the foreground, so that its log lines can be read.
"$VRAMFS" "$mnt" -f -o "backend=$VRAMFS_TEST_BACKEND,size=128M,threads=6" 2>"$dir/log" &
pid=$!
register mount "$mnt"
for _ in $(seq 100); do [ -e "$mnt/swapfile" ] && break; nap 0.1; done
[ -e "$mnt/swapfile" ] || fail "the mount did not come up: $(cat "$dir/log")"

info "memory is locked"
if [ "$(stat_value "$mnt" memory_locked)" = 1 ]; then
  locked=$(awk '/^VmLck:/ { print $2 }' "/proc/$pid/status")
  [ "$locked" -gt 0 ] || fail "memory_locked is 1 but VmLck is 0"
else
  # The one documented exception: sanitizers reserve memory that cannot be locked.
  grep -q "sanitizer build" "$dir/log" || fail "memory is not locked: $(cat "$dir/log")"
  echo "note: sanitizer build, memory not locked (as documented)"
fi

info "a fixed pool of threads, never reaped"
threads=$(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 | wc -l)
[ "$threads" -ge 8 ] || fail "only $threads threads for 6 workers, write-back and signals"
"$VRAMFS_IO" random "$mnt/swapfile" 500 $((1 << 20)) 1 >/dev/null
sleep 1
[ "$(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 | wc -l)" -eq "$threads" ] || fail "the thread count changed under load"

info "IO_FLUSHER on every thread"
if [ "$(stat_value "$mnt" io_flusher)" = 1 ]; then
  # PF_MEMALLOC_NOIO (0x80000) and PF_LOCAL_THROTTLE (0x100000) in field 9.
  for task in /proc/"$pid"/task/*; do
    flags=$(awk '{ print $9 }' "$task/stat")
    [ $((flags & 0x180000)) -eq $((0x180000)) ] ||
      fail "thread $(basename "$task") lacks IO_FLUSHER (flags $(printf %x "$flags"))"
  done
  [ "$(cat "/proc/$pid/oom_score_adj")" = -1000 ] || fail "oom_score_adj is not -1000"
else
  grep -q "PR_SET_IO_FLUSHER" "$dir/log" || fail "io_flusher is 0 and the log does not say why"
  echo "note: this environment withholds CAP_SYS_RESOURCE, so IO_FLUSHER and oom_score_adj"
  echo "      could not be set; checked that the daemon says so instead"
fi

info "SIGTERM is refused while a loop device holds the file"
loop=$(attach_loop "$mnt/swapfile")
kill -TERM "$pid"
sleep 1
kill -0 "$pid" 2>/dev/null || fail "the daemon exited on SIGTERM under a loop device: $(cat "$dir/log")"
mountpoint -q "$mnt" || fail "the mount went away"
grep -q "refusing SIGTERM" "$dir/log" || fail "no log line about the refused SIGTERM"
kill -INT "$pid"
kill -HUP "$pid"
sleep 0.5
kill -0 "$pid" 2>/dev/null || fail "the daemon exited on SIGINT/SIGHUP under a loop device: $(cat "$dir/log")"
[ "$(grep -c refusing "$dir/log")" -eq 3 ] || fail "not every signal was refused in the log"
if umount "$mnt" 2>/dev/null; then fail "umount succeeded while the loop device holds the file"; fi
"$VRAMFS_IO" fill "$loop" 0 $((4 << 20)) 5 direct
"$VRAMFS_IO" verify "$mnt/swapfile" 0 $((4 << 20)) 5

info "once the loop device is gone, SIGTERM unmounts and exits cleanly"
losetup -d "$loop"
for _ in $(seq 50); do [ "$(stat_value "$mnt" open_count)" = 0 ] && break; nap 0.1; done
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
[ "$status" -eq 0 ] || fail "the daemon exited with status $status: $(cat "$dir/log")"
if mountpoint -q "$mnt"; then fail "still mounted after SIGTERM"; fi
grep -q "unmounted" "$dir/log" || fail "no log line about the unmount"

info "a start abandoned by its caller (Ctrl-C on vramfs) leaves nothing mounted"
# The daemon mounts, then waits 1.5 s before it reports; its caller is
# killed meanwhile (as Ctrl-C kills it on a terminal; a background job of a
# script ignores SIGINT, so SIGTERM here), and the report finds nobody.
VRAMFS_INJECT_FAULT=slow_start:1500 "$VRAMFS" "$mnt" -o "backend=$VRAMFS_TEST_BACKEND,size=64M" \
  2>"$dir/abandoned" &
caller=$!
for _ in $(seq 100); do grep -q " $mnt fuse.vramfs " /proc/mounts && break; nap 0.05; done
grep -q " $mnt fuse.vramfs " /proc/mounts || fail "the daemon never mounted: $(cat "$dir/abandoned")"
kill -TERM "$caller"
wait "$caller" || true
for _ in $(seq 60); do grep -q " $mnt fuse.vramfs " /proc/mounts || break; nap 0.1; done
if grep -q " $mnt fuse.vramfs " /proc/mounts; then
  ls "$mnt" >/dev/null 2>&1 || echo "(and the mount is dead)"
  fail "an interrupted start left $mnt mounted"
fi
"$VRAMFS" "$mnt" -o "backend=$VRAMFS_TEST_BACKEND,size=64M" || fail "the mountpoint cannot be used again"
umount "$mnt"

info "without /dev/log, the daemon's messages reach the kernel log"
if [ -e /dev/log ]; then
  echo "note: /dev/log exists here: the fallback is not exercised"
elif ! kernel_log >/dev/null; then
  unchecked "the kernel log cannot be read here: the fallback"
else
  "$VRAMFS" "$mnt" -o "backend=$VRAMFS_TEST_BACKEND,size=64M"
  pid=$(stat_value "$mnt" pid)
  # The newest line is there at once, not when something else logs: each
  # record ends with a newline, without which the kernel holds it back.
  logged() { kernel_log | grep -q "vramfs\[$pid\]: serving $mnt"; }
  wait_for 3 logged || fail "the daemon's last line is not in the kernel log while it runs"
  umount "$mnt"
  for _ in $(seq 30); do kernel_log | grep -q "vramfs\[$pid\]: .*unmounted" && break; nap 0.1; done
  kernel_log | grep -q "vramfs\[$pid\]: serving $mnt" || fail "the daemon's start is not in the kernel log"
fi
