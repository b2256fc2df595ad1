#!/bin/bash
# The daemon killed outright with pages in its swap (without failover):
# status says so and says to stop at once, stop refuses while the owner's
# cgroup is limited, then cleans up and says that pages were lost, and the
# owner gets SIGBUS, never a page with the wrong contents.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

info "the daemon killed outright with pages in its swap (without failover)"
# What a user must never do, done to a sacrificial process in a cgroup: its
# pages die with the daemon, which runs without failover here
# (test-vramswap-failover.sh kills a failover mount's server).  status must say so, stop must clean up and
# say that pages were lost, and the process must get SIGBUS, never a page
# with the wrong contents.
vs start --backend host --size 256M --no-failover --dir "$DIR"
expect_rc 0 "start for the killed-daemon test"
LOOP=$(loop_of 0)
swapper_in_swap "$LOOP" 32 96 1000 12 "$BASE/victim.out"
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
for ((i = 0; i < 300; i++)); do alive "$SWAPPER_PID" || break; nap 0.2; done
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

assert_clean "at the end"
echo "PASS"
