#!/bin/bash
# vramswap start --stripes K: K loop devices over K disjoint slices of one
# GPU's data file, each swap at the same priority, so that the kernel spreads
# pages over them.  A bad count or slices too small are refused; status
# shows every stripe; a memory-limited process swaps through all of them
# with every page verified; stop takes every stripe down; a stripe that
# fails in start rolls back the whole start.  Backend host; with
# VRAMFS_TEST_TRANSPORT set, over that transport.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
T=()
[ -z "${VRAMFS_TEST_TRANSPORT:-}" ] || T=(--transport "$VRAMFS_TEST_TRANSPORT")
H=(--backend host --dir "$DIR" ${T[@]+"${T[@]}"})

info "a stripe count out of range, or stripes too small, is refused"
for k in 0 17 -1 two; do
  vs start "${H[@]}" --size 256M --stripes "$k"
  expect_rc 2 "--stripes $k"
  grep -q "^vramswap: bad --stripes value '$k': expected a number from 1 to 16$" <<<"$ERR" ||
    { show start; fail "--stripes $k is not refused with the valid range"; }
done
vs start "${H[@]}" --size 64M --stripes 8
expect_rc 2 "8 stripes of 8M"
grep -q "^vramswap: --size 64M with --stripes 8: each stripe would be 8 MiB, less than the 16 MiB minimum" <<<"$ERR" ||
  { show start; fail "stripes below the minimum are not refused"; }
assert_nothing "refused stripe counts"

info "by default four stripes, or as many as fit: refused only when asked for"
for case in 256M:4 48M:3 16M:1; do
  VRAMSWAP_CONF=$BASE/no.conf vs start "${H[@]}" --size "${case%%:*}"
  expect_rc 0 "start --size ${case%%:*} with the default stripes"
  [ "$(loops_under "$BASE" | wc -l)" = "${case#*:}" ] ||
    { show start; fail "--size ${case%%:*}: $(loops_under "$BASE" | wc -l) loop devices, expected ${case#*:}"; }
  VRAMSWAP_CONF=$BASE/no.conf vs stop --dir "$DIR"
  expect_rc 0 "stop after the default stripes"
done

info "start --stripes 4: four loop devices on four slices, one priority"
vs start "${H[@]}" --size 256M --stripes 4 --priority 11
expect_rc 0 "start --stripes 4"
echo "$OUT"
mapfile -t loops < <(loops_under "$DIR/gpu0")
[ "${#loops[@]}" = 4 ] || fail "${#loops[@]} loop devices, expected 4: ${loops[*]}"
slices=()
for dev in "${loops[@]}"; do
  sys=/sys/block/${dev#/dev/}/loop
  [ "$(cat "$sys/dio")" = 1 ] || fail "$dev without direct I/O"
  swap_active "$dev" || fail "$dev is not swap"
  [ "$(awk -v d="$dev" '$1 == d { print $5 }' /proc/swaps)" = 11 ] || fail "$dev is not at priority 11"
  # mkswap keeps one page for its header.
  [ "$(awk -v d="$dev" '$1 == d { print $3 }' /proc/swaps)" = $((64 * 1024 - 4)) ] ||
    fail "$dev is not a 64M swap: $(grep "^$dev " /proc/swaps)"
  [ "$(cat "$sys/sizelimit")" = $((64 << 20)) ] || fail "$dev: sizelimit $(cat "$sys/sizelimit")"
  slices+=("$(cat "$sys/offset")")
done
[ "$(printf '%s\n' "${slices[@]}" | sort -n | xargs)" = "0 $((64 << 20)) $((128 << 20)) $((192 << 20))" ] ||
  fail "the slices do not tile the file: offsets ${slices[*]}"
grep -Eq "gpu0: swap on ${loops[*]} \(host, $DIR/gpu0, priority 11, 4 stripes(, failover)?\)$" <<<"$OUT" ||
  fail "start does not name every stripe: $OUT"

info "status: one row for gpu0 that lists every stripe"
vs status --dir "$DIR"
expect_rc 0 "status, 4 stripes"
echo "$OUT"
row=$(grep "^0 " <<<"$OUT")
[ "$(wc -l <<<"$row")" = 1 ] || fail "status has not one row for gpu0"
for dev in "${loops[@]}"; do
  grep -q "[ ,]${dev}[ ,]" <<<"$row" || fail "status does not list stripe $dev"
done
grep -Eq "^0 +host +$DIR/gpu0 +/dev/loop[0-9]+(,/dev/loop[0-9]+){3} +1 +256M +256M +[^ ]+ +11 .* active$" <<<"$row" ||
  fail "the gpu0 row is not what it should be: $row"

info "a process limited to 32 MiB works on 96 MiB through every stripe"
cg=$(make_memory_cgroup 32)
writes_before=$(stat_value "$DIR/gpu0" write_bytes)
spawn_in_cgroup "$cg" "$BASE/swapper.out" "$VRAMFS_IO" swapper 96 2 31
swapper=$SPAWNED
declare -A used=()
while alive "$swapper"; do
  for dev in "${loops[@]}"; do
    [ "$(swap_used_kib "$dev")" = 0 ] || used[$dev]=1
  done
  nap 0.1
done
rc=0
wait "$swapper" || rc=$?
cat "$BASE/swapper.out"
if [ "$rc" != 0 ] || ! grep -q verified "$BASE/swapper.out"; then fail "the swapper failed (exit $rc)"; fi
written=$(( $(stat_value "$DIR/gpu0" write_bytes) - writes_before ))
info "$((written >> 20)) MiB swapped out through vramfs; stripes that held pages: ${!used[*]}"
[ "$written" -ge $(((96 - 32) << 20)) ] || fail "only $((written >> 20)) MiB reached vramfs"
[ "${#used[@]}" = 4 ] || fail "pages went to ${#used[@]} of the 4 stripes only: ${!used[*]}"
[ "$(stat_value "$DIR/gpu0" errors)" = 0 ] || fail "vramfs counted errors"

info "stop takes every stripe down"
vs stop --dir "$DIR"
expect_rc 0 "stop, 4 stripes"
grep -q "gpu0: stopped" <<<"$OUT" || fail "stop says: $OUT"
for dev in "${loops[@]}"; do ! swap_active "$dev" || fail "$dev is still swap after stop"; done
[ -z "$(loops_under "$BASE")" ] || fail "loop devices left after stop: $(loops_under "$BASE")"
[ -z "$(vramfs_mounts_under "$BASE")" ] || fail "mounts left after stop: $(vramfs_mounts_under "$BASE")"
[ ! -e "$DIR/gpu0" ] || fail "stop left $DIR/gpu0"
rm -rf "$DIR"

info "the third stripe's losetup fails: the whole start is rolled back"
real_losetup=$(command -v losetup)
mkdir -p "$BASE/fake"
cat >"$BASE/fake/losetup" <<EOF
#!/bin/bash
# Attaches fail from the third on; everything else is the real losetup.
if [[ " \$* " == *' --find '* ]]; then
  echo x >>"$BASE/attaches"
  if [ "\$(wc -l <"$BASE/attaches")" -ge 3 ]; then
    echo "losetup: cannot find an unused loop device" >&2
    exit 1
  fi
fi
exec $real_losetup "\$@"
EOF
chmod +x "$BASE/fake/losetup"
PATH=$BASE/fake:$PATH vs start "${H[@]}" --size 256M --stripes 4
expect_rc 1 "start with the third losetup failing"
echo "$ERR"
grep -q "^vramswap: gpu0: stripe 2 of 4: attaching a loop device (losetup) failed: losetup failed: losetup: cannot find an unused loop device$" <<<"$ERR" ||
  fail "the failing stripe is not named"
[ "$(grep -c "^vramswap: rolling back: losetup -d /dev/loop" <<<"$ERR")" = 2 ] ||
  fail "the two stripes attached before were not both rolled back"
assert_nothing "after the failed start"
echo PASS
