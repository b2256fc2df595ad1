#!/bin/bash
# vramswap resize of a lazy mount (--discard: memory taken as pages are
# swapped out, given back as swap frees them): a shrink gives back the
# memory past the new end at once, and what is held stays within the size;
# a grow takes nothing until pages come.  Under a swapping process, every
# page verified.  Backend host (without failover, which a lazy host mount
# cannot have).

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

mnt=$DIR/gpu0
START_OPTS=(--discard --no-failover)

# expect_lazy MIB STRIPES WHAT: the data file is MIB, vramfs holds no more
# than that, and STRIPES loop devices are swap.
expect_lazy() {
  local d
  read_stats "$mnt" || fail "$3: .stats: $STATS_ERR"
  [ "${STATS[lazy]}" = 1 ] || fail "$3: the mount is not lazy"
  [ "${STATS[size_bytes]}" = $(($1 * MiB)) ] || fail "$3: size_bytes ${STATS[size_bytes]}"
  [ "${STATS[held_bytes]}" -le $(($1 * MiB)) ] || fail "$3: vramfs holds ${STATS[held_bytes]} bytes, more than $1 MiB"
  [ "$(loops_under "$mnt" | wc -l)" = "$2" ] || fail "$3: $(loops_under "$mnt" | wc -l) loop devices, not $2"
  for d in $(loops_under "$mnt"); do swap_active "$d" || fail "$3: $d is not swap"; done
  echo "ok: $3: $1 MiB in $2 stripes, $((STATS[held_bytes] / MiB)) MiB held"
}

start_with_swapper 40 53
expect_lazy 256 4 "started, swapping"
[ "$(stat_value "$mnt" held_bytes)" -gt 0 ] || fail "a swapping lazy mount holds nothing"

info "shrink to one stripe: the memory past it goes back"
unlimit_cgroup "$CG"
vs resize --size 64M --dir "$DIR"
show "resize --size 64M"
expect_rc 0 "resize --size 64M"
expect_lazy 64 1 "shrunk"

info "grow back to 256 MiB: nothing taken until pages come"
kill -STOP "$SOAK"  # no page goes out meanwhile
sleep 1
before=$(stat_value "$mnt" held_bytes)
vs resize --size 256M --dir "$DIR"
expect_rc 0 "resize --size 256M"
expect_lazy 256 4 "grown"
# mkswap writes a header at the start of each new stripe: a chunk each.
chunk=$(stat_value "$mnt" chunk_bytes)
[ "$(stat_value "$mnt" held_bytes)" -le $((before + 3 * chunk)) ] ||
  fail "the grow took memory at once: $(stat_value "$mnt" held_bytes) bytes held, $before before (chunks of $chunk)"
kill -CONT "$SOAK"
expect_swapper_verified
[ "$(stat_value "$mnt" errors)" = 0 ] || fail "vramfs counted errors"
vs stop --dir "$DIR"
expect_rc 0 "stop"
nothing_left "after stop"
echo PASS
