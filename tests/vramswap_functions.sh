# shellcheck shell=bash
# Helpers for the vramswap tests; sourced after functions.sh.  The test
# runs vramswap with --dir under BASE, a directory functions.sh tears down:
# whatever vramswap left there (loop devices, mounts, swap) goes with it, in
# the safe order.

: "${VRAMSWAP:=$TESTS_DIR/../scripts/vramswap}"
[ -x "$VRAMSWAP" ] || fail "no vramswap script at $VRAMSWAP (set VRAMSWAP)"
command -v "$VRAMFS" >/dev/null || fail "no vramfs binary at $VRAMFS (set VRAMFS)"

BASE=$(make_tempdir)
# shellcheck disable=SC2034 # the tests' --dir
DIR=$BASE/run
# The machine's /etc/vramswap.conf must not change what the tests do.  The
# tests' own says one loop device per GPU: most of them look at one swap
# area; test-vramswap-stripes checks the default of several.
export VRAMSWAP_CONF=$BASE/tests.conf
echo "STRIPES=1" >"$VRAMSWAP_CONF"
# A vramswap lock of the test's own: tests that share the test lock
# (functions.sh) run side by side, and one's stop must not make another's
# resize refuse, or its start wait.
export VRAMSWAP_LOCK=$BASE/vramswap.lock

# vs ARGS...: runs vramswap; OUT, ERR and RC hold what happened.
vs() {
  RC=0
  "$VRAMSWAP" "$@" >"$BASE/out" 2>"$BASE/err" || RC=$?
  OUT=$(<"$BASE/out")
  ERR=$(<"$BASE/err")
}
# probes_of_a_stopped_daemon / probes_of_a_running_daemon: what vramswap
# asks a daemon that the test stopped (SIGSTOP) can only time out; a
# deadline of 2 s rather than the usual one (5 s) checks the same thing
# sooner.  The second puts the usual one back.
probes_of_a_stopped_daemon() {
  PROBE_TIMEOUT_RUNNING=$VRAMFS_PROBE_TIMEOUT
  export VRAMFS_PROBE_TIMEOUT=2
}
probes_of_a_running_daemon() { export VRAMFS_PROBE_TIMEOUT=$PROBE_TIMEOUT_RUNNING; }
show() { echo "vramswap $*: rc=$RC"; echo "stdout: $OUT"; echo "stderr: $ERR"; }
expect_rc() { # RC WHAT
  [ "$RC" = "$1" ] || { show "($2)"; fail "$2: exit status $RC, expected $1"; }
}

# nothing_left WHAT: no loop device and no mount of the test's is left.
nothing_left() {
  [ -z "$(loops_under "$BASE")" ] || fail "$1: loop devices left: $(loops_under "$BASE" | xargs)"
  [ -z "$(vramfs_mounts_under "$BASE")" ] || fail "$1: mounts left: $(vramfs_mounts_under "$BASE" | xargs)"
}

# within SECONDS ARGS...: runs vramswap ARGS as vs does, and fails the test
# when it hangs (120 s) or takes longer than SECONDS.
within() {
  local limit=$1
  shift
  SECONDS=0
  RC=0
  timeout 120 "$VRAMSWAP" "$@" >"$BASE/out" 2>"$BASE/err" || RC=$?
  OUT=$(<"$BASE/out")
  ERR=$(<"$BASE/err")
  [ "$RC" != 124 ] || { show "$@"; fail "vramswap $* hangs"; }
  [ "$SECONDS" -le "$limit" ] || { show "$@"; fail "vramswap $* took $SECONDS s"; }
  echo "vramswap $*: exit $RC in $SECONDS s"
}

# fake_machine MEMAVAILABLE_KIB PRESERVE NVIDIA_SUSPEND [RESUME]: what sleep
# and doctor read of the machine, under FAKE_ROOT (VRAMSWAP_SYSROOT): free
# RAM, the NVIDIA driver's PreserveVideoMemoryAllocations, and resume= on
# the kernel command line; and a systemctl in BASE/bin (put it first on
# PATH) that says NVIDIA_SUSPEND of every unit.
FAKE_ROOT=$BASE/root
fake_machine() {
  mkdir -p "$FAKE_ROOT/proc/driver/nvidia" "$FAKE_ROOT/sys/power" "$FAKE_ROOT/run" "$BASE/bin"
  printf 'MemTotal: 24000000 kB\nMemAvailable: %s kB\nSwapFree: 0 kB\n' "$1" >"$FAKE_ROOT/proc/meminfo"
  printf 'PreserveVideoMemoryAllocations: %s\n' "$2" >"$FAKE_ROOT/proc/driver/nvidia/params"
  printf '#!/bin/bash\necho %s\n' "$3" >"$BASE/bin/systemctl"
  chmod +x "$BASE/bin/systemctl"
  echo "root=/dev/sda1${4:+ resume=$4}" >"$FAKE_ROOT/proc/cmdline"
  echo 0:0 >"$FAKE_ROOT/sys/power/resume"
}

# --- resize: one swap, DIR/gpu0, started with stripes at priority 100 --------

# swap_used_under MNT: KiB in the swap of every stripe of MNT.
swap_used_under() {
  local d t=0
  for d in $(loops_under "$1"); do t=$((t + $(swap_used_kib "$d"))); done
  echo "$t"
}

# expect_swap_size MIB STRIPES WHAT: DIR/gpu0's data file is MIB; vramfs
# holds all of it, and its keeper keeps it in chunks; STRIPES loop devices,
# all swap at priority 100; no resize left half-done.
expect_swap_size() {
  local mnt=$DIR/gpu0 want=$(($1 << 20)) d devs prios kept chunk
  read_stats "$mnt" || fail "$3: .stats: $STATS_ERR"
  [ "$(bounded stat -c %s "$mnt/swapfile")" = "$want" ] || fail "$3: the data file is not $1 MiB"
  [ "${STATS[size_bytes]}" = "$want" ] || fail "$3: size_bytes ${STATS[size_bytes]}, not $want"
  [ "${STATS[held_bytes]}" = "$want" ] || fail "$3: vramfs holds ${STATS[held_bytes]} bytes, not $want"
  kept=$(kept_chunks "${STATS[keeper_pid]}")
  chunk=${STATS[chunk_bytes]}
  [ "$kept" = $((want / chunk)) ] || fail "$3: the keeper keeps $kept chunks, not $((want / chunk))"
  devs=$(loops_under "$mnt" | xargs)
  [ "$(wc -w <<<"$devs")" = "$2" ] || fail "$3: $(wc -w <<<"$devs") loop devices, not $2"
  for d in $devs; do swap_active "$d" || fail "$3: $d is not swap"; done
  prios=$(for d in $devs; do awk -v d="$d" '$1 == d { print $5 }' /proc/swaps; done | sort -u | xargs)
  [ "$prios" = 100 ] || fail "$3: the stripes' priorities: $prios"
  [ ! -e "$DIR/.gpu0.resizing" ] || fail "$3: the resize record is left"
  echo "ok: $3: $1 MiB in $2 stripes of swap, kept in $kept chunks; restarts ${STATS[restarts]}"
}

# start_with_swapper SECONDS SEED [WORK_MIB]: vramswap start (host, 256 MiB
# in 4 stripes, failover, and the options in START_OPTS), and a process in
# a 32 MiB cgroup (CG) that works on WORK_MIB (default 96) for SECONDS
# (SOAK, its output in BASE/soak.out), once it has put 48 MiB in the swap.
START_OPTS=()
start_with_swapper() {
  vs start --backend host --size 256M --stripes 4 ${START_OPTS[@]+"${START_OPTS[@]}"} --dir "$DIR"
  expect_rc 0 "start"
  CG=$(make_memory_cgroup 32)
  spawn_in_cgroup "$CG" "$BASE/soak.out" "$VRAMFS_IO" soak "${3:-96}" "$1" "$2"
  SOAK=$SPAWNED
  wait_for 60 swapped_48m || fail "the process did not swap ($(swap_used_under "$DIR/gpu0") KiB)"
  info "$(($(swap_used_under "$DIR/gpu0") / 1024)) MiB in the swap"
}
swapped_48m() { [ "$(swap_used_under "$DIR/gpu0")" -gt $((48 * 1024)) ]; }

# expect_swapper_verified: SOAK ends (after the pass under way: its seconds
# need not be waited out), having verified every page.
expect_swapper_verified() {
  local status=0
  kill -USR1 "$SOAK" 2>/dev/null || true
  wait "$SOAK" || status=$?
  cat "$BASE/soak.out"
  if [ "$status" != 0 ] || ! grep -q verified "$BASE/soak.out"; then fail "the process lost pages (exit $status)"; fi
}

# --- the state of instances under DIR -----------------------------------------

swap_prio() { awk -v d="$1" '$1 == d { print $5 }' /proc/swaps; }
swap_size_kib() { awk -v d="$1" '$1 == d { print $3 }' /proc/swaps; }

# swap_of_ours DEV: DEV is swap, and a loop device of a file of the test's
# (functions.sh's ours).  Once the test's loop device is gone, the kernel
# may give its name to one of a test beside it (VRAMFS_TEST_LOCK=shared).
swap_of_ours() { swap_active "$1" && ours "$1"; }

# assert_clean WHAT: nothing of the test's is left: no loop device, mount
# or swap.  Every loop device loop_of saw is in BASE/seen (loop_of runs in
# command substitutions, so a file keeps them).
assert_clean() {
  local dev
  [ -z "$(loops_under "$BASE")" ] || fail "$1: loop devices left: $(loops_under "$BASE")"
  [ -z "$(vramfs_mounts_under "$BASE")" ] || fail "$1: mounts left: $(vramfs_mounts_under "$BASE")"
  ! grep -q "^$BASE/" <(mount_table | cut -f4) || fail "$1: mounts left: $(mount_table | grep "$BASE/")"
  [ -f "$BASE/seen" ] || return 0
  while read -r dev; do
    ! swap_of_ours "$dev" || fail "$1: $dev is still swap"
  done <"$BASE/seen"
}

# loop_of N: the single loop device of instance N; fails unless there is
# exactly one.
loop_of() {
  local loops
  loops=$(loops_under "$DIR/gpu$1")
  [ -n "$loops" ] || fail "gpu$1: no loop device holds $DIR/gpu$1/swapfile"
  [ "$(wc -w <<<"$loops")" = 1 ] || fail "gpu$1: several loop devices: $loops"
  echo "$loops" >>"$BASE/seen"
  echo "$loops"
}

# assert_active N PRIORITY: instance N is fully set up: mount, loop with
# direct I/O, swap at PRIORITY.
assert_active() {
  local loop
  mountpoint -q "$DIR/gpu$1" || fail "gpu$1: $DIR/gpu$1 is not mounted"
  [ "$(vramfs_mounts_under "$DIR/gpu$1")" = "$DIR/gpu$1" ] || fail "gpu$1: not a fuse.vramfs mount"
  loop=$(loop_of "$1")
  [ "$(cat "/sys/block/${loop#/dev/}/loop/dio")" = 1 ] || fail "gpu$1: $loop without direct I/O"
  swap_active "$loop" || fail "gpu$1: $loop is not in /proc/swaps"
  [ "$(swap_prio "$loop")" = "$2" ] || fail "gpu$1: priority $(swap_prio "$loop"), expected $2"
}

# expect_broken N STATE ADVICE [LOOP]: status exits 3, shows instance N (on
# LOOP) in STATE, and says ADVICE (a grep pattern) about it.
expect_broken() {
  vs status --dir "$DIR"
  expect_rc 3 "status, gpu$1 $2"
  echo "$OUT"
  grep -Eq "^$1 .*${4:+$4 .*} $2\$" <<<"$OUT" || fail "status does not show gpu$1 as $2"
  grep -q "$3" <<<"$OUT" || fail "status does not say what to do about gpu$1 ($2)"
}

# swapper_in_swap LOOP LIMIT_MIB MIB PASSES SEED OUTPUT: starts vramfs-io
# swapper in a new memory cgroup CG (pid in SWAPPER_PID) and waits until
# LIMIT_MIB of its pages are in the swap on LOOP.
swapper_in_swap() {
  local loop=$1 limit=$2 out=$6 i used
  CG=$(make_memory_cgroup "$limit")
  spawn_in_cgroup "$CG" "$out" "$VRAMFS_IO" swapper "$3" "$4" "$5"
  SWAPPER_PID=$SPAWNED
  for ((i = 0; i < 600; i++)); do
    used=$(swap_used_kib "$loop")
    [ "${used:-0}" -lt $((limit * 1024)) ] || return 0
    alive "$SWAPPER_PID" || { cat "$out"; fail "the swapper ended before it used the swap"; }
    nap 0.2
  done
  fail "only ${used:-0} KiB went to the swap in 120 s"
}

# --- refusals and rollbacks ---------------------------------------------------

# vramfs_daemons_under PATH: pids of vramfs daemons serving a mount under PATH.
vramfs_daemons_under() {
  local pid
  for pid in $(pgrep -x vramfs); do
    alive "$pid" || continue
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "^$1/" && echo "$pid"
  done
  return 0
}

# assert_nothing WHAT: nothing of ours exists: no loop device, mount, swap
# or daemon, and DIR was not created (or was removed again).
assert_nothing() {
  [ -z "$(loops_under "$BASE")" ] || fail "$1: loop devices left: $(loops_under "$BASE")"
  [ -z "$(vramfs_mounts_under "$BASE")" ] || fail "$1: mounts left: $(vramfs_mounts_under "$BASE")"
  [ ! -e "$DIR" ] || fail "$1: $DIR was left behind: $(ls -A "$DIR")"
  nap 0.1
  [ -z "$(vramfs_daemons_under "$BASE")" ] || fail "$1: vramfs daemons left: $(vramfs_daemons_under "$BASE")"
}

# expect_usage_error TEXT ARGS...: a usage or configuration error: exit 2,
# one line on stderr that starts with "vramswap: " and contains TEXT,
# nothing on stdout, nothing created.
expect_usage_error() {
  local text=$1
  shift
  vs "$@"
  expect_rc 2 "$*"
  [ -z "$OUT" ] || { show "$@"; fail "$*: printed on stdout"; }
  [ "$(wc -l <<<"$ERR")" = 1 ] || { show "$@"; fail "$*: not one line on stderr"; }
  [[ $ERR == "vramswap: "* ]] || { show "$@"; fail "$*: message without the vramswap: prefix"; }
  [[ $ERR == *"$text"* ]] || { show "$@"; fail "$*: message does not say '$text'"; }
  echo "  $* -> $ERR"
  assert_nothing "$*"
}

# fake NAME SCRIPT: a command NAME in BASE/fake-NAME/, first on FAKE_PATH
# (a PATH for the calls that use it).
fake() {
  mkdir -p "$BASE/fake-$1"
  printf '#!/bin/bash\n%s\n' "$2" >"$BASE/fake-$1/$1"
  chmod +x "$BASE/fake-$1/$1"
  # shellcheck disable=SC2034 # read by the tests that source this file
  FAKE_PATH=$BASE/fake-$1:$PATH
}
