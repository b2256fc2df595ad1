#!/bin/bash
# A refused vramswap sleep puts back at once exactly what it took off, and
# keeps its record for wake until that is done: refused for a memory-
# limited cgroup (nothing taken off), for a busy mount (a shell's folder
# inside it: its stripes were off and detached when the unmount failed),
# for a busy mount where putting back fails too (the record stays, and
# wake puts it back later), and for a daemon that does not answer with
# pages in its swap (nothing touched: they would be lost).  Faked driver settings (VRAMSWAP_SYSROOT), a
# host swap taken for GPU memory (VRAMSWAP_TEST_HOST_IS_VRAM).

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
BUSY=
SWAPPER=
STOPPED=
cleanup_first() {
  [ -z "$STOPPED" ] || kill -CONT "$STOPPED" 2>/dev/null
  [ -z "$BUSY" ] || kill "$BUSY" 2>/dev/null
  [ -z "$SWAPPER" ] || kill -9 "$SWAPPER" 2>/dev/null
}

# Plenty of RAM; GPU memory that does not survive suspend.
fake_machine 24000000 0 disabled
R=$FAKE_ROOT
export VRAMSWAP_SYSROOT=$R VRAMSWAP_TEST_HOST_IS_VRAM=1 PATH=$BASE/bin:$PATH
printf 'BACKEND=host\nSIZE=128M\nSTRIPES=2\nPRIORITY=7\nDIR=%s\n' "$DIR" >"$VRAMSWAP_CONF"

# as_before WHAT: gpu0 runs as started: two stripes, both swap at
# priority 7, served by the daemon it started with.
as_before() {
  local dev stripes
  stripes=$(loops_under "$DIR/gpu0")
  [ "$(wc -w <<<"$stripes")" = 2 ] || fail "$1: gpu0 has stripes '$stripes', not two"
  for dev in $stripes; do
    swap_active "$dev" || fail "$1: $dev is not swap"
    [ "$(awk -v d="$dev" '$1 == d { print $5 }' /proc/swaps)" = 7 ] || fail "$1: $dev is not at priority 7"
  done
  [ "$(stat_value "$DIR/gpu0" keeper_pid)" = "$KEEPER" ] || fail "$1: gpu0's daemon changed"
}

# refused WHAT: sleep suspend is refused (exit 1) within 30 s.
refused() {
  within 30 sleep suspend
  show sleep
  expect_rc 1 "sleep suspend, $1"
}

# swapper_held_in_swap SEED: a process limited to 32 MiB (SWAPPER) works
# on 96 MiB until 48 MiB of it are in gpu0's swap (at most 60 s), and is
# stopped there, so that its pages stay where they are.
swapper_held_in_swap() {
  local i l used
  CG=$(make_memory_cgroup 32)
  spawn_in_cgroup "$CG" "$BASE/swapper.out" "$VRAMFS_IO" swapper 96 1000 "$1"
  SWAPPER=$SPAWNED
  for ((i = 0; i < 600; i++)); do
    used=0
    for l in $(loops_under "$DIR/gpu0"); do used=$((used + $(swap_used_kib "$l"))); done
    [ "$used" -lt $((48 * 1024)) ] || break
    nap 0.1
  done
  kill -STOP "$SWAPPER"
}

vs start
expect_rc 0 "start"
KEEPER=$(stat_value "$DIR/gpu0" keeper_pid)

info "refused for a memory-limited cgroup: nothing taken off, nothing kept"
swapper_held_in_swap 71
refused "a cgroup"
grep -q "cgroup /${CG##*/} holds" <<<"$ERR" || fail "the refusal does not name the cgroup"
as_before "after a refusal for a cgroup"
[ ! -e "$R/run/vramswap.sleep" ] || fail "a refusal that took nothing off kept a record: $(cat "$R/run/vramswap.sleep")"
kill -9 "$SWAPPER"
wait "$SWAPPER" 2>/dev/null || true
SWAPPER=

info "refused for a busy mount: the stripes put back at once on the mount that stayed"
(cd "$DIR/gpu0" && exec sleep 600) &
BUSY=$!
refused "a busy mount"
grep -q "umount $DIR/gpu0 failed" <<<"$ERR" || fail "the refusal does not say that the unmount failed"
as_before "after a refusal for a busy mount"
[ ! -e "$R/run/vramswap.sleep" ] || fail "the record outlived a put-back that worked: $(cat "$R/run/vramswap.sleep")"

info "refused for a busy mount, and putting back fails: the record stays for wake"
mkdir -p "$BASE/nolosetup"
real_losetup=$(command -v losetup)
cat >"$BASE/nolosetup/losetup" <<EOF2
#!/bin/bash
[[ " \$* " != *' --find '* ]] || { echo "losetup: cannot find an unused loop device" >&2; exit 1; }
exec $real_losetup "\$@"
EOF2
chmod +x "$BASE/nolosetup/losetup"
PATH=$BASE/nolosetup:$PATH refused "a busy mount, no loop device to put back"
grep -q "'vramswap wake' tries again" <<<"$ERR" || fail "the refusal does not say that wake tries again"
grep -q "^$DIR	0	" "$R/run/vramswap.sleep" || fail "the record of gpu0 is gone: $(cat "$R/run/vramswap.sleep" 2>&1)"
vs wake
show wake
expect_rc 0 "wake after a put-back that failed"
as_before "after wake"
[ ! -e "$R/run/vramswap.sleep" ] || fail "wake left its record"

kill "$BUSY"
wait "$BUSY" 2>/dev/null || true
BUSY=

info "refused when a daemon that does not answer holds pages: nothing touched"
swapper_held_in_swap 72
STOPPED=$(stat_value "$DIR/gpu0" pid)
kill -STOP "$STOPPED"
probes_of_a_stopped_daemon
refused "a daemon that does not answer"
kill -CONT "$STOPPED"
probes_of_a_running_daemon
grep -q "refusing to suspend: gpu0's vramfs server does not answer" <<<"$ERR" ||
  fail "the refusal does not say that the daemon does not answer"
as_before "after a refusal for a daemon that does not answer"
[ ! -e "$R/run/vramswap.sleep" ] || fail "a refusal that took nothing off kept a record"
kill -9 "$SWAPPER"
wait "$SWAPPER" 2>/dev/null || true
SWAPPER=

vs stop
expect_rc 0 "stop"
echo PASS
