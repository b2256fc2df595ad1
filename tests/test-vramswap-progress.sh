#!/bin/bash
# Progress on long work: on a terminal (script(1) gives one), stop shows
# how much is still in the swap, the rate and the time left while swapoff
# brings pages back, and how long it took; start says what it waits for
# when vramfs takes seconds to reserve the memory.  Without a terminal,
# stop says none of it.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine
command -v script >/dev/null || skip "no script(1) (bsdutils) to give vramswap a terminal"

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
export VRAMSWAP_PROGRESS_INTERVAL=0.05

# on_tty COMMAND...: runs COMMAND with a terminal; its output in TTY_OUT.
on_tty() {
  local cmd
  printf -v cmd '%q ' "$@"
  RC=0
  script -qefc "$cmd" "$BASE/typescript" >/dev/null 2>&1 </dev/null || RC=$?
  TTY_OUT=$(tr '\r' '\n' <"$BASE/typescript" | sed 's/\x1b\[K//g')
}

# pages_in_swap: a 32 MiB process with 160 MiB, stopped once most of it is
# in the swap on LOOP, its limit lifted so that stop may bring it back.
pages_in_swap() {
  CG=$(make_memory_cgroup 32)
  spawn_in_cgroup "$CG" "$BASE/swapper.out" "$VRAMFS_IO" swapper 160 1000 51
  SWAPPER=$SPAWNED
  for ((i = 0; i < 600; i++)); do
    [ "$(swap_used_kib "$LOOP")" -lt $((100 * 1024)) ] || break
    nap 0.1
  done
  kill -STOP "$SWAPPER"
  unlimit_cgroup "$CG"
  info "$(($(swap_used_kib "$LOOP") / 1024)) MiB in the swap"
}

info "stop on a terminal: what is left, the rate, the time left, and the end"
vs start --backend host --size 256M --dir "$DIR"
expect_rc 0 "start"
LOOP=$(loops_under "$DIR/gpu0")
pages_in_swap
on_tty env VRAMSWAP_CONF="$VRAMSWAP_CONF" "$VRAMSWAP" stop --dir "$DIR"
echo "$TTY_OUT" | tail -n 5
[ "$RC" = 0 ] || fail "stop on a terminal exited $RC"
grep -Eq "^gpu0: swapoff $LOOP: [0-9.]+M to bring back into RAM" <<<"$TTY_OUT" || fail "stop does not say how much it brings back"
grep -Eq "^gpu0: swapoff $LOOP: [0-9.]+[KM]? of [0-9.]+M left, [0-9.]+[KM]?/s(, about [0-9]+ s left)?$" <<<"$TTY_OUT" ||
  fail "stop shows no progress (left, rate, time left) while swapoff runs"
grep -q "about [0-9]* s left" <<<"$TTY_OUT" || fail "stop gives no estimate of the time left"
grep -Eq "^gpu0: swapoff $LOOP: [0-9.]+M back in RAM in [0-9]+\.[0-9] s$" <<<"$TTY_OUT" || fail "the progress does not end with how long it took"
grep -q "^gpu0: stopped" <<<"$TTY_OUT" || fail "stop did not stop"
kill -CONT "$SWAPPER"
kill "$SWAPPER" 2>/dev/null || true
wait "$SWAPPER" 2>/dev/null || true

info "stop without a terminal: quiet"
vs start --backend host --size 256M --dir "$DIR"
expect_rc 0 "start again"
LOOP=$(loops_under "$DIR/gpu0")
pages_in_swap
vs stop --dir "$DIR"
expect_rc 0 "stop, no terminal"
! grep -q "left\|bring back\|back in RAM" <<<"$OUT$ERR" || { show stop; fail "stop shows progress without a terminal"; }
kill -CONT "$SWAPPER"
kill "$SWAPPER" 2>/dev/null || true
wait "$SWAPPER" 2>/dev/null || true

info "start that waits on vramfs: says what it waits for, and when it is done"
cat >"$BASE/slow-vramfs" <<SLOW
#!/bin/bash
sleep 1.5
exec "$VRAMFS" "\$@"
SLOW
chmod +x "$BASE/slow-vramfs"
on_tty env VRAMSWAP_CONF="$VRAMSWAP_CONF" VRAMFS="$BASE/slow-vramfs" "$VRAMSWAP" start --backend host --size 64M --dir "$DIR"
echo "$TTY_OUT" | tail -n 3
[ "$RC" = 0 ] || fail "start on a terminal exited $RC"
grep -Eq "^gpu0: vramfs is reserving 64M of RAM \([0-9]+\.[0-9] s so far\)" <<<"$TTY_OUT" || fail "start does not say what it waits for"
grep -Eq "^gpu0: vramfs is reserving 64M of RAM: ready in [0-9]+\.[0-9] s$" <<<"$TTY_OUT" || fail "start does not say when the wait ended"
VRAMFS=$BASE/slow-vramfs vs stop --dir "$DIR"
expect_rc 0 "stop"
echo PASS
