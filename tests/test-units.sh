#!/bin/bash
# The systemd units: systemd-analyze verify finds nothing wrong with them
# (their commands pointed at the built vramswap), and the sleep units are
# ordered before, and required by, the sleeps they guard.
: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps nothing and attaches no loop device: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
: "${UNIT_DIR:?UNIT_DIR: the folder of the built units}"
command -v systemd-analyze >/dev/null || skip "no systemd-analyze"

dir=$(make_tempdir)
for unit in vramswap.service vramswap-suspend.service vramswap-hibernate.service; do
  [ -f "$UNIT_DIR/$unit" ] || fail "$unit was not built"
  sed "s|^\(Exec[A-Za-z]*=\)[^ ]*/vramswap|\1$VRAMSWAP|" "$UNIT_DIR/$unit" >"$dir/$unit"
done
out=$(cd "$dir" && systemd-analyze verify --man=no ./*.service 2>&1) || fail "systemd-analyze verify failed: $out"
# Units it does not know of (nvidia-*) are only ordered against: not errors.
out=$(grep -v 'nvidia-' <<<"$out" || true)
[ -z "$out" ] || fail "systemd-analyze verify says: $out"
echo "ok: systemd-analyze verify"

key() { sed -n "s/^$2=//p" "$dir/$1" | xargs; }
[ "$(key vramswap-suspend.service RequiredBy)" = systemd-suspend.service ] ||
  fail "vramswap-suspend.service is not required by systemd-suspend.service"
[[ " $(key vramswap-suspend.service Before) " == *" systemd-suspend.service nvidia-suspend.service "* ]] ||
  fail "vramswap-suspend.service is not ordered before the suspend and the driver's unit"
for s in systemd-hibernate.service systemd-hybrid-sleep.service systemd-suspend-then-hibernate.service; do
  [[ " $(key vramswap-hibernate.service RequiredBy) " == *" $s "* ]] || fail "vramswap-hibernate.service is not required by $s"
  [[ " $(key vramswap-hibernate.service Before) " == *" $s "* ]] || fail "vramswap-hibernate.service is not ordered before $s"
done
for unit in vramswap-suspend.service vramswap-hibernate.service; do
  if [ "$(key "$unit" StopWhenUnneeded)" != yes ] || [ "$(key "$unit" RemainAfterExit)" != yes ]; then
    fail "$unit does not stop (and wake) once the sleep is over"
  fi
  [[ $(key "$unit" ExecStop) == *" wake" ]] || fail "$unit does not wake on stop"
done
[ "$(key vramswap.service LimitMEMLOCK)" = infinity ] || fail "vramswap.service limits locked memory"
[ "$(key vramswap.service KillMode)" = process ] || fail "vramswap.service would let systemd kill the daemons"
echo PASS
