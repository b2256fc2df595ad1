# shellcheck shell=bash
# Helpers for the integration tests; sourced by every tests/test-*.sh.
#
# Each test mounts vramfs, attaches loop devices and enables swap for real.
# Everything it creates is registered here and torn down by an EXIT trap in
# the safe order (the memory-limited cgroups' processes killed, swapoff,
# losetup -d, umount), even when the test fails.  The mount table, loop
# device and daemon helpers are vramswap's own (scripts/vramswap-lib.sh).

set -eu

# One test at a time on this machine pushes a process into swap, fills the
# GPU or changes the fuse module's enable_uring to N, also across build
# trees: a swap device takes any cgroup's pages, not only its own test's,
# and a swapoff brings them back against their cgroup's limit.  Such a test
# holds the test lock, exclusive, for its whole run: the default.
# A test that swaps and attaches loop devices but pushes no process into
# swap says VRAMFS_TEST_LOCK=shared before it sources this file: while no
# process is pushed into swap, no page reaches any test's swap, so such
# tests run side by side, four at most (the swap areas they hold stay well
# under the kernel's limit of about 30), each with a vramswap lock of its
# own (vramswap_functions.sh); make_memory_cgroup fails in such a test.
# A test that does none of that (it may mount vramfs) says so with
# VRAMFS_TEST_PARALLEL=1, and runs beside all the others without the lock;
# attach_loop, enable_swap and make_memory_cgroup fail in such a test.
# Over FUSE's io_uring transport, tests share the fuse module's
# enable_uring, but only ever turn it on (test-bad-input-uring's N is a
# bind in a mount namespace of its own): that runs beside others too.
# flock -o keeps each lock in a flock process, so no daemon a test starts
# inherits it.
_test_locks=/run/lock/vramfs-tests
if [ -n "${VRAMFS_TEST_LOCKED:-}" ]; then
  :  # a test's own bash -c '. functions.sh', or after the exec below
elif [ "${VRAMFS_TEST_PARALLEL:-0}" = 1 ]; then
  export VRAMFS_TEST_LOCKED=no
elif command -v flock >/dev/null && [ -d /run/lock ] && [ -w /run/lock ]; then
  export VRAMFS_TEST_LOCKED=${VRAMFS_TEST_LOCK:-exclusive} VRAMFS_TEST_LOCK_ASKED=$EPOCHSECONDS
  if [ "$VRAMFS_TEST_LOCKED" = shared ]; then
    # One of four slots: the first free, or (all taken) one to wait for.
    _slot=$(($$ % 4))
    for _s in 0 1 2 3; do
      if flock -n "$_test_locks.slot$_s" true; then _slot=$_s; break; fi
    done
    exec flock -s -o "$_test_locks.lock" flock -o "$_test_locks.slot$_slot" bash "$0" "$@"
  fi
  exec flock -o "$_test_locks.lock" bash "$0" "$@"
fi
# How long the test waited for the lock, which the harness's time for it
# includes: the log says, so that a slow run shows where the time went.
if [ -n "${VRAMFS_TEST_LOCK_ASKED:-}" ]; then
  echo "--- waited $((EPOCHSECONDS - VRAMFS_TEST_LOCK_ASKED)) s for the test lock"
  unset VRAMFS_TEST_LOCK_ASKED
fi

: "${VRAMFS:=vramfs}"
: "${VRAMFS_IO:=vramfs-io}"
# shellcheck disable=SC2034 # for the tests that source this file
MiB=$((1 << 20))
: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# The library the tests share with vramswap; the built vramswap reads it
# from the source tree too.
: "${VRAMSWAP_LIB:=$TESTS_DIR/../scripts/vramswap-lib.sh}"
export VRAMSWAP_LIB
# Not followed by shellcheck: it checks the library on its own (it is one
# of vramswap's files), and following it from each of the test files
# that source this one cost half of test-shellcheck's 2 minutes of CPU.
# shellcheck source=/dev/null
. "$VRAMSWAP_LIB"

fail() { echo "FAIL: $*" >&2; exit 1; }
# Each step says when it began (seconds into the test), so that a slow run
# shows which step took the time.  Not $SECONDS, which some tests reset to
# time one step.
_test_started=$EPOCHSECONDS
info() { echo "--- [$((EPOCHSECONDS - _test_started)) s] $*"; }
# skip REASON: this test cannot run here (exit 77).  Where the tests must
# run (VRAMFS_TESTS_MUST_RUN=1: CI on a machine without a GPU, which has
# root, /dev/fuse, loop devices and a memory cgroup), such a skip is a
# failure: a suite that skipped everything must not pass.
skip() {
  [ "${VRAMFS_TESTS_MUST_RUN:-0}" != 1 ] ||
    fail "$* (VRAMFS_TESTS_MUST_RUN=1: this test must run here, not skip)"
  echo "SKIP: $*"
  exit 77
}
# skip_optional REASON: a skip that is right even where the tests must run:
# what a machine without a GPU lacks (a GPU, a CUDA build, a kernel with
# FUSE over io_uring) or a build where the test means nothing.
skip_optional() { echo "SKIP: $*"; exit 77; }

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
  if ! command -v mkswap >/dev/null || ! command -v swapon >/dev/null; then skip "no mkswap/swapon"; fi
}
# What every test that swaps through vramfs needs.
requires_swap_machine() { requires_root; requires_fuse; requires_loop; requires_swap; }
requires_gpu() {
  if ! command -v nvidia-smi >/dev/null || ! bounded_for 30 nvidia-smi -L >/dev/null 2>&1; then
    skip_optional "no NVIDIA GPU here"
  fi
}

# The backend the tests use: host unless VRAMFS_TEST_BACKEND says otherwise
# (tests/run-gpu sets cuda).
: "${VRAMFS_TEST_BACKEND:=host}"

# FUSE over io_uring: with VRAMFS_TEST_TRANSPORT=uring (make check's second
# run of some tests) every mount_vramfs uses it.  It needs a vramfs that
# knows the option and a kernel with the fuse module's enable_uring, which
# this turns on.
if [ -n "${VRAMFS_TEST_TRANSPORT:-}" ]; then
  "$VRAMFS" --help 2>&1 | grep -q 'transport=' ||
    skip_optional "this vramfs has no -o transport= yet (VRAMFS_TEST_TRANSPORT=$VRAMFS_TEST_TRANSPORT)"
  if [ "$VRAMFS_TEST_TRANSPORT" = uring ]; then
    uring_param=${VRAMSWAP_URING_PARAM:-/sys/module/fuse/parameters/enable_uring}
    [ -e "$uring_param" ] ||
      skip_optional "this kernel's fuse module has no enable_uring (FUSE over io_uring needs Linux 6.14 or newer)"
    if [ "$(cat "$uring_param")" != Y ]; then
      { echo Y >"$uring_param"; } 2>/dev/null || skip "cannot turn on $uring_param (needs root)"
    fi
  fi
fi

# What the test created, one "KIND PATH" a line (the kinds of teardown in
# scripts/vramswap-lib.sh, and dir).  A file rather than shell variables, so
# that helpers called as $(helper ...) register too.
_registry=$(mktemp /tmp/vramfs-test-registry.XXXXXX)
register() { echo "$1 $2" >>"$_registry"; }

# registered KIND: what was registered as KIND, newest first.
registered() {
  awk -v k="$1" '$1 == k { sub(/^[^ ]* /, ""); print }' "$_registry" | tac
}

# ours /dev/loopN: the loop device holds a file under one of the test's
# folders or mounts.
ours() {
  local file place
  loop_backing "$1" file || return 1
  while read -r place; do
    [[ $file != "$place"/* ]] || return 0
  done < <(registered dir; registered mount)
  return 1
}

# Everything a test created, torn down in the safe order: what it
# registered, and whatever loop device or vramfs mount (vramswap's too)
# lies in one of its directories.  A test that starts something of its own
# that needs more (a stopped daemon to resume, say) does it in
# cleanup_first, which runs before anything else: a test's own EXIT trap
# would run under set -e, and a failing command there would skip the
# cleanup.
cleanup() {
  local status=$?
  set +e
  if declare -F cleanup_first >/dev/null; then cleanup_first; fi
  # Declared after cleanup_first ran: locals named like a test's globals
  # (dir, say) would hide them from it.
  local dir dev mp kind what
  {
    while read -r kind what; do
      case $kind in
        dir) ;;
        # A loop device (or the swap on one) that holds no file of the
        # test's any more is left alone: the test let go of it, and the
        # kernel may have given its name to a test beside it.
        loop | swap) if ours "$what"; then echo "$kind $what"; fi ;;
        *) echo "$kind $what" ;;
      esac
    done <"$_registry"
    while read -r dir; do
      [ -n "$dir" ] || continue
      for dev in $(loops_under "$dir"); do echo "swap $dev"; echo "loop $dev"; done
      while read -r mp; do [ -z "$mp" ] || echo "mount $mp"; done < <(vramfs_mounts_under "$dir")
    done < <(registered dir)
  } | teardown || { echo "FAIL: teardown incomplete (see above)" >&2; [ "$status" != 0 ] || status=1; }
  while read -r dir; do [ -n "$dir" ] && rm -rf "$dir"; done < <(registered dir)
  rm -f "$_registry"
  echo "--- ran for $((EPOCHSECONDS - _test_started)) s, teardown included"
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
  "$VRAMFS" "$mnt" -o "backend=$VRAMFS_TEST_BACKEND${VRAMFS_TEST_TRANSPORT:+,transport=$VRAMFS_TEST_TRANSPORT}${VRAMFS_TEST_OPTS:+,$VRAMFS_TEST_OPTS},$opts"
  is_mounted "$mnt" || fail "vramfs returned 0 but $mnt is not mounted"
}

# expect_refusal TEXT ARGS...: vramfs ARGS must fail, saying TEXT in one
# line on stderr, and leave no mount in the test's folders.
expect_refusal() {
  local want=$1 status=0 err dir mp
  shift
  err=$("$VRAMFS" "$@" 2>&1 >/dev/null) || status=$?
  [ "$status" -ne 0 ] || fail "vramfs $* succeeded; expected: $want"
  [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "vramfs $* printed more than one line: $err"
  case $err in
    "vramfs: "*"$want"*) ;;
    *) fail "vramfs $* said '$err', expected it to say '$want'" ;;
  esac
  while read -r dir; do
    for mp in $(vramfs_mounts_under "$dir"); do
      unmount "$mp"
      fail "vramfs $* left a mount behind"
    done
  done < <(registered dir)
  echo "ok: vramfs $* -> $err"
}

# not_parallel WHAT: fails a test that runs without the lock
# (VRAMFS_TEST_PARALLEL=1) and still does WHAT.
not_parallel() {
  [ "${VRAMFS_TEST_LOCKED:-}" != no ] ||
    fail "$1, but this test runs beside others (VRAMFS_TEST_PARALLEL=1): it must take the test lock"
}
# alone WHAT: fails a test that shares the lock (VRAMFS_TEST_LOCK=shared)
# or runs without it, and still does WHAT.
alone() {
  not_parallel "$1"
  [ "${VRAMFS_TEST_LOCKED:-}" != shared ] ||
    fail "$1, but this test runs beside others that swap (VRAMFS_TEST_LOCK=shared): it must take the test lock alone"
}

# attach_loop FILE: prints the loop device, attached with direct I/O; fails
# the test when it cannot (also as dev=$(attach_loop ...)).
attach_loop() {
  local dev
  not_parallel "it attaches a loop device"
  dev=$(loop_attach "$1") || fail "cannot attach a loop device with direct I/O to $1"
  register loop "$dev"
  echo "$dev"
}

enable_swap() {
  not_parallel "it swaps"
  mkswap "$1" >/dev/null
  register swap "$1"
  swapon "$@"
}

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
  alone "it pushes a process into swap"
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
  keep_counters_fresh "$dir"
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
  # shellcheck disable=SC2034 # the caller reads it
  SPAWNED=$!
}

# all_verified OUTPUT_PREFIX PID...: waits for each swapping process
# (spawned with output OUTPUT_PREFIX.N, N counting from 0), prints what it
# said, and fails unless every one exited 0 having verified its pages.
all_verified() {
  local prefix=$1 p=0 pid status failed=0
  shift
  for pid in "$@"; do
    status=0
    wait "$pid" || status=$?
    cat "$prefix.$p"
    if [ "$status" != 0 ] || ! grep -q "verified" "$prefix.$p"; then
      echo "process $p failed (exit $status$([ "$status" = 135 ] && echo ': SIGBUS')$([ "$status" = 137 ] && echo ': SIGKILL, the OOM killer?'))"
      failed=1
    fi
    p=$((p + 1))
  done
  [ "$failed" = 0 ]
}

# keep_counters_fresh DIR: while the cgroup and the test live, reads its
# memory.stat five times a second, in the background.  A read brings the
# kernel's counters of the cgroup up to date, and its reclaim decides from
# them as it last updated them: on Linux 6.18 (cgroup v1) the OOM killer
# ended a process swapping 56 MiB through 32 MiB in 5 runs of 38 of
# test-failover-resize's swapping phase and of variants of it, whatever
# the swap did, and in none of 63 with such a reader; CI met it in
# test-vramswap-resize-refused too.  What the tests check is the swap, not
# that.  No descriptor of the test's is held: a $(...) or the harness does
# not wait for it.
keep_counters_fresh() {
  (
    while [ -d "$1" ] && kill -0 $$ 2>/dev/null; do
      read -r _ <"$1/memory.stat" 2>/dev/null
      nap 0.2
    done
  ) </dev/null >/dev/null 2>&1 &
}

# oom_kills DIR: how many of the cgroup's processes the kernel's OOM
# killer has killed (0 where the kernel does not say).
oom_kills() {
  local key value
  while read -r key value; do
    if [ "$key" = oom_kill ]; then echo "$value"; return; fi
  done < <(cat "$1/memory.events" "$1/memory.oom_control" 2>/dev/null)
  echo 0
}

# unlimit_cgroup DIR: lifts its memory limit.  swapoff charges the pages it
# brings back to their owner's cgroup: under the limit it would OOM-kill.
unlimit_cgroup() {
  if [ -f "$1/memory.max" ]; then echo max >"$1/memory.max"; else echo -1 >"$1/memory.limit_in_bytes"; fi
}

# stat_now MOUNTPOINT KEY: KEY's value in .stats now, or nothing (and no
# failure) where the mount does not answer, as while a server is being
# replaced, or has no KEY: for polls.
stat_now() { stat_value "$1" "$2" 2>/dev/null || true; }

# nap SECONDS: sleeps without running sleep(1), which costs a fork and an
# exec: the polls of the tests nap tens of times a second, and on a 2-CPU
# machine those cost more than what they wait for.  read -t on a pipe that
# nothing writes to (the first nap of a shell opens it).
nap() {
  [ -n "${NAP_FD:-}" ] || exec {NAP_FD}<> <(:)
  read -r -t "$1" -u "$NAP_FD" _ || true
}

# wait_for SECONDS COMMAND...: until COMMAND succeeds (run again each time:
# pass a function, not an expanded test), or fails after SECONDS.
wait_for() {
  local limit=$(($1 * 20)) i
  shift
  for ((i = 0; i < limit; i++)); do "$@" && return 0; nap 0.05; done
  return 1
}

# kept_chunks PID: how many chunks of memory the failover keeper PID holds
# (its memfds named vramfs-chunk).
kept_chunks() {
  local fd n=0
  for fd in /proc/"$1"/fd/*; do
    if [[ $(readlink "$fd" 2>/dev/null) == *memfd:vramfs-chunk* ]]; then n=$((n + 1)); fi
  done
  echo "$n"
}

# live_chunks MOUNTPOINT: how many chunks of RAM (backend=host) the
# processes of a failover mount keep alive between them: the distinct
# memfds named vramfs-chunk that any of them (keeper, server, standby) has
# open or mapped.  Memory given back is freed only once none does.
live_chunks() {
  local pid fd
  for pid in $(pgrep -f -- "$1"); do
    for fd in /proc/"$pid"/fd/*; do
      [[ $(readlink "$fd" 2>/dev/null) != *memfd:vramfs-chunk* ]] || stat -L -c %i "$fd" 2>/dev/null
    done
    awk '/memfd:vramfs-chunk/ { print $5 }' /proc/"$pid"/maps 2>/dev/null
  done | sort -u | wc -l
}

# release_hog: ends the vram-hog a GPU test started (pid in hog, holding
# its memory until fd 7, its stdin's other end, closes) and waits for it.
release_hog() {
  [ -n "${hog:-}" ] || return 0
  exec 7>&-
  wait "$hog" 2>/dev/null || true
  hog=
}

# children PID: the processes whose parent is PID.
children() { ps -o pid= --ppid "$1" | tr -d ' '; }

# kernel_log: the kernel log, a line a record, from dmesg or, where
# dmesg_restrict forbids that, /dev/kmsg; fails where neither can be read.
kernel_log() {
  dmesg 2>/dev/null && return 0
  [ -r /dev/kmsg ] || return 1
  dd if=/dev/kmsg iflag=nonblock bs=8192 2>/dev/null | cut -d';' -f2-
  return 0
}

# unchecked WHAT: says loudly that a check could not be made here.
unchecked() { echo "NOT CHECKED: $*" | tee /dev/stderr; }
