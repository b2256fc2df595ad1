#!/bin/bash
# vramswap and the standby server: start runs one by default (status
# --json and metrics show it ready), --no-standby runs none, and doctor
# warns where the GPU's exclusive-process compute mode leaves no room for
# one.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

info "start: a standby server waits beside the serving one"
vs start --backend host --size 64M --gpu 0 --dir "$DIR"
expect_rc 0 "start"
ready() { [ "$(stat_value "$DIR/gpu0" standby 2>/dev/null)" = ready ]; }
wait_for 20 ready || fail "no standby became ready: $(stat_value "$DIR/gpu0" standby)"
vs status --json --dir "$DIR"
expect_rc 0 "status --json"
grep -q '"standby": "ready"' <<<"$OUT" || { show status --json; fail "status --json does not show the standby ready"; }
vs metrics --dir "$DIR"
expect_rc 0 "metrics"
grep -q '^vramswap_standby_ready{gpu="0".*} 1$' <<<"$OUT" || { show metrics; fail "metrics do not show the standby ready"; }
vs stop --dir "$DIR"
expect_rc 0 "stop"

info "start --no-standby: one server"
vs start --backend host --size 64M --gpu 0 --no-standby --dir "$DIR"
expect_rc 0 "start --no-standby"
sleep 1
[ "$(stat_value "$DIR/gpu0" standby)" = off ] || fail "--no-standby shows standby $(stat_value "$DIR/gpu0" standby)"
keeper=$(stat_value "$DIR/gpu0" keeper_pid)
[ "$(children "$keeper" | wc -l)" = 1 ] || fail "--no-standby runs $(children "$keeper" | wc -l) servers"
vs stop --dir "$DIR"
expect_rc 0 "stop"

info "doctor: a GPU in exclusive-process compute mode gets no standby, and doctor says so"
mkdir -p "$BASE/bin"
cat >"$BASE/bin/nvidia-smi" <<'SMI'
#!/bin/bash
printf '0, NVIDIA H100 80GB HBM3, 80000, 81559, Exclusive_Process\n'
SMI
chmod +x "$BASE/bin/nvidia-smi"
printf 'BACKEND=cuda\nDIR=%s\n' "$DIR" >"$BASE/standby.conf"
PATH=$BASE/bin:$PATH VRAMSWAP_CONF=$BASE/standby.conf vs doctor
grep -q "^warn  standby .*gpu0 is in exclusive-process compute mode" <<<"$OUT" ||
  { show doctor; fail "doctor does not warn about the exclusive-process GPU"; }
printf 'BACKEND=cuda\nSTANDBY=no\nDIR=%s\n' "$DIR" >"$BASE/standby.conf"
PATH=$BASE/bin:$PATH VRAMSWAP_CONF=$BASE/standby.conf vs doctor
! grep -q "^warn  standby" <<<"$OUT" || { show doctor; fail "doctor warns about a standby that STANDBY=no turned off"; }
echo PASS
