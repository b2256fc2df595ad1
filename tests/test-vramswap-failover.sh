#!/bin/bash
# vramswap with failover (the default): the server killed with SIGKILL
# while a memory-limited process swaps through it is replaced, status stays
# active and counts the restart, and every page comes back; the keeper
# killed leaves the swap working but unprotected, which status says with
# what to do, and stop still takes everything down and waits for the last
# process.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

# status_row: the gpu0 row of vramswap status (exit status in RC).
status_row() {
  vs status --dir "$DIR"
  echo "$OUT"
  ROW=$(grep '^0 ' <<<"$OUT") || fail "status has no row for gpu0"
}

info "start: failover by default"
vs start --backend host --size 256M --dir "$DIR"
expect_rc 0 "start"
grep -q "gpu0: swap on .*failover)" <<<"$OUT" || { show start; fail "start does not say failover"; }
[ "$(stat_value "$DIR/gpu0" failover)" = 1 ] || fail "the default start is not a failover mount"
loop=$(loops_under "$DIR/gpu0")
keeper=$(stat_value "$DIR/gpu0" keeper_pid)
server=$(stat_value "$DIR/gpu0" pid)
[ "$keeper" != "$server" ] || fail "keeper and server are one process"
[ "$(daemon_pid "$DIR/gpu0")" = "$keeper" ] || fail "daemon_pid finds $(daemon_pid "$DIR/gpu0"), not the keeper $keeper"

info "the server killed with SIGKILL while a 32 MiB process works on 128 MiB through the swap"
# The kill comes in the first pass; every later one reads back what it
# wrote.  VRAMFS_SWAP_PASSES: make check's are fewer (Makefile.am).
cg=$(make_memory_cgroup 32)
spawn_in_cgroup "$cg" "$BASE/swapper.out" "$VRAMFS_IO" swapper 128 "${VRAMFS_SWAP_PASSES:-6}" 41
swapper=$SPAWNED
for ((i = 0; i < 600; i++)); do
  [ "$(swap_used_kib "$loop")" -lt $((32 * 1024)) ] || break
  alive "$swapper" || { cat "$BASE/swapper.out"; fail "the swapper ended before it used the swap"; }
  nap 0.1
done
info "$(($(swap_used_kib "$loop") / 1024)) MiB in the swap; kill -9 $server"
kill -KILL "$server"
for ((i = 0; i < 100; i++)); do
  new=$(stat_value "$DIR/gpu0" pid 2>/dev/null) && [ "$new" != "$server" ] && break
  nap 0.1
done
[ "${new:-}" != "$server" ] || fail "no new server within 10 s"
status_row
expect_rc 0 "status after the server was replaced"
grep -Eq ' 1 +active$' <<<"$ROW" || fail "status does not show gpu0 active with 1 restart: $ROW"
vs status --json --dir "$DIR"
python3 -c '
import json, sys
s = json.load(sys.stdin)["swaps"][0]
assert s["state"] == "active" and s["restarts"] == 1 and s["failover"] is True, s
' <<<"$OUT" || fail "status --json does not say active with 1 restart"
rc=0
wait "$swapper" || rc=$?
cat "$BASE/swapper.out"
if [ "$rc" != 0 ] || ! grep -q verified "$BASE/swapper.out"; then
  fail "the swapper lost pages across the server's death (exit $rc)"
fi
[ "$(stat_value "$DIR/gpu0" errors)" = 0 ] || fail "vramfs counted errors"

info "stop: clean, and the keeper, the last process, is gone"
vs stop --dir "$DIR"
expect_rc 0 "stop after a takeover"
grep -q "gpu0: stopped" <<<"$OUT" || { show stop; fail "stop says: $OUT"; }
assert_clean "after stop"
! alive "$keeper" || fail "the keeper $keeper still runs after stop"
! alive "$new" || fail "the server $new still runs after stop"

info "the keeper killed: unprotected, with advice; stop still works"
vs start --backend host --size 128M --dir "$DIR"
expect_rc 0 "start again"
keeper=$(stat_value "$DIR/gpu0" keeper_pid)
server=$(stat_value "$DIR/gpu0" pid)
kill -KILL "$keeper"
for ((i = 0; i < 50; i++)); do
  [ "$(stat_value "$DIR/gpu0" keeper_alive)" = 0 ] && break
  nap 0.1
done
status_row
expect_rc 0 "status, keeper gone (the swap still works)"
grep -Eq ' unprotected$' <<<"$ROW" || fail "status does not show gpu0 unprotected: $ROW"
grep -q "gpu0: the failover keeper $keeper is gone: the server still serves, but if it dies now the pages in its swap are lost; run 'vramswap stop --gpu 0 --dir $DIR' and 'vramswap start' again" <<<"$OUT" ||
  fail "status gives no advice about the dead keeper"
[ "$(daemon_pid "$DIR/gpu0")" = "$server" ] || fail "with the keeper gone, daemon_pid does not find the server $server"
vs stop --dir "$DIR"
expect_rc 0 "stop, keeper gone"
assert_clean "after stopping an unprotected instance"
! alive "$server" || fail "the server $server still runs after stop"

info "--no-failover: one process"
vs start --backend host --size 64M --no-failover --dir "$DIR"
expect_rc 0 "start --no-failover"
[ "$(stat_value "$DIR/gpu0" failover)" = 0 ] || fail "--no-failover mounted with failover"
! grep -q failover <<<"$OUT" || fail "start --no-failover says failover: $OUT"
vs stop --dir "$DIR"
expect_rc 0 "stop --no-failover"
assert_clean "at the end"
echo PASS
