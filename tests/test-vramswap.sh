#!/bin/bash
# vramswap for real: start, status, stop, start twice, defaults from the
# config file, several instances, a relative --dir that a plain status and
# stop still find, stop while a process has pages in the swap (refused
# while its memory-limited cgroup could not take them back), and the broken
# states status must show and stop must end cleanly (mount without swap,
# daemon gone, daemon stopped, swap without mount).  Backend host: RAM
# stands in for VRAM.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
SWAPPER_PID=
ORPHAN_LOOP=
CG=
STOPPED_DAEMON=

cleanup_first() {
  # A daemon stopped on purpose must run again, or swapoff would wait on it.
  [ -z "$STOPPED_DAEMON" ] || kill -CONT "$STOPPED_DAEMON" 2>/dev/null
  # A loop device whose mount was lazily unmounted: its file reads
  # /swapfile, not a path under BASE.
  if [ -n "$ORPHAN_LOOP" ] && [ "$(loop_backing "$ORPHAN_LOOP")" = /swapfile ]; then
    register swap "$ORPHAN_LOOP"
    register loop "$ORPHAN_LOOP"
  fi
}

swap_prio() { awk -v d="$1" '$1 == d { print $5 }' /proc/swaps; }
swap_size_kib() { awk -v d="$1" '$1 == d { print $3 }' /proc/swaps; }

# Nothing of ours is left: no loop device, mount or swap.
assert_clean() { # WHAT
  local dev
  [ -z "$(loops_under "$BASE")" ] || fail "$1: loop devices left: $(loops_under "$BASE")"
  [ -z "$(vramfs_mounts_under "$BASE")" ] || fail "$1: mounts left: $(vramfs_mounts_under "$BASE")"
  ! grep -q "^$BASE/" <(mount_table | cut -f4) || fail "$1: mounts left: $(mount_table | grep "$BASE/")"
  # Every loop device a test saw (loop_of runs in command substitutions,
  # so they are kept in a file).
  [ -f "$BASE/seen" ] || return 0
  while read -r dev; do
    ! swap_active "$dev" || fail "$1: $dev is still swap"
  done <"$BASE/seen"
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

# The single loop device of instance N; fails unless there is exactly one.
loop_of() {
  local loops
  loops=$(loops_under "$DIR/gpu$1")
  [ -n "$loops" ] || fail "gpu$1: no loop device holds $DIR/gpu$1/swapfile"
  [ "$(wc -w <<<"$loops")" = 1 ] || fail "gpu$1: several loop devices: $loops"
  echo "$loops" >>"$BASE/seen"
  echo "$loops"
}

# Instance N is fully set up: mount, loop with dio, swap at priority P.
assert_active() { # N PRIORITY
  local loop
  mountpoint -q "$DIR/gpu$1" || fail "gpu$1: $DIR/gpu$1 is not mounted"
  [ "$(vramfs_mounts_under "$DIR/gpu$1")" = "$DIR/gpu$1" ] || fail "gpu$1: not a fuse.vramfs mount"
  loop=$(loop_of "$1")
  [ "$(cat "/sys/block/${loop#/dev/}/loop/dio")" = 1 ] || fail "gpu$1: $loop without direct I/O"
  swap_active "$loop" || fail "gpu$1: $loop is not in /proc/swaps"
  [ "$(swap_prio "$loop")" = "$2" ] || fail "gpu$1: priority $(swap_prio "$loop"), expected $2"
}

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

# --- the config file, several instances, flags over the file --------------------

info "defaults from the config file: two instances, priority 5, discard"
CONF=$BASE/vramswap.conf
cat >"$CONF" <<EOF
# a comment, then a blank line

BACKEND=host
  SIZE = "128M"
PRIORITY='5'
DISCARD=yes
GPU=0,1
CACHE=
STRIPES=1
DIR=$DIR
EOF
VRAMSWAP_CONF=$CONF vs start
expect_rc 0 "start from the config file"
assert_active 0 5
assert_active 1 5
for n in 0 1; do
  [ "$(stat_value "$DIR/gpu$n" lazy)" = 1 ] || fail "DISCARD=yes did not mount gpu$n lazy"
  [ "$(stat_value "$DIR/gpu$n" size_bytes)" = $((128 << 20)) ] || fail "gpu$n is not SIZE=128M"
done
VRAMSWAP_CONF=$CONF vs status
expect_rc 0 "status, two active"
[ "$(grep -c ' active$' <<<"$OUT")" = 2 ] || { echo "$OUT"; fail "status does not show two active rows"; }

info "stop --gpu 1 stops only gpu1"
LOOP1=$(loop_of 1)
VRAMSWAP_CONF=$CONF vs stop --gpu 1
expect_rc 0 "stop --gpu 1"
! swap_active "$LOOP1" || fail "gpu1 is still swap"
! mountpoint -q "$DIR/gpu1" || fail "gpu1 is still mounted"
assert_active 0 5

info "flags win over the file: --priority 9 --no-discard --gpu 1"
VRAMSWAP_CONF=$CONF vs start --priority 9 --no-discard --gpu 1
expect_rc 0 "start --gpu 1 with flags"
assert_active 1 9
assert_active 0 5
[ "$(stat_value "$DIR/gpu1" lazy)" = 0 ] || fail "--no-discard did not win over DISCARD=yes"
VRAMSWAP_CONF=$CONF vs stop
expect_rc 0 "stop both"
assert_clean "after stopping both"

info "a DIR with spaces, several levels of it new"
SDIR="$BASE/with space/run dir"
vs start --backend host --size 64M --dir "$SDIR"
expect_rc 0 "start with spaces in DIR"
LOOP=$(loops_under "$SDIR/gpu0")
echo "$LOOP" >>"$BASE/seen"
[ -n "$LOOP" ] || fail "no loop device for $SDIR/gpu0"
swap_active "$LOOP" || fail "no swap for $SDIR/gpu0"
mountpoint -q "$SDIR/gpu0" || fail "$SDIR/gpu0 is not mounted"
vs status --dir "$SDIR"
expect_rc 0 "status with spaces in DIR"
grep -q "$SDIR/gpu0 .* active$" <<<"$OUT" || { echo "$OUT"; fail "status does not show $SDIR/gpu0"; }
vs stop --dir "$SDIR"
expect_rc 0 "stop with spaces in DIR"
assert_clean "after stop with spaces in DIR"

info "a relative --dir: a plain status and stop (no --dir) find it"
(cd "$BASE" && vs start --backend host --size 64M --dir rel/run && expect_rc 0 "start --dir rel/run")
mountpoint -q "$BASE/rel/run/gpu0" || fail "start --dir rel/run did not mount $BASE/rel/run/gpu0"
vs status
expect_rc 0 "status without --dir, an instance under $BASE/rel/run"
grep -q "^0 .*$BASE/rel/run/gpu0 .* active$" <<<"$OUT" || { show status; fail "a plain status does not show $BASE/rel/run/gpu0"; }
vs stop --gpu 0
expect_rc 0 "stop --gpu 0 without --dir"
grep -q "gpu0: stopped" <<<"$OUT" || { show stop; fail "a plain stop did not stop $BASE/rel/run/gpu0"; }
assert_clean "after a plain stop of an instance under a relative --dir"

info "status without root says it needs root"
vs start --backend host --size 64M --dir "$DIR"
expect_rc 0 "start for the status-without-root test"
RC=0
OUT=$(setpriv --reuid=65534 --regid=65534 --clear-groups env VRAMSWAP_CONF=/nonexistent \
  "$VRAMSWAP" status --dir "$DIR" 2>&1) || RC=$?
echo "$OUT"
[ "$RC" = 1 ] || fail "status without root: exit status $RC, expected 1"
grep -q "^vramswap: status needs root" <<<"$OUT" || fail "status without root does not say it needs root"
! grep -q unresponsive <<<"$OUT" || fail "status without root calls a healthy swap unresponsive"
vs stop --dir "$DIR"
expect_rc 0 "stop after the status-without-root test"

# --- stop while a process has pages in the swap ---------------------------------

# swapper_in_swap LIMIT_MIB MIB PASSES SEED OUTPUT: starts vramfs-io swapper
# in a new memory cgroup CG (pid in SWAPPER_PID) and waits until LIMIT_MIB
# of its pages are in the swap on LOOP.
swapper_in_swap() {
  local limit=$1 out=$5 i used
  CG=$(make_memory_cgroup "$limit")
  spawn_in_cgroup "$CG" "$out" "$VRAMFS_IO" swapper "$2" "$3" "$4"
  SWAPPER_PID=$SPAWNED
  for ((i = 0; i < 600; i++)); do
    used=$(swap_used_kib "$LOOP")
    [ "${used:-0}" -lt $((limit * 1024)) ] || return 0
    alive "$SWAPPER_PID" || { cat "$out"; fail "the swapper ended before it used the swap"; }
    sleep 0.2
  done
  fail "only ${used:-0} KiB went to the swap in 120 s"
}

info "stop while a memory-limited process has pages in the swap"
# Two instances at one priority: the swapper's pages go to both.
vs start --backend host --size 256M --gpu 0,1 --dir "$DIR"
expect_rc 0 "start for the pressure test"
LOOP1=$(loop_of 1)
LOOP=$(loop_of 0)
# 256 MiB in a 64 MiB cgroup: most of it must go through the swap, every
# page is checked on each pass.
swapper_in_swap 64 256 8 11 "$BASE/swapper.out"
info "... refused while the swapper's cgroup could not take its pages back"
# Stopped, so that what stop reads is what was measured: a running swapper
# frees swap slots as it writes its pages back in, and its cgroup may drop
# below its limit for a moment, and stop would then rightly let it through.
kill -STOP "$SWAPPER_PID"
vs stop --dir "$DIR" --gpu 0
expect_rc 1 "stop with a memory-limited cgroup in the swap"
echo "$ERR"
grep -Eq "^vramswap: cgroup /${CG##*/} holds [0-9]+ MiB in swap and has [0-9]+ MiB of headroom; its processes would be OOM-killed; raise its limit or stop them first" <<<"$ERR" ||
  { show stop; fail "stop does not name the cgroup whose processes swapoff would OOM-kill"; }
swap_active "$LOOP" || fail "the refused stop turned the swap off"
alive "$SWAPPER_PID" || fail "the swapper died in the refused stop"
info "... --force stops gpu0 anyway (the cgroup makes room in gpu1's swap)"
vs stop --dir "$DIR" --gpu 0 --force
echo "$ERR"
expect_rc 0 "stop --gpu 0 --force"
grep -q "^vramswap: cgroup /${CG##*/} holds .* --force: its processes may be OOM-killed" <<<"$ERR" ||
  { show stop; fail "stop --force does not name the cgroup at risk"; }
! swap_active "$LOOP" || fail "stop --force left gpu0's swap on"
swap_active "$LOOP1" || fail "stop --gpu 0 --force turned gpu1's swap off"
alive "$SWAPPER_PID" || fail "the swapper died in stop --force"
info "... and a plain stop goes through once the limit is raised"
LOOP=$LOOP1
unlimit_cgroup "$CG"  # first: the swapper does not go on against its old limit
kill -CONT "$SWAPPER_PID"
used=$(swap_used_kib "$LOOP")
alive "$SWAPPER_PID" || fail "the swapper finished before stop; nothing was tested"
info "$((used / 1024)) MiB of the swapper's pages in the swap; stopping"
vs stop --dir "$DIR"
expect_rc 0 "stop with pages in the swap"
assert_clean "after stop with pages in the swap"
if alive "$SWAPPER_PID" && [ "$(awk 'NR > 1' /proc/swaps | wc -l)" = 0 ]; then
  swapped=$(awk '/^VmSwap:/ { print $2 }' "/proc/$SWAPPER_PID/status" 2>/dev/null || echo 0)
  [ "${swapped:-0}" = 0 ] || fail "the swapper still has $swapped KiB swapped after swapoff"
fi
rc=0
wait "$SWAPPER_PID" || rc=$?
SWAPPER_PID=
ORPHAN_LOOP=
CG=
cat "$BASE/swapper.out"
[ "$rc" = 0 ] || fail "the swapper failed (exit $rc) after its pages came back from the swap"
grep -q "verified" "$BASE/swapper.out" || fail "the swapper did not verify its pages"

info "the daemon killed outright with pages in its swap (without failover)"
# What a user must never do, done to a sacrificial process in a cgroup: its
# pages die with the daemon, which runs without failover here
# (test-vramswap-failover.sh kills a failover mount's server).  status must say so, stop must clean up and
# say that pages were lost, and the process must get SIGBUS, never a page
# with the wrong contents.
vs start --backend host --size 256M --no-failover --dir "$DIR"
expect_rc 0 "start for the killed-daemon test"
LOOP=$(loop_of 0)
swapper_in_swap 32 96 1000 12 "$BASE/victim.out"
# Stopped, so that it touches nothing until the teardown is over.  Its
# limit stays at first: swapoff charges it for the pages it tries to read
# back, even from a dead daemon, so stop refuses.
kill -STOP "$SWAPPER_PID"
kill -9 "$(daemon_pid "$DIR/gpu0")"
sleep 0.5
expect_broken 0 dead "pages swapped to it are lost and processes that touch them get SIGBUS" "$LOOP"
# Its swap is still on at its priority: status must say to turn it off now.
grep -q "its swap is still on at its priority, so pages swapped out to it now fail too; run 'vramswap stop --gpu 0 --dir $DIR' at once" <<<"$OUT" ||
  fail "status does not say that a dead daemon's swap is still on and must be stopped at once"
vs stop --dir "$DIR"
expect_rc 1 "stop, a dead daemon, the victim's cgroup limited"
grep -q "cgroup /${CG##*/} holds .* (or stop --force)" <<<"$ERR" || { show stop; fail "stop did not refuse for the victim's cgroup"; }
swap_active "$LOOP" || fail "the refused stop turned the swap off"
unlimit_cgroup "$CG"
vs stop --dir "$DIR"
expect_rc 1 "stop after the daemon was killed with pages in the swap"
echo "$ERR"
grep -q "gpu0: stopped, but the vramfs daemon was dead .* could not be read back; processes that owned those pages get SIGBUS" <<<"$ERR" ||
  fail "stop does not say that pages were lost"
assert_clean "after stopping the killed instance"
kill -CONT "$SWAPPER_PID"
for ((i = 0; i < 300; i++)); do alive "$SWAPPER_PID" || break; sleep 0.2; done
alive "$SWAPPER_PID" && fail "the victim still runs 60 s after its pages were lost"
rc=0
wait "$SWAPPER_PID" || rc=$?
SWAPPER_PID=
CG=
cat "$BASE/victim.out"
! grep -q "came back changed" "$BASE/victim.out" || fail "a lost page came back with the wrong contents"
[ "$rc" != 0 ] || fail "the victim finished although its pages were lost"
# 135 is SIGBUS; a sanitizer build reports it its own way.
echo "the victim ended with exit status $rc"

# --- broken states: status shows them, stop cleans them up ----------------------

info "a mount without swap: status shows it, start refuses, stop unmounts"
# The state, not the device, matters here: a host mount named gpu3.
VRAMFS_TEST_BACKEND=host mount_vramfs "$DIR/gpu3" "size=64M"
expect_broken 3 no-swap "gpu3: mounted but not used as swap.*vramswap stop --gpu 3"
vs start --backend host --size 64M --gpu 3 --dir "$DIR"
expect_rc 1 "start over a half set-up gpu3"
grep -q "gpu3: partly set up" <<<"$ERR" || fail "start over gpu3 says: $ERR"
[ -z "$(loops_under "$DIR/gpu3")" ] || fail "the refused start attached a loop device"
vs stop --gpu 3 --dir "$DIR"
expect_rc 0 "stop gpu3"
assert_clean "after stopping the mount without swap"

info "a daemon that died: status says so, stop cleans up"
vs start --backend host --size 64M --no-failover --dir "$DIR"
expect_rc 0 "start for the dead-daemon test"
LOOP=$(loop_of 0)
# Swap goes off by hand first: a dead swap device that holds pages of other
# processes on this machine would hurt them.
swapoff "$LOOP"
kill -9 "$(daemon_pid "$DIR/gpu0")"
sleep 0.5
expect_broken 0 dead \
  "gpu0: the vramfs daemon is gone (Transport endpoint is not connected).*vramswap stop --gpu 0" "$LOOP"
vs stop --dir "$DIR"
expect_rc 0 "stop a dead instance"
assert_clean "after stopping the dead instance"

info "a daemon that does not answer: status says so, stop leaves it running"
vs start --backend host --size 64M --no-failover --dir "$DIR"
expect_rc 0 "start for the unresponsive test"
LOOP=$(loop_of 0)
STOPPED_DAEMON=$(daemon_pid "$DIR/gpu0")
kill -STOP "$STOPPED_DAEMON"
expect_broken 0 unresponsive "gpu0: the vramfs server $STOPPED_DAEMON does not answer" "$LOOP"
vs stop --dir "$DIR"
expect_rc 1 "stop with an unresponsive daemon"
echo "$ERR"
grep -Eq "gpu0: the vramfs server $STOPPED_DAEMON does not answer.*swapoff would wait on it" <<<"$ERR" ||
  fail "stop does not say why it refused"
swap_active "$LOOP" || fail "stop turned the swap off although the daemon does not answer"
info "... and without swap: status and stop still end, within their deadlines"
swapoff "$LOOP"
SECONDS=0
RC=0
timeout 60 "$VRAMSWAP" status --dir "$DIR" >"$BASE/out" 2>&1 || RC=$?
[ "$RC" != 124 ] || fail "status hangs on a daemon that does not answer"
grep -q " unresponsive$" "$BASE/out" || { cat "$BASE/out"; fail "status does not show the stopped daemon as unresponsive"; }
RC=0
timeout 60 "$VRAMSWAP" stop --dir "$DIR" >"$BASE/out" 2>"$BASE/err" || RC=$?
OUT=$(cat "$BASE/out") ERR=$(cat "$BASE/err")
[ "$RC" != 124 ] || fail "stop hangs on a daemon that does not answer"
[ "$SECONDS" -lt 40 ] || fail "status and stop took $SECONDS s on a stopped daemon"
expect_rc 1 "stop, a stopped daemon without swap"
grep -q "gpu0: the vramfs server $STOPPED_DAEMON does not answer .*nothing is swapped to it" <<<"$ERR" ||
  { show stop; fail "stop does not say why it left the stopped daemon"; }
is_mounted "$DIR/gpu0" || fail "stop unmounted a daemon that does not answer"
kill -CONT "$STOPPED_DAEMON"
STOPPED_DAEMON=
vs stop --dir "$DIR"
expect_rc 0 "stop once the daemon answers again"
assert_clean "after stopping the resumed instance"

info "swap whose mount was lazily unmounted: status says so, stop cleans up"
vs start --backend host --size 256M --dir "$DIR"
expect_rc 0 "start for the no-mount test"
LOOP=$(loop_of 0)
PID=$(daemon_pid "$DIR/gpu0")
ORPHAN_LOOP=$LOOP
# Pages in the swap, which stop reads back through the loop device: the
# daemon serves them although its mount is gone, so nothing is lost.
swapper_in_swap 32 96 4 13 "$BASE/lazy.out"
kill -STOP "$SWAPPER_PID"
unlimit_cgroup "$CG"
umount -l "$DIR/gpu0"
expect_broken 0 no-mount "gpu0: swap on $LOOP but its vramfs mount is gone" "$LOOP"
vs stop --dir "$DIR"
show stop
expect_rc 0 "stop without mount, pages in the swap"
! grep -q "could not be read back" <<<"$ERR" || fail "stop reports lost pages although the daemon served them"
swap_active "$LOOP" && fail "$LOOP is still swap after stop"
ORPHAN_LOOP=
assert_clean "after stopping the unmounted instance"
info "... every page the process had in the swap came back"
kill -CONT "$SWAPPER_PID"
rc=0
wait "$SWAPPER_PID" || rc=$?
SWAPPER_PID=
cat "$BASE/lazy.out"
if [ "$rc" != 0 ] || ! grep -q verified "$BASE/lazy.out"; then
  fail "the process failed (exit $rc) after stop read its pages back from a lazily unmounted instance"
fi
! alive "$PID" || fail "the daemon $PID still runs after stop"

info "finally: no swap, loop device or mount of ours is left"
assert_clean "at the end"
echo "PASS"
