#!/bin/bash
# stop --force finishes: after the OOM kills it warned about, a swapoff that
# fails with ENOMEM is tried again (as a plain stop tries again when no OOM
# killer acted), and every stripe goes.  A swapoff that fails once per
# stripe with ENOMEM and a kernel log that shows an OOM kill meanwhile are
# faked.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

mkdir -p "$BASE/bin"
real_swapoff=$(PATH=/usr/sbin:/sbin:$PATH command -v swapoff)
real_dmesg=$(PATH=/usr/bin:/bin:$PATH command -v dmesg)
cat >"$BASE/bin/swapoff" <<EOF2
#!/bin/bash
# The first swapoff of each device fails, and the OOM killer "acts".
mark=$BASE/failed-\${1##*/}
if [ ! -e "\$mark" ]; then
  touch "\$mark" "$BASE/oom"
  echo "swapoff: \$1: swapoff failed: Cannot allocate memory" >&2
  exit 255
fi
exec $real_swapoff "\$@"
EOF2
cat >"$BASE/bin/dmesg" <<EOF2
#!/bin/bash
$real_dmesg "\$@" || exit
[ ! -e "$BASE/oom" ] || echo "[99999999.000000] Out of memory: Killed process 4242 (hog) total-vm:1000kB"
EOF2
chmod +x "$BASE/bin/swapoff" "$BASE/bin/dmesg"

vs start --backend host --size 128M --stripes 2 --dir "$DIR"
expect_rc 0 "start"
stripes=$(loops_under "$DIR/gpu0" | xargs)

PATH=$BASE/bin:$PATH vs stop --force --dir "$DIR"
show "stop --force"
expect_rc 0 "stop --force, swapoff failing once per stripe after an OOM kill"
[ "$(grep -c "Cannot allocate memory.*trying again" <<<"$ERR")" = 2 ] || fail "stop --force did not try each stripe again"
grep -q "^gpu0: stopped" <<<"$OUT" || fail "stop --force did not stop gpu0"
for l in $stripes; do ! swap_of_ours "$l" || fail "$l is still swap"; done
nothing_left "after stop --force"
echo PASS
