# Helpers for the vramswap tests; sourced after functions.sh.  The test
# runs vramswap with --dir under BASE; teardown removes whatever vramswap
# left there, in the safe order, before functions.sh's own cleanup.

: "${VRAMSWAP:=$TESTS_DIR/../scripts/vramswap}"
[ -x "$VRAMSWAP" ] || fail "no vramswap script at $VRAMSWAP (set VRAMSWAP)"
command -v "$VRAMFS" >/dev/null || fail "no vramfs binary at $VRAMFS (set VRAMFS)"

BASE=$(make_tempdir)
DIR=$BASE/run
# The machine's /etc/vramswap.conf must not change what the tests do.
export VRAMSWAP_CONF=$BASE/none.conf

# Loop devices whose backing file lies under PATH.
loops_under() {
  local sys file dev
  for sys in /sys/block/loop*/loop/backing_file; do
    file=$(cat "$sys" 2>/dev/null) || continue
    case $file in "$1"/*) ;; *) continue ;; esac
    dev=${sys#/sys/block/}
    echo "/dev/${dev%%/*}"
  done
}
# fuse.vramfs mounts at or under PATH, one a line.
mounts_under() {
  awk -v base="$1" '{ for (i = 7; $i != "-"; i++); if ($(i + 1) == "fuse.vramfs" &&
    (index($5, base "/") == 1 || $5 == base)) print $5 }' /proc/self/mountinfo
}
in_swaps() { awk -v d="$1" 'NR > 1 && $1 == d { f = 1 } END { exit !f }' /proc/swaps; }

# vs_teardown_first, if a test defines it, runs before the teardown.
vs_teardown() {
  local dev mp
  if declare -F vs_teardown_first >/dev/null; then vs_teardown_first; fi
  while read -r dev; do
    [ -n "$dev" ] || continue
    swapoff "$dev" 2>/dev/null
    losetup -d "$dev" 2>/dev/null
  done < <(loops_under "$BASE")
  sleep 0.2
  while read -r mp; do
    [ -n "$mp" ] || continue
    umount "$mp" 2>/dev/null || { sleep 1; umount "$mp" 2>/dev/null; } || umount -l "$mp"
  done < <(mounts_under "$BASE")
}
cleanup_first() { vs_teardown; }

# vs ARGS...: runs vramswap; OUT, ERR and RC hold what happened.
vs() {
  RC=0
  "$VRAMSWAP" "$@" >"$BASE/out" 2>"$BASE/err" || RC=$?
  OUT=$(cat "$BASE/out")
  ERR=$(cat "$BASE/err")
}
show() { echo "vramswap $*: rc=$RC"; echo "stdout: $OUT"; echo "stderr: $ERR"; }
expect_rc() { # RC WHAT
  [ "$RC" = "$1" ] || { show "($2)"; fail "$2: exit status $RC, expected $1"; }
}
