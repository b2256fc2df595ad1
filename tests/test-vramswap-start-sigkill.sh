#!/bin/bash
# vramswap start killed with SIGKILL part-way (its mount made, a loop
# device being attached) leaves nothing behind either: what it made is
# undone by the process that start leaves to guard it.  Other signals that
# end start (INT, TERM, HUP, PIPE, QUIT, ALRM, USR1, USR2) roll back at once
# (test-vramswap-rollback.sh, test-vramswap-start-sigpipe.sh).  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

# A losetup that says when start has come to attaching, and takes a second.
real_losetup=$(command -v losetup)
mkdir -p "$BASE/bin"
cat >"$BASE/bin/losetup" <<EOF2
#!/bin/bash
if [[ " \$* " == *' --find '* ]]; then touch "$BASE/attaching"; sleep 1; fi
exec $real_losetup "\$@"
EOF2
chmod +x "$BASE/bin/losetup"

info "SIGKILL while the first stripe is attached"
PATH=$BASE/bin:$PATH "$VRAMSWAP" start --backend host --size 256M --stripes 2 --dir "$DIR" \
  >"$BASE/out" 2>&1 &
start=$!
for ((i = 0; i < 300; i++)); do
  [ ! -e "$BASE/attaching" ] || break
  alive "$start" || { cat "$BASE/out"; fail "start ended before it attached a loop device"; }
  nap 0.1
done
[ -e "$BASE/attaching" ] || fail "start did not come to losetup within 30 s"
is_mounted "$DIR/gpu0" || fail "start attaches before it mounted?"
kill -KILL "$start"
wait "$start" 2>/dev/null || true
# The guard undoes it once start and the step it was in are gone.
for ((i = 0; i < 300; i++)); do
  if [ -z "$(loops_under "$BASE")" ] && [ -z "$(vramfs_mounts_under "$BASE")" ] && [ ! -e "$DIR" ]; then
    break
  fi
  nap 0.1
done
cat "$BASE/out"
[ -z "$(loops_under "$BASE")" ] || fail "loop devices left 30 s after start was killed: $(loops_under "$BASE")"
[ -z "$(vramfs_mounts_under "$BASE")" ] || fail "mounts left 30 s after start was killed: $(vramfs_mounts_under "$BASE")"
[ ! -e "$DIR" ] || fail "$DIR left 30 s after start was killed: $(ls -A "$DIR")"
grep -q "start ended before it was done" "$BASE/out" || fail "nothing says why what start made is undone"

info "a start that is not killed is not undone"
vs start --backend host --size 64M --dir "$DIR"
expect_rc 0 "start"
sleep 1
is_mounted "$DIR/gpu0" || fail "a successful start was undone"
swap_active "$(loops_under "$DIR/gpu0")" || fail "a successful start's swap went off"
vs stop --dir "$DIR"
expect_rc 0 "stop"
echo PASS
