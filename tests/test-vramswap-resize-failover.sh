#!/bin/bash
# vramswap resize with failover: the vramfs server is killed with SIGKILL
# again and again while a shrink brings pages back and while a grow adds
# stripes, under a process whose pages are in the swap.  The resizes
# finish, no page is lost, and the keeper ends up keeping exactly the
# memory of the size that is left.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

MiB=$((1 << 20))
mnt=$DIR/gpu0

expect_size() { # MIB STRIPES WHAT
  local want=$(($1 * MiB)) d kept
  read_stats "$mnt" || fail "$3: .stats: $STATS_ERR"
  [ "${STATS[size_bytes]}" = "$want" ] || fail "$3: size_bytes ${STATS[size_bytes]}, not $want"
  [ "${STATS[held_bytes]}" = "$want" ] || fail "$3: held_bytes ${STATS[held_bytes]}, not $want"
  kept=$(kept_chunks "${STATS[keeper_pid]}")
  [ "$kept" = $((want / STATS[chunk_bytes])) ] || fail "$3: the keeper keeps $kept chunks, not $((want / STATS[chunk_bytes]))"
  [ "$(loops_under "$mnt" | wc -l)" = "$2" ] || fail "$3: $(loops_under "$mnt" | wc -l) loop devices, not $2"
  for d in $(loops_under "$mnt"); do swap_active "$d" || fail "$3: $d is not swap"; done
  echo "ok: $3: $1 MiB in $2 stripes; restarts ${STATS[restarts]}"
}

# killer PID_FILE: kills the serving vramfs server every 0.6 s until the
# file PID_FILE is gone.
killer() {
  local pid
  while [ -e "$1" ]; do
    sleep 0.6
    pid=$(stat_value "$mnt" pid 2>/dev/null) || continue
    kill -KILL "$pid" 2>/dev/null && echo "killed $pid" >>"$BASE/kills"
  done
}

# resize_under_kills SIZE: vramswap resize --size SIZE while the server
# is killed again and again; fails the test if the resize fails.
resize_under_kills() {
  touch "$BASE/killing"
  killer "$BASE/killing" &
  local k=$!
  vs resize --size "$1" --dir "$DIR"
  rm -f "$BASE/killing"
  wait "$k"
  show "resize --size $1 under kills"
  expect_rc 0 "resize --size $1 while the server was killed $(grep -c . "$BASE/kills" 2>/dev/null || echo 0) times"
}

vs start --backend host --size 256M --stripes 4 --dir "$DIR"
expect_rc 0 "start"
cg=$(make_memory_cgroup 32)
spawn_in_cgroup "$cg" "$BASE/soak.out" "$VRAMFS_IO" soak 96 45 37
soak=$SPAWNED
used() { local d t=0; for d in $(loops_under "$mnt"); do t=$((t + $(swap_used_kib "$d"))); done; echo "$t"; }
swapped() { [ "$(used)" -gt $((48 * 1024)) ]; }
wait_for 60 swapped || fail "the process did not swap ($(used) KiB)"
# Room in its cgroup for the pages the shrink brings back.
if [ -f "$cg/memory.max" ]; then echo max >"$cg/memory.max"; else echo -1 >"$cg/memory.limit_in_bytes"; fi

info "shrink to 64 MiB, the server killed every 0.6 s"
resize_under_kills 64M
expect_size 64 1 "shrunk under kills"
info "grow to 256 MiB, the server killed every 0.6 s"
resize_under_kills 256M
expect_size 256 4 "grown under kills"
[ "$(grep -c . "$BASE/kills")" -ge 2 ] || fail "the server was killed only $(grep -c . "$BASE/kills") times"

status=0
wait "$soak" || status=$?
cat "$BASE/soak.out"
if [ "$status" != 0 ] || ! grep -q verified "$BASE/soak.out"; then fail "the process lost pages (exit $status)"; fi
read_stats "$mnt"
[ "${STATS[errors]}" = 0 ] || fail "vramfs counted ${STATS[errors]} errors"
[ "${STATS[state]}" = serving ] || fail "the mount is ${STATS[state]}"
vs stop --dir "$DIR"
expect_rc 0 "stop"
nothing_left "after stop"
echo PASS
