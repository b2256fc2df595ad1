#!/bin/bash
# --transport and --queue-depth reach vramfs (a fake that notes its
# arguments); uring turns on the fuse module's enable_uring (a file that
# stands for it); where there is no enable_uring, or it cannot be set,
# start says so in one line and starts nothing.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps nothing and attaches no loop device (vramfs, and what it would
# do, are fakes): it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

H=(--backend host --size 64M --dir "$DIR")

info "--transport and --queue-depth reach vramfs; uring turns on enable_uring"
cat >"$BASE/fake-vramfs" <<EOF
#!/bin/bash
[ "\$1" != --check-options ] || exec $(command -v "$VRAMFS") "\$@"
echo "\$*" >"$BASE/vramfs-args"
echo "vramfs: unknown option transport" >&2
exit 1
EOF
chmod +x "$BASE/fake-vramfs"
URING=$BASE/enable_uring
echo N >"$URING"
VRAMSWAP_URING_PARAM=$URING VRAMFS=$BASE/fake-vramfs vs start "${H[@]}" --transport dev --queue-depth 8
expect_rc 1 "start --transport dev (a vramfs that refuses it)"
# A queue depth is for uring only (test-vramswap-queue-depth.sh).
grep -q -- "-o .*,transport=dev" "$BASE/vramfs-args" || fail "vramfs got: $(cat "$BASE/vramfs-args")"
! grep -q queue_depth "$BASE/vramfs-args" || fail "vramfs got a queue depth with transport dev: $(cat "$BASE/vramfs-args")"
[ "$(cat "$URING")" = N ] || fail "--transport dev turned enable_uring on"
assert_nothing "start --transport dev, vramfs failing"
VRAMSWAP_URING_PARAM=$URING VRAMFS=$BASE/fake-vramfs vs start "${H[@]}"
! grep -q "transport=\|queue_depth=" "$BASE/vramfs-args" ||
  fail "vramfs got a transport without --transport: $(cat "$BASE/vramfs-args")"
printf 'TRANSPORT=uring\nQUEUE_DEPTH=32\n' >"$BASE/uring.conf"
VRAMSWAP_CONF=$BASE/uring.conf VRAMSWAP_URING_PARAM=$URING VRAMFS=$BASE/fake-vramfs vs start "${H[@]}"
expect_rc 1 "start with TRANSPORT=uring (a vramfs that refuses it)"
grep -q -- "-o .*,transport=uring,queue_depth=32" "$BASE/vramfs-args" || fail "vramfs got: $(cat "$BASE/vramfs-args")"
[ "$(cat "$URING")" = Y ] || fail "TRANSPORT=uring did not turn enable_uring on"
assert_nothing "start with TRANSPORT=uring, vramfs failing"

info "... where the kernel has no enable_uring, or it cannot be set: one line, nothing started"
rm -f "$BASE/vramfs-args"
VRAMSWAP_URING_PARAM=$BASE/missing VRAMFS=$BASE/fake-vramfs vs start "${H[@]}" --transport uring
expect_rc 1 "start --transport uring without enable_uring"
[ "$(wc -l <<<"$ERR")" = 1 ] || { show start; fail "not one line"; }
grep -q "^vramswap: --transport uring: this kernel's fuse module has no $BASE/missing .*; nothing started$" <<<"$ERR" ||
  { show start; fail "a kernel without enable_uring is not reported as such"; }
[ ! -e "$BASE/vramfs-args" ] || fail "vramfs ran although enable_uring is missing"
assert_nothing "start --transport uring without enable_uring"
echo N >"$URING"
chmod 444 "$URING"
# Root without CAP_DAC_OVERRIDE cannot write a read-only file.
RC=0
VRAMSWAP_URING_PARAM=$URING VRAMFS=$BASE/fake-vramfs setpriv --bounding-set=-dac_override \
  "$VRAMSWAP" start "${H[@]}" --transport uring >"$BASE/out" 2>"$BASE/err" || RC=$?
OUT=$(cat "$BASE/out") ERR=$(cat "$BASE/err")
expect_rc 1 "start --transport uring, enable_uring read-only"
grep -q "^vramswap: --transport uring: cannot turn on FUSE over io_uring (writing Y to $URING failed); nothing started$" <<<"$ERR" ||
  { show start; fail "an enable_uring that cannot be set is not reported as such"; }
[ ! -e "$BASE/vramfs-args" ] || fail "vramfs ran although enable_uring could not be set"
assert_nothing "start --transport uring, enable_uring read-only"
echo "PASS"
