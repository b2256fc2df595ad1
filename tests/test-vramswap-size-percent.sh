#!/bin/bash
# A size in percent (--size 50%, SIZE=75% in the configuration file, as the
# man page's example has it) is a share of the backend's memory, not a
# number of bytes: vramswap starts with it, and the swap is that share.
# Backend host with --discard: the memory is taken only as it is written.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

ram=$(($(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo) * 1024))

# expect_share PERCENT: gpu0 runs, and its size is PERCENT of RAM (vramfs
# rounds it down to a whole block).
expect_share() {
  local size want=$(($1 * ram / 100))
  size=$(stat_value "$DIR/gpu0" size_bytes)
  if [ "$size" -gt "$want" ] || [ "$size" -le $((want - (1 << 20))) ]; then
    fail "gpu0 is $size bytes, not $1% of $ram ($want)"
  fi
  echo "gpu0: $size bytes, $1% of $ram"
  swap_active "$(loops_under "$DIR/gpu0" | head -n 1)" || fail "gpu0 is not swap"
}

info "start --size 50%"
vs start --backend host --size 50% --discard --dir "$DIR"
expect_rc 0 "start --size 50%"
expect_share 50
vs stop --dir "$DIR"
expect_rc 0 "stop"

info "SIZE=75% in the configuration file"
printf 'BACKEND=host\nSIZE=75%%\nDISCARD=yes\nSTRIPES=2\nDIR=%s\n' "$DIR" >"$VRAMSWAP_CONF"
vs start
expect_rc 0 "start with SIZE=75%"
expect_share 75
[ "$(loops_under "$DIR/gpu0" | wc -l)" = 2 ] || fail "SIZE=75% with STRIPES=2 did not give 2 stripes"
vs stop
expect_rc 0 "stop"
echo PASS
