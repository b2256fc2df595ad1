#!/bin/bash
# vramswap start --backend host gives vramfs no device= (there is no GPU to
# name), so that vramfs does not warn that it ignores one; with the cuda
# backend each mount gets its GPU's UUID (test-vramswap-start-fails.sh).

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

vs start --backend host --size 64M --gpu 0,1 --dir "$DIR"
expect_rc 0 "start --backend host"
! grep -q "device=" <<<"$ERR" || { show start; fail "start --backend host passed a device= that vramfs ignores"; }
for n in 0 1; do
  pid=$(stat_value "$DIR/gpu$n" pid)
  ! tr '\0' '\n' <"/proc/$pid/cmdline" | grep -q "device=" ||
    fail "gpu$n's vramfs was given a device=: $(tr '\0' ' ' <"/proc/$pid/cmdline")"
done
vs stop --dir "$DIR"
expect_rc 0 "stop"
echo PASS
