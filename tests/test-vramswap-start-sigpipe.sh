#!/bin/bash
# vramswap start whose output goes to a pipe that closes (| head -1) dies
# of SIGPIPE at its next message, and leaves nothing behind: no mount, no
# loop device, no swap, no folder.  vramfs, wrapped, says one line of
# warning first, as it does where it lacks CAP_SYS_RESOURCE.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

cat >"$BASE/vramfs" <<EOF2
#!/bin/bash
echo "vramfs: warning: a warning, for the test" >&2
exec "$VRAMFS" "\$@"
EOF2
chmod +x "$BASE/vramfs"

# The pipeline's status is head's; vramswap's is the first.
VRAMFS=$BASE/vramfs "$VRAMSWAP" start --backend host --size 256M --stripes 2 --dir "$DIR" 2>&1 |
  head -n 1 >"$BASE/first"
rc=${PIPESTATUS[0]}
echo "start | head -1: exit $rc, printed: $(cat "$BASE/first")"
[ "$rc" = 141 ] || fail "start did not die of SIGPIPE (exit $rc)"
nothing_left "after start died of SIGPIPE"
[ ! -e "$DIR" ] || fail "$DIR left: $(ls -A "$DIR")"
echo PASS
