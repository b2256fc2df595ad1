#!/bin/bash
# What vramswap reports: status --json (read back with python3's json
# module), metrics (read back by tests/prometheus_text.py, a strict reader of
# the Prometheus text format), with no swap, with one, under a DIR whose
# name needs escaping, with a dead daemon and without root; doctor on the
# dead daemon (test-vramswap-doctor.sh checks doctor check by check).
# Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine
command -v python3 >/dev/null || skip "no python3 to read the JSON and the metrics back"

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
PROM=$TESTS_DIR/prometheus_text.py

# json PYTHON: runs PYTHON with j, the JSON object in OUT; fails the test
# when OUT is not JSON or an assertion fails.
json() {
  python3 -c "import json, sys
j = json.loads(sys.stdin.read())
$1" <<<"$OUT" || { echo "$OUT"; fail "status --json: $1"; }
}
# metrics PYTHON: reads OUT with the strict reader, then runs PYTHON with
# m, the families, and v(name, **labels), a sample's value.
metrics() {
  local families
  families=$(python3 "$PROM" <<<"$OUT") || { echo "$OUT"; fail "metrics are not in the Prometheus text format"; }
  python3 -c "import json, sys
m = json.loads(sys.stdin.read())
def v(name, **labels):
    found = [s['value'] for s in m[name]['samples'] if all(s['labels'].get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]
$1" <<<"$families" || { echo "$OUT"; fail "metrics: $1"; }
}
as_nobody() { # ARGS...: vramswap as an unprivileged user; OUT, RC
  RC=0
  OUT=$(setpriv --reuid=65534 --regid=65534 --clear-groups env VRAMSWAP_CONF=/nonexistent \
    VRAMSWAP_LIB="$VRAMSWAP_LIB" VRAMFS="$VRAMFS" "$VRAMSWAP" "$@" 2>"$BASE/err") || RC=$?
  ERR=$(cat "$BASE/err")
}

info "no swap: status --json exits 3 with no swaps; metrics say vramswap_active 0"
vs status --json --dir "$DIR"
expect_rc 3 "status --json, nothing running"
json 'assert j["active"] == 0 and j["swaps"] == [] and j["error"] is None'
vs metrics --dir "$DIR"
expect_rc 0 "metrics, nothing running"
metrics 'assert v("vramswap_up") == 1 and v("vramswap_active") == 0'

info "one swap under a DIR with a blank, a quote and a backslash"
WDIR="$BASE/we\"ird \\dir"
vs start --backend host --size 256M --priority 9 --dir "$WDIR"
expect_rc 0 "start under $WDIR"
vs status --dir "$WDIR"
expect_rc 0 "status"
row=$(grep '^0 ' <<<"$OUT")
vs status --json --dir "$WDIR"
expect_rc 0 "status --json"
json "
s = j['swaps'][0]
assert j['active'] == 1 and len(j['swaps']) == 1
assert s['gpu'] == 0 and s['backend'] == 'host' and s['state'] == 'active', s
assert s['size_bytes'] == 256 << 20 and s['held_bytes'] == 256 << 20, s
assert s['priority'] == [9] and s['dio'] == [1] and len(s['loops']) == 1, s
assert s['failover'] is True and s['restarts'] == 0 and s['errors'] == 0, s
assert s['advice'] is None and isinstance(s['used_bytes'], int), s
assert s['stats']['backend'] == 'host' and s['stats']['size_bytes'] == 256 << 20, s
assert s['stats']['state'] == 'serving' and s['stats']['keeper_alive'] == 1, s
assert isinstance(s['hit_rate_percent'], int), s
"
python3 -c 'import json, sys; assert json.loads(sys.stdin.read())["swaps"][0]["mountpoint"] == sys.argv[1]' \
  "$WDIR/gpu0" <<<"$OUT" || fail "the mount point is not escaped right in the JSON"
# The table's columns are in the JSON.
loop=$(loops_under "$WDIR/gpu0")
grep -q " $loop 1 .* 9 .* active$" <<<"$row" || fail "the table row is not what it should be: $row"
json "assert j['swaps'][0]['loops'] == ['$loop']"
vs metrics --dir "$WDIR"
expect_rc 0 "metrics"
python3 "$PROM" <<<"$OUT" | python3 -c '
import json, sys
m = json.loads(sys.stdin.read())
want = sys.argv[1]
def v(name, **labels):
    found = [s["value"] for s in m[name]["samples"] if all(s["labels"].get(k) == w for k, w in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]
assert v("vramswap_size_bytes", gpu="0", backend="host", mountpoint=want) == 256 << 20
assert v("vramswap_held_bytes", gpu="0") == 256 << 20
assert v("vramswap_errors_total", gpu="0") == 0
assert v("vramswap_restarts_total", gpu="0") == 0
assert v("vramswap_failover", gpu="0") == 1
assert v("vramswap_keeper_alive", gpu="0") == 1
assert 0 <= v("vramswap_cache_hit_ratio", gpu="0") <= 1
assert v("vramswap_reads_total", gpu="0") >= 0 and v("vramswap_writes_total", gpu="0") >= 0
assert v("vramswap_used_bytes", gpu="0") >= 0
assert v("vramswap_state", gpu="0", state="active") == 1
assert sum(s["value"] for s in m["vramswap_state"]["samples"]) == 1
assert m["vramswap_reads_total"]["type"] == "counter" and m["vramswap_used_bytes"]["type"] == "gauge"
' "$WDIR/gpu0" || { echo "$OUT"; fail "metrics do not hold the swap's figures"; }

info "metrics --output: a whole file, readable by the collector"
vs metrics --dir "$WDIR" --output "$BASE/vramswap.prom"
expect_rc 0 "metrics --output"
[ -z "$OUT" ] || fail "metrics --output printed: $OUT"
[ "$(stat -c %a "$BASE/vramswap.prom")" = 644 ] || fail "the metrics file is not mode 644"
python3 "$PROM" <"$BASE/vramswap.prom" >/dev/null || fail "the metrics file is not in the text format"
[ -z "$(find "$BASE" -name 'vramswap.prom.*')" ] || fail "metrics --output left a temporary file"

info "without root: status --json and metrics say so, in their own formats"
as_nobody status --json --dir "$WDIR"
[ "$RC" = 1 ] || fail "status --json without root: exit $RC, expected 1"
json "assert j['error'].startswith('not root') and j['swaps'][0]['state'] == 'unknown', j"
grep -q "^vramswap: status: not root" <<<"$ERR" || fail "status --json without root says on stderr: $ERR"
as_nobody metrics --dir "$WDIR"
[ "$RC" = 1 ] || fail "metrics without root: exit $RC, expected 1"
metrics 'assert v("vramswap_up") == 0 and v("vramswap_state", gpu="0", state="unknown") == 1'
grep -q "^vramswap: metrics: not root" <<<"$ERR" || fail "metrics without root says on stderr: $ERR"
vs stop --dir "$WDIR"
expect_rc 0 "stop"

info "a dead daemon: status --json, metrics and doctor say so"
vs start --backend host --size 64M --no-failover --dir "$DIR"
expect_rc 0 "start --no-failover"
loop=$(loops_under "$DIR/gpu0")
swapoff "$loop"
kill -9 "$(daemon_pid "$DIR/gpu0")"
sleep 0.5
vs status --json --dir "$DIR"
expect_rc 3 "status --json, dead daemon"
json "s = j['swaps'][0]; assert s['state'] == 'dead' and 'vramswap stop --gpu 0' in s['advice'], s"
vs metrics --dir "$DIR"
expect_rc 0 "metrics, dead daemon"
metrics 'assert v("vramswap_state", gpu="0", state="dead") == 1 and v("vramswap_active") == 0'
printf 'BACKEND=host\nDIR=%s\n' "$DIR" >"$BASE/host.conf"
VRAMSWAP_CONF=$BASE/host.conf vs doctor
expect_rc 1 "doctor, dead daemon"
grep -q "^fail  swap .*gpu0 dead .*vramswap stop --gpu 0" <<<"$OUT" || { show doctor; fail "doctor does not fail the dead daemon"; }
vs stop --dir "$DIR"
expect_rc 0 "stop the dead instance"

assert_clean "at the end"
echo PASS
