#!/bin/bash
# status during a stop says "stopping", not what a half-stopped instance
# looks like (active while swapoff runs, no-swap while it unmounts, and
# once "unresponsive (No such file or directory)" when the mount went
# between two looks).  A slow swapoff and a slow umount, faked, give status
# the time to look.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
STOP=
cleanup_first() { [ -z "$STOP" ] || wait "$STOP" 2>/dev/null; }

# slow NAME: a NAME that says it started (BASE/NAME.started), waits 3 s,
# then runs the real one.
mkdir -p "$BASE/bin"
slow() {
  local real
  real=$(PATH=/usr/sbin:/sbin:/usr/bin:/bin command -v "$1")
  printf '#!/bin/bash\ntouch %q\nsleep 3\nexec %q "$@"\n' "$BASE/$1.started" "$real" >"$BASE/bin/$1"
  chmod +x "$BASE/bin/$1"
}
slow swapoff
slow umount

# during NAME: waits until the stop runs the slow NAME, then runs status.
during() {
  local i
  for ((i = 0; i < 300; i++)); do
    [ ! -e "$BASE/$1.started" ] || break
    nap 0.1
  done
  [ -e "$BASE/$1.started" ] || fail "stop did not come to $1"
  vs status --dir "$DIR"
  echo "$OUT"
  grep -q "^0 .* stopping$" <<<"$OUT" || { show status; fail "status during $1 does not say stopping"; }
  grep -q "^gpu0: being stopped by vramswap [0-9]*" <<<"$OUT" || { show status; fail "status during $1 does not say who stops it"; }
}

vs start --backend host --size 64M --dir "$DIR"
expect_rc 0 "start"
PATH=$BASE/bin:$PATH "$VRAMSWAP" stop --dir "$DIR" >"$BASE/stop.out" 2>&1 &
STOP=$!
info "status while swapoff runs"
during swapoff
info "status while umount runs"
during umount
rc=0
wait "$STOP" || rc=$?
STOP=
cat "$BASE/stop.out"
[ "$rc" = 0 ] || fail "the stop failed (exit $rc)"
vs status --dir "$DIR"
expect_rc 3 "status after the stop"
[ ! -e "$DIR" ] || fail "the stop left $DIR: $(ls -A "$DIR")"
echo PASS
