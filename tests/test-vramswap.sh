#!/bin/bash
# vramswap's basic life: status and stop with nothing running, start (a
# swap of the size and priority asked for, with direct I/O), status's row,
# a second start that changes nothing, and stop, which leaves nothing
# behind.  Backend host: RAM stands in for VRAM.  The other
# test-vramswap-*.sh check one behaviour each.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

# --- nothing running ---------------------------------------------------------

info "status with nothing running: exit 3"
vs status --dir "$DIR"
expect_rc 3 "status, nothing running"
grep -q "no VRAM swap" <<<"$OUT" || fail "status with nothing running says: $OUT"

info "stop with nothing running: says so, exit 0"
vs stop --dir "$DIR"
expect_rc 0 "stop, nothing running"
grep -q "nothing to stop" <<<"$OUT" || fail "stop with nothing running says: $OUT"
vs stop --dir "$DIR" --gpu 4
expect_rc 0 "stop --gpu 4, nothing running"
grep -q "gpu4: not running" <<<"$OUT" || fail "stop --gpu 4 says: $OUT"

# --- start, status, start again, stop ------------------------------------------

info "start --backend host --size 256M --priority 7"
vs start --backend host --size 256M --priority 7 --dir "$DIR"
expect_rc 0 "start"
assert_active 0 7
LOOP=$(loop_of 0)
grep -q "gpu0: swap on $LOOP" <<<"$OUT" || fail "start says: $OUT"
# 256 MiB less the one page mkswap keeps for its header.
[ "$(swap_size_kib "$LOOP")" = $((256 * 1024 - 4)) ] ||
  fail "swap size $(swap_size_kib "$LOOP") KiB, expected 256M"
[ "$(stat_value "$DIR/gpu0" backend)" = host ] || fail "the mount is not backend=host"
[ "$(stat_value "$DIR/gpu0" size_bytes)" = $((256 << 20)) ] || fail "the mount is not 256M"
[ "$(stat_value "$DIR/gpu0" lazy)" = 0 ] || fail "mounted lazy without --discard"
PID=$(daemon_pid "$DIR/gpu0")
[ -n "$PID" ] || fail "no vramfs daemon serves $DIR/gpu0"

info "status: exit 0 and a row for gpu0"
vs status --dir "$DIR"
expect_rc 0 "status, one active"
echo "$OUT"
head -n 1 <<<"$OUT" | grep -q '^GPU .*MOUNTPOINT .*LOOP .*DIO .*SIZE .*USED .*HELD .*HITS .*ERRORS .*STATE' ||
  fail "status has no header row"
grep -Eq "^0 +host +$DIR/gpu0 +$LOOP +1 +256M +256M +[^ ]+ +7 +256M .* active$" <<<"$OUT" ||
  fail "status has no active row for gpu0"

info "start again: says already active, changes nothing"
before=$(loops_under "$BASE"; vramfs_mounts_under "$BASE"; awk -v d="$LOOP" '$1 == d { print $1, $3, $5 }' /proc/swaps)
vs start --backend host --size 256M --priority 7 --dir "$DIR"
expect_rc 0 "second start"
grep -q "gpu0: already active" <<<"$OUT" || fail "second start says: $OUT"
after=$(loops_under "$BASE"; vramfs_mounts_under "$BASE"; awk -v d="$LOOP" '$1 == d { print $1, $3, $5 }' /proc/swaps)
[ "$before" = "$after" ] || fail "second start changed things: before: $before after: $after"
[ "$(daemon_pid "$DIR/gpu0")" = "$PID" ] || fail "second start replaced the daemon"

info "stop: swapoff, losetup -d, umount, daemon gone"
vs stop --dir "$DIR"
expect_rc 0 "stop"
grep -q "gpu0: stopped" <<<"$OUT" || fail "stop says: $OUT"
assert_clean "after stop"
! alive "$PID" || fail "the daemon $PID still runs after stop"
[ ! -e "$DIR/gpu0" ] || fail "stop left $DIR/gpu0 behind"
vs status --dir "$DIR"
expect_rc 3 "status after stop"

assert_clean "at the end"
echo "PASS"
