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

mnt=$DIR/gpu0

# killer PID_FILE: kills the serving vramfs server every 0.6 s until the
# file PID_FILE is gone.
killer() {
  local pid
  while [ -e "$1" ]; do
    nap 0.6
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

start_with_swapper 45 37
# Room in its cgroup for the pages the shrink brings back.
if [ -f "$CG/memory.max" ]; then echo max >"$CG/memory.max"; else echo -1 >"$CG/memory.limit_in_bytes"; fi

info "shrink to 64 MiB, the server killed every 0.6 s"
resize_under_kills 64M
expect_swap_size 64 1 "shrunk under kills"
info "grow to 256 MiB, the server killed every 0.6 s"
resize_under_kills 256M
expect_swap_size 256 4 "grown under kills"
[ "$(grep -c . "$BASE/kills")" -ge 2 ] || fail "the server was killed only $(grep -c . "$BASE/kills") times"

expect_swapper_verified
read_stats "$mnt"
[ "${STATS[errors]}" = 0 ] || fail "vramfs counted ${STATS[errors]} errors"
[ "${STATS[state]}" = serving ] || fail "the mount is ${STATS[state]}"
vs stop --dir "$DIR"
expect_rc 0 "stop"
nothing_left "after stop"
echo PASS
