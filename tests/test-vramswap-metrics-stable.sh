#!/bin/bash
# Each Prometheus series of vramswap metrics keeps its labels for the whole
# life of its swap, and vramswap_size_bytes is the size of the swap: the
# same for root and for a user who cannot read .stats, and the same once
# the daemon died (backend host, not "unknown"; 64M, not 64M less the swap
# headers).  Also status's SIZE column for a degraded swap.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine
command -v python3 >/dev/null || skip "no python3 to read the metrics back"

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
PROM=$TESTS_DIR/prometheus_text.py

# series AS: the labels (but state) and value of every vramswap_size_bytes
# and vramswap_state sample, one a line, from metrics run as AS (root or
# nobody).
series() {
  local out
  if [ "$1" = root ]; then
    out=$("$VRAMSWAP" metrics --dir "$DIR" 2>/dev/null) || true
  else
    out=$(setpriv --reuid=65534 --regid=65534 --clear-groups env VRAMSWAP_CONF=/nonexistent \
      VRAMSWAP_LIB="$VRAMSWAP_LIB" "$VRAMSWAP" metrics --dir "$DIR" 2>/dev/null) || true
  fi
  python3 "$PROM" <<<"$out" | python3 -c '
import json, sys
m = json.load(sys.stdin)
for s in m["vramswap_size_bytes"]["samples"]:
    print("size", sorted(s["labels"].items()), s["value"])
labels = {tuple(sorted((k, v) for k, v in s["labels"].items() if k != "state")) for s in m["vramswap_state"]["samples"]}
for l in sorted(labels):
    print("state", list(l))
'
}

# A user may look into the folder, as into /run/vramswap.
chmod 755 "$BASE"
vs start --backend host --size 64M --stripes 4 --no-failover --dir "$DIR"
expect_rc 0 "start"
alive=$(series root)
echo "$alive"
grep -Eq "^size .*\('backend', 'host'\).* $((64 << 20))(\.0)?$" <<<"$alive" || fail "the size is not 64M, or the backend not host"

info "a user who cannot read .stats sees the same series"
nobody=$(series nobody)
[ "$nobody" = "$alive" ] || fail "as nobody: $nobody"

info "the same once the daemon died"
kill -9 "$(daemon_pid "$DIR/gpu0")"
sleep 0.5
dead=$(series root)
[ "$dead" = "$alive" ] || fail "with the daemon dead: $dead"
vs status --dir "$DIR"
grep -q "^0 .* 64M .* dead$" <<<"$OUT" || { show status; fail "status does not show a dead 64M swap"; }
vs stop --dir "$DIR"
expect_rc 0 "stop the dead swap"

info "a degraded swap's size is what is left of it"
vs start --backend host --size 128M --stripes 2 --dir "$DIR"
expect_rc 0 "start"
swapoff "$(loops_under "$DIR/gpu0" | tail -n 1)"
vs status --dir "$DIR"
grep -q "^0 .* 64M .* degraded$" <<<"$OUT" || { show status; fail "status does not show 64M left of a 128M swap"; }
vs stop --dir "$DIR"
expect_rc 0 "stop"
echo PASS
