# shellcheck shell=bash
# Helpers for the vramswap tests; sourced after functions.sh.  The test
# runs vramswap with --dir under BASE, a directory functions.sh tears down:
# whatever vramswap left there (loop devices, mounts, swap) goes with it, in
# the safe order.

: "${VRAMSWAP:=$TESTS_DIR/../scripts/vramswap}"
[ -x "$VRAMSWAP" ] || fail "no vramswap script at $VRAMSWAP (set VRAMSWAP)"
command -v "$VRAMFS" >/dev/null || fail "no vramfs binary at $VRAMFS (set VRAMFS)"

BASE=$(make_tempdir)
# shellcheck disable=SC2034 # the tests' --dir
DIR=$BASE/run
# The machine's /etc/vramswap.conf must not change what the tests do.  The
# tests' own says one loop device per GPU: most of them look at one swap
# area; test-vramswap-stripes checks the default of several.
export VRAMSWAP_CONF=$BASE/tests.conf
echo "STRIPES=1" >"$VRAMSWAP_CONF"

# vs ARGS...: runs vramswap; OUT, ERR and RC hold what happened.
vs() {
  RC=0
  "$VRAMSWAP" "$@" >"$BASE/out" 2>"$BASE/err" || RC=$?
  OUT=$(cat "$BASE/out")
  ERR=$(cat "$BASE/err")
}
show() { echo "vramswap $*: rc=$RC"; echo "stdout: $OUT"; echo "stderr: $ERR"; }
expect_rc() { # RC WHAT
  [ "$RC" = "$1" ] || { show "($2)"; fail "$2: exit status $RC, expected $1"; }
}
