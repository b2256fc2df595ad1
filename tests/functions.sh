# Helpers for the integration tests; sourced by every tests/test-*.sh.
#
# Each test mounts vramfs, attaches loop devices and enables swap for real.
# Everything it creates is registered here and torn down by an EXIT trap in
# the safe order (swapoff, losetup -d, umount), even when the test fails.

set -eu

# One integration test at a time on this machine, also across build trees:
# a swap device takes any cgroup's pages, not only its own test's.  flock -o
# keeps the lock in flock itself, so no daemon a test starts inherits it.
if [ -z "${VRAMFS_TEST_LOCKED:-}" ] && command -v flock >/dev/null && [ -d /run/lock ] &&
  [ -w /run/lock ]; then
  export VRAMFS_TEST_LOCKED=1
  exec flock -o /run/lock/vramfs-tests.lock bash "$0" "$@"
fi

: "${VRAMFS:=vramfs}"
: "${VRAMFS_IO:=vramfs-io}"
: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
info() { echo "--- $*"; }

requires_root() { [ "$(id -u)" = 0 ] || skip "needs root (mounts, loop devices, swap)"; }
requires_fuse() {
  [ -c /dev/fuse ] || skip "no /dev/fuse"
  grep -qw fuse /proc/filesystems || modprobe fuse 2>/dev/null || skip "the fuse module is not loaded"
}
requires_loop() {
  command -v losetup >/dev/null || skip "no losetup (util-linux)"
  losetup -f >/dev/null 2>&1 || skip "no free loop device"
}
requires_swap() {
  command -v mkswap >/dev/null && command -v swapon >/dev/null || skip "no mkswap/swapon"
}
requires_gpu() {
  command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || skip "no NVIDIA GPU here"
}

# The backend the tests use: host unless VRAMFS_TEST_BACKEND says otherwise
# (tests/run-gpu sets cuda).
: "${VRAMFS_TEST_BACKEND:=host}"

# What the test created, one "KIND PATH" a line.  A file rather than shell
# variables, so that helpers called as $(helper ...) register too.
_registry=$(mktemp /tmp/vramfs-test-registry.XXXXXX)
register() { echo "$1 $2" >>"$_registry"; }

# registered KIND: what was registered as KIND, newest first.
registered() {
  awk -v k="$1" '$1 == k { sub(/^[^ ]* /, ""); print }' "$_registry" | tac
}

# Whether PATH is a mount point, from the mount table: mountpoint(1) needs
# stat(), which fails on a FUSE mount whose daemon died.
is_mounted() {
  awk -v p="$1" '{ gsub(/\\040/, " ", $5) } $5 == p { f = 1 } END { exit !f }' /proc/self/mountinfo
}

# The safe order: swapoff, losetup -d, umount; then cgroups and files.
# A test that starts something of its own stops it in cleanup_first, which
# cleanup runs before anything else (a test's own EXIT trap would run under
# set -e, and a failing command there would skip the cleanup).
cleanup() {
  local status=$? item
  set +e
  if declare -F cleanup_first >/dev/null; then cleanup_first; fi
  while read -r item; do [ -n "$item" ] && swapoff "$item" 2>/dev/null; done < <(registered swap)
  while read -r item; do [ -n "$item" ] && losetup -d "$item" 2>/dev/null; done < <(registered loop)
  while read -r item; do
    if [ -n "$item" ] && is_mounted "$item"; then
      umount "$item" 2>/dev/null || { sleep 1; umount "$item" 2>/dev/null; } ||
        umount -l "$item"
    fi
  done < <(registered mount)
  while read -r item; do
    [ -n "$item" ] || continue
    # Kill what is left in the cgroup before removing it.
    [ -f "$item/cgroup.procs" ] && xargs -r kill -9 <"$item/cgroup.procs" 2>/dev/null
    sleep 0.2
    rmdir "$item" 2>/dev/null
  done < <(registered cgroup)
  while read -r item; do [ -n "$item" ] && rm -rf "$item"; done < <(registered dir)
  rm -f "$_registry"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make_tempdir() {
  local dir
  dir=$(mktemp -d /tmp/vramfs-test.XXXXXX)
  register dir "$dir"
  echo "$dir"
}

# mount_vramfs MOUNTPOINT OPTIONS: mounts and registers the unmount.
mount_vramfs() {
  local mnt=$1 opts=$2
  mkdir -p "$mnt"
  register mount "$mnt"
  "$VRAMFS" "$mnt" -o "backend=$VRAMFS_TEST_BACKEND,$opts"
  mountpoint -q "$mnt" || fail "vramfs returned 0 but $mnt is not mounted"
}

# attach_loop FILE: prints the loop device, attached with direct I/O.
attach_loop() {
  local dev
  dev=$(losetup --find --show --direct-io=on "$1")
  register loop "$dev"
  echo "$dev"
}

enable_swap() {
  mkswap "$1" >/dev/null
  register swap "$1"
  swapon "$@"
}

# The pid of the vramfs daemon serving MOUNTPOINT.
daemon_pid() {
  local mnt pid
  mnt=$(realpath "$1")
  for pid in $(pgrep -x vramfs); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q " $mnt "; then echo "$pid"; return; fi
    if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q " $1 "; then echo "$pid"; return; fi
  done
}

# Whether PID runs (kill -0 also succeeds for a zombie).
alive() { [ -d "/proc/$1" ] && [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# stat_value MOUNTPOINT KEY: one value from .stats.
stat_value() { awk -v k="$2" '$1 == k { print $2 }' "$1/.stats"; }

# new_cgroup_dir PARENT: makes a cgroup of its own under PARENT (a test
# may need several) and prints it.
new_cgroup_dir() {
  local i=0
  until mkdir "$1/vramfs-test.$$.$i" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -lt 100 ] || fail "cannot create a cgroup under $1"
  done
  echo "$1/vramfs-test.$$.$i"
}

# make_memory_cgroup LIMIT_MIB: creates a memory cgroup (v1 or v2) and
# prints its directory; processes started by run_in_cgroup live there.
make_memory_cgroup() {
  local limit=$(( $1 * 1024 * 1024 )) dir
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    grep -qw memory /sys/fs/cgroup/cgroup.controllers || skip "no cgroup v2 memory controller"
    grep -qw memory /sys/fs/cgroup/cgroup.subtree_control ||
      echo +memory >/sys/fs/cgroup/cgroup.subtree_control
    dir=$(new_cgroup_dir /sys/fs/cgroup)
    register cgroup "$dir"
    echo "$limit" >"$dir/memory.max"
    echo max >"$dir/memory.swap.max" 2>/dev/null || true
  elif [ -d /sys/fs/cgroup/memory ]; then
    dir=$(new_cgroup_dir /sys/fs/cgroup/memory)
    register cgroup "$dir"
    echo "$limit" >"$dir/memory.limit_in_bytes"
    echo 60 >"$dir/memory.swappiness" 2>/dev/null || true
  else
    skip "no memory cgroup controller"
  fi
  echo "$dir"
}

# run_in_cgroup DIR COMMAND...: runs COMMAND as a member of the cgroup (in
# the foreground: in the background, $! would be the shell, not COMMAND).
run_in_cgroup() {
  local dir=$1
  shift
  sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$dir" "$@"
}

# spawn_in_cgroup DIR OUTPUT COMMAND...: starts COMMAND in the background as
# a member of the cgroup, its output in OUTPUT, and leaves its pid in
# SPAWNED (as $! of a function called in $(...) would be lost).
spawn_in_cgroup() {
  local dir=$1 out=$2
  shift 2
  # shellcheck disable=SC2016 # $$ and $1 belong to the inner sh
  sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$dir" "$@" >"$out" 2>&1 &
  SPAWNED=$!
}

# unlimit_cgroup DIR: lifts its memory limit.  swapoff charges the pages it
# brings back to their owner's cgroup: under the limit it would OOM-kill.
unlimit_cgroup() {
  if [ -f "$1/memory.max" ]; then echo max >"$1/memory.max"; else echo -1 >"$1/memory.limit_in_bytes"; fi
}

# Bytes of swap in use on DEVICE, from /proc/swaps (in KiB there).
swap_used_kib() { awk -v d="$1" '$1 == d { print $4 }' /proc/swaps; }
