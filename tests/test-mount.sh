#!/bin/bash
# Mount and unmount: what a user sees in the mount, and a clean exit.
# It swaps nothing and attaches no loop device: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_root
requires_fuse

dir=$(make_tempdir)
mnt=$dir/mnt
mount_vramfs "$mnt" "size=128M"
pid=$(daemon_pid "$mnt")
[ -n "$pid" ] || fail "no daemon found for $mnt"

info "the mount holds the data file and .stats"
# shellcheck disable=SC2012 # what ls shows a user is the point
[ "$(ls -A "$mnt" | sort | tr '\n' ' ')" = ".stats swapfile " ] || fail "unexpected entries: $(ls -A "$mnt")"
[ "$(stat -c '%s %a %U' "$mnt/swapfile")" = "134217728 600 root" ] ||
  fail "swapfile is $(stat -c '%s %a %U' "$mnt/swapfile")"
[ "$(stat -c %b "$mnt/swapfile")" = 0 ] || fail "a new file holds data: $(stat -c %b "$mnt/swapfile") blocks"
grep -q " $mnt fuse.vramfs " /proc/mounts || fail "not a fuse.vramfs mount"

info ".stats has every counter"
for key in backend device size_bytes data_bytes vram_bytes reads writes read_bytes write_bytes \
  discards cache_hits cache_misses flushes errors; do
  [ -n "$(stat_value "$mnt" $key)" ] || fail ".stats lacks $key"
done
[ "$(stat_value "$mnt" backend)" = "$VRAMFS_TEST_BACKEND" ] || fail "wrong backend in .stats"
[ "$(stat_value "$mnt" size_bytes)" = 134217728 ] || fail "wrong size_bytes"

info ".stats read by many readers at once, as status and monitors do"
# Each open renders its own text, and each close frees it: a reply must not
# still use that text when the close is served (the sanitizer build aborted
# on it).  The daemon must answer every reader and still run.
readers=()
for ((r = 0; r < 4; r++)); do
  "$VRAMFS_IO" reread "$mnt/.stats" 5000 &
  readers+=($!)
done
for reader in "${readers[@]}"; do wait "$reader" || fail "a .stats reader failed"; done
kill -0 "$pid" 2>/dev/null || fail "the daemon died while .stats was read"
[ -n "$(stat_value "$mnt" reads)" ] || fail ".stats no longer answers"

info "statfs reports the size and the free space"
[ "$(stat -f -c '%S %b %f' "$mnt")" = "65536 2048 2048" ] || fail "statfs: $(stat -f -c '%S %b %f' "$mnt")"

info "the size is fixed and nothing else can be created"
if truncate -s 1G "$mnt/swapfile" 2>/dev/null; then fail "truncate changed the size"; fi
truncate -s 128M "$mnt/swapfile" || fail "truncating to the same size failed"
if touch "$mnt/other" 2>/dev/null; then fail "created a file"; fi
if mkdir "$mnt/sub" 2>/dev/null; then fail "created a directory"; fi
if rm -f "$mnt/swapfile" 2>/dev/null; then fail "removed the data file"; fi
if (echo x >"$mnt/.stats") 2>/dev/null; then fail ".stats is writable"; fi
if ln -s swapfile "$mnt/link" 2>"$dir/err"; then fail "created a symlink"; fi
grep -q "Operation not permitted" "$dir/err" || fail "ln -s said: $(cat "$dir/err")"

info "the data file stays mode 0600, owned by whoever mounted"
if chmod 0644 "$mnt/swapfile" 2>/dev/null; then fail "chmod 0644 succeeded"; fi
if chown nobody "$mnt/swapfile" 2>/dev/null; then fail "chown nobody succeeded"; fi
chmod 0600 "$mnt/swapfile" || fail "chmod to the mode it has failed"
touch "$mnt/swapfile" || fail "touch (utimes) failed"
[ "$(stat -c '%a %U' "$mnt/swapfile")" = "600 root" ] || fail "swapfile is $(stat -c '%a %U' "$mnt/swapfile")"

info "df -i shows no inode counts, not a full filesystem"
[ "$(df --output=ipcent "$mnt" | tail -n 1 | tr -d ' ')" = "-" ] ||
  fail "df -i says: $(df -i "$mnt" | tail -n 1)"
[ "$(stat -c %s "$mnt/swapfile")" = 134217728 ] || fail "the size changed"

info "umount makes the daemon exit"
# Within 5 s.  A sanitizer build (memory_locked 0) ends slowly (its leak
# check runs at exit), and beside the other tests it once took more than
# 5 s: 60 s there.
tenths=50
[ "$(stat_value "$mnt" memory_locked)" = 1 ] || tenths=600
umount "$mnt"
for ((i = 0; i < tenths; i++)); do kill -0 "$pid" 2>/dev/null || break; nap 0.1; done
if kill -0 "$pid" 2>/dev/null; then fail "the daemon still runs $((tenths / 10)) s after umount"; fi

info "mount.fuse3, as mount -t fuse.vramfs and /etc/fstab run it"
# mount(8) runs mount.fuse3 with a clean PATH, which finds an installed
# vramfs; here mount.fuse3 is run directly with the built one on PATH.
if command -v mount.fuse3 >/dev/null; then
  PATH=$(dirname "$VRAMFS"):$PATH mount.fuse3 vramfs "$mnt" -t vramfs \
    -o "backend=$VRAMFS_TEST_BACKEND,size=64M,defaults"
  register mount "$mnt"
  [ "$(stat -c %s "$mnt/swapfile")" = 67108864 ] || fail "mount.fuse3 gave the wrong size"
  grep -q "^vramfs $mnt fuse.vramfs " /proc/mounts || fail "the source is not shown as vramfs"
  umount "$mnt"
else
  echo "note: mount.fuse3 not installed; mount -t fuse.vramfs not tried"
fi
