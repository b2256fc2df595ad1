#!/bin/bash
# A shrink that would hurt is refused and changes nothing: a memory-limited
# cgroup whose pages in the stripes to take off fit neither under its limit
# nor in the free swap that stays on is named (its processes would be OOM-killed), and pages that RAM and the
# other swap areas cannot take (a faked /proc/meminfo) are counted in MiB.
# The swapping process goes on, every page verified.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

mnt=$DIR/gpu0

# unchanged WHAT: still 4 stripes of swap, 256 MiB, never resized.
unchanged() {
  local d
  read_stats "$mnt" || fail "$1: .stats: $STATS_ERR"
  [ "${STATS[size_bytes]}" = $((256 * MiB)) ] || fail "$1: the size changed to ${STATS[size_bytes]}"
  [ "${STATS[resizes]}" = 0 ] || fail "$1: vramfs was resized"
  [ "$(loops_under "$mnt" | wc -l)" = 4 ] || fail "$1: $(loops_under "$mnt" | wc -l) loop devices, not 4"
  for d in $(loops_under "$mnt"); do swap_active "$d" || fail "$1: $d is no longer swap"; done
  [ ! -e "$DIR/.gpu0.resize" ] || fail "$1: a resize was recorded"
  echo "ok: $1: nothing changed"
}

# 200 MiB in a 32 MiB cgroup: about 170 MiB in the swap, more than one
# stripe can hold.
start_with_swapper 30 23 200
swapped_150m() { [ "$(swap_used_under "$mnt")" -gt $((150 * 1024)) ]; }
wait_for 60 swapped_150m || fail "the process did not swap 150 MiB ($(swap_used_under "$mnt") KiB)"

info "a cgroup without room for its pages, under its limit or in the stripe that stays: refused, the cgroup named"
vs resize --size 64M --dir "$DIR"
show "resize --size 64M"
expect_rc 1 "a shrink its cgroup cannot take"
grep -q "^vramswap: gpu0: cannot shrink to 64 MiB: cgroup .*$(basename "$CG") holds [0-9]* MiB in swap and has [0-9]* MiB of headroom.*: its processes would be OOM-killed; raise its limit or stop them first (or --force); nothing changed$" <<<"$ERR" ||
  fail "the refusal does not name the cgroup"
[ "$(grep -c . <<<"$ERR")" = 1 ] || fail "more than one line: $ERR"
unchanged "cgroup refusal"

info "pages that RAM and the other swap cannot take: refused, in MiB"
mkdir -p "$BASE/root/proc"
printf 'MemTotal: 24000000 kB\nMemAvailable: 1024 kB\nSwapFree: 2048 kB\n' >"$BASE/root/proc/meminfo"
kill -STOP "$SOAK"  # its pages stay where they are meanwhile
VRAMSWAP_SYSROOT=$BASE/root vs resize --size 64M --dir "$DIR"
kill -CONT "$SOAK"
show "resize, RAM short"
expect_rc 1 "a shrink RAM cannot take"
grep -Eq "^vramswap: gpu0: cannot shrink to 64 MiB: the stripes it would take off hold [0-9]+ MiB, more than the [0-9]+ MiB that RAM and the free space of the other swap areas can take; nothing changed$" <<<"$ERR" ||
  fail "the refusal does not say so"
unchanged "RAM refusal"

expect_swapper_verified
vs stop --dir "$DIR"
expect_rc 0 "stop"
nothing_left "after stop"
echo PASS
