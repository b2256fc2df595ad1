#!/bin/bash
# vramswap reads its defaults from the config file (comments, blanks,
# spaces and quotes as a shell would take them): two instances at its
# priority, lazy with DISCARD=yes; stop --gpu 1 stops only that one, and
# flags win over the file.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

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

assert_clean "at the end"
echo "PASS"
