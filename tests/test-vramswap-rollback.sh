#!/bin/bash
# A start that fails after the mount rolls back everything it created and
# says which step failed: losetup failing (also with a DIR of several new
# levels), a loop device without direct I/O, mkswap and swapon failing, the
# second GPU failing after the first swaps, SIGTERM while losetup attaches;
# and it leaves alone what was active before it.  The failing steps are
# fakes around the real commands.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

REAL_LOSETUP=$(command -v losetup)
REAL_SWAPON=$(command -v swapon)

# rollback_case WHAT TEXT: start with the fake on PATH fails with TEXT in
# its message and leaves nothing behind.
rollback_case() {
  PATH=$FAKE_PATH vs start --backend host --size 64M --dir "$DIR" --gpu "${3:-0}"
  expect_rc 1 "$1"
  grep -q "$2" <<<"$ERR" || { show start; fail "$1: the message does not say '$2'"; }
  grep -q "rolling back" <<<"$ERR" || { show start; fail "$1: no word of rolling back"; }
  echo "  $1 -> $(grep -v 'rolling back\|^vramfs: warning' <<<"$ERR" | tr '\n' ' ')"
  assert_nothing "$1"
}

info "no free loop device (losetup fails)"
fake losetup 'echo "losetup: cannot find an unused loop device" >&2; exit 1'
rollback_case "losetup failing" "gpu0: attaching a loop device (losetup) failed: losetup failed: losetup: cannot find an unused loop device"
info "... with a DIR of several new levels and spaces: all of them removed"
SAVED_DIR=$DIR
DIR="$BASE/new dir/deeper/run"
rollback_case "losetup failing, nested DIR" "gpu0: attaching a loop device (losetup) failed"
[ ! -e "$BASE/new dir" ] || fail "rollback left $BASE/new dir behind"
DIR=$SAVED_DIR

info "a loop device without direct I/O is refused"
fake losetup "args=(); for a in \"\$@\"; do [ \"\$a\" = --direct-io=on ] || args+=(\"\$a\"); done; exec $REAL_LOSETUP \"\${args[@]}\""
rollback_case "loop without dio" "gpu0: attaching a loop device (losetup) failed: /dev/loop[0-9]* has dio=0, not 1"

info "mkswap fails"
fake mkswap 'echo "mkswap: error: swap area needs to be at least 40 KiB" >&2; exit 1'
rollback_case "mkswap failing" "gpu0: mkswap /dev/loop[0-9]* failed: mkswap: error: swap area needs"

info "swapon fails"
fake swapon 'echo "swapon: /dev/loop9: swapon failed: Device or resource busy" >&2; exit 1'
rollback_case "swapon failing" "gpu0: swapon --priority 100 /dev/loop[0-9]* failed: swapon: .*busy"

info "the second GPU fails: the first, already swapping, is rolled back too"
fake swapon "if [ -e $BASE/swapon-once ]; then echo 'swapon: failed' >&2; exit 1; fi
touch $BASE/swapon-once; exec $REAL_SWAPON \"\$@\""
rollback_case "second swapon failing" "gpu1: swapon .* failed" 0,1
grep -q "rolling back: swapoff" <<<"$ERR" || fail "the first GPU's swap was not turned off again"

info "a signal while losetup attaches: the new loop device is rolled back too"
# The fake attaches for real, then sends SIGTERM to the vramswap that runs
# it (the outermost process running VRAMSWAP), before vramswap has seen the
# device's name: only an undo entry pushed before the step can find it.
cat >"$BASE/interrupting-losetup" <<EOF
#!/bin/bash
[[ " \$* " == *' --find '* ]] || exec $REAL_LOSETUP "\$@"
$REAL_LOSETUP "\$@"
p=\$PPID top=
while [ "\$p" -gt 1 ]; do
  [ "\$(tr '\\0' '\\n' </proc/\$p/cmdline | sed -n 2p)" != "$VRAMSWAP" ] || top=\$p
  p=\$(awk '{ print \$4 }' /proc/\$p/stat)
done
kill -TERM "\$top"
sleep 0.5
EOF
fake losetup "exec bash $BASE/interrupting-losetup \"\$@\""
PATH=$FAKE_PATH vs start --backend host --size 64M --dir "$DIR"
expect_rc 143 "start interrupted while losetup attaches (SIGTERM)"
grep -q "^vramswap: interrupted" <<<"$ERR" || { show start; fail "the interrupted start does not say so"; }
echo "  -> $(tr '\n' ' ' <<<"$ERR")"
assert_nothing "start interrupted while losetup attaches"

info "what was already active before the start is left alone"
# The fake swapon of "the second GPU fails" again.
FAKE_PATH=$BASE/fake-swapon:$PATH
vs start --backend host --size 64M --dir "$DIR"
expect_rc 0 "start gpu0"
LOOP=$(loops_under "$DIR/gpu0")
swap_active "$LOOP" || fail "gpu0 did not start"
rm -f "$BASE/swapon-once"
touch "$BASE/swapon-once"
PATH=$FAKE_PATH vs start --backend host --size 64M --dir "$DIR" --gpu 0,1
expect_rc 1 "start --gpu 0,1 with gpu0 active"
grep -q "gpu0: already active" <<<"$OUT" || { show start; fail "gpu0 not reported as already active"; }
grep -q "gpu1: swapon .* failed" <<<"$ERR" || { show start; fail "the gpu1 failure is not reported"; }
swap_active "$LOOP" || fail "a failed start rolled back gpu0, which it did not create"
[ "$(loops_under "$DIR/gpu0")" = "$LOOP" ] || fail "gpu0's loop device changed"
[ -z "$(loops_under "$DIR/gpu1")" ] || fail "gpu1's loop device was left"
! mountpoint -q "$DIR/gpu1" || fail "gpu1 was left mounted"
vs stop --dir "$DIR"
expect_rc 0 "stop"
assert_nothing "after stop"
echo "PASS"
