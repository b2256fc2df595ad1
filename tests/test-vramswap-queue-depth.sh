#!/bin/bash
# --queue-depth (QUEUE_DEPTH=) has one range, vramfs's own, 1 to 128, and
# is checked once, before anything is made: 129 is refused by vramswap, not
# by the mount.  It applies to --transport uring only: with the classic
# transport it is ignored, with a warning that names where it came from,
# and not passed to vramfs.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
H=(--backend host --size 64M --dir "$DIR")

info "out of range: refused before anything is made"
for q in 0 129 200 65535; do
  vs start "${H[@]}" --transport uring --queue-depth "$q"
  expect_rc 2 "--queue-depth $q"
  [ "$ERR" = "vramswap: bad --queue-depth value '$q': expected a number from 1 to 128" ] ||
    { show start; fail "--queue-depth $q is not refused with the range 1 to 128"; }
  [ ! -e "$DIR" ] || fail "--queue-depth $q: $DIR was made"
done

info "the classic transport: ignored, with a warning, and not passed on"
vs start "${H[@]}" --transport dev --queue-depth 8
expect_rc 0 "start --transport dev --queue-depth 8"
grep -q "^vramswap: --queue-depth applies to --transport uring only; ignored$" <<<"$ERR" ||
  { show start; fail "--queue-depth with --transport dev is not ignored with a warning"; }
! grep -q "queue_depth" <<<"$(tr '\0' ' ' <"/proc/$(stat_value "$DIR/gpu0" pid)/cmdline")" ||
  fail "vramfs was given a queue_depth with --transport dev"
vs stop --dir "$DIR"
expect_rc 0 "stop"

info "... and from the configuration file, without a transport"
printf 'QUEUE_DEPTH=32\n' >>"$VRAMSWAP_CONF"
vs start "${H[@]}"
expect_rc 0 "start with QUEUE_DEPTH=32"
grep -q "^vramswap: $VRAMSWAP_CONF:2: QUEUE_DEPTH applies to TRANSPORT=uring only; ignored$" <<<"$ERR" ||
  { show start; fail "QUEUE_DEPTH without TRANSPORT=uring is not ignored with a warning"; }
vs stop --dir "$DIR"
expect_rc 0 "stop"
echo PASS
