# shellcheck shell=bash
# Helpers for the vramswap tests; sourced after functions.sh.  The test
# runs vramswap with --dir under BASE, a directory functions.sh tears down:
# whatever vramswap left there (loop devices, mounts, swap) goes with it, in
# the safe order.

: "${VRAMSWAP:=$TESTS_DIR/../scripts/vramswap}"
[ -x "$VRAMSWAP" ] || fail "no vramswap script at $VRAMSWAP (set VRAMSWAP)"
command -v "$VRAMFS" >/dev/null || fail "no vramfs binary at $VRAMFS (set VRAMFS)"

BASE=$(make_tempdir)
# shellcheck disable=SC2034 # the tests' --dir
DIR=$BASE/run
# The machine's /etc/vramswap.conf must not change what the tests do.  The
# tests' own says one loop device per GPU: most of them look at one swap
# area; test-vramswap-stripes checks the default of several.
export VRAMSWAP_CONF=$BASE/tests.conf
echo "STRIPES=1" >"$VRAMSWAP_CONF"

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

# nothing_left WHAT: no loop device and no mount of the test's is left.
nothing_left() {
  [ -z "$(loops_under "$BASE")" ] || fail "$1: loop devices left: $(loops_under "$BASE" | xargs)"
  [ -z "$(vramfs_mounts_under "$BASE")" ] || fail "$1: mounts left: $(vramfs_mounts_under "$BASE" | xargs)"
}

# within SECONDS ARGS...: runs vramswap ARGS as vs does, and fails the test
# when it hangs (120 s) or takes longer than SECONDS.
within() {
  local limit=$1
  shift
  SECONDS=0
  RC=0
  timeout 120 "$VRAMSWAP" "$@" >"$BASE/out" 2>"$BASE/err" || RC=$?
  OUT=$(cat "$BASE/out")
  ERR=$(cat "$BASE/err")
  [ "$RC" != 124 ] || { show "$@"; fail "vramswap $* hangs"; }
  [ "$SECONDS" -le "$limit" ] || { show "$@"; fail "vramswap $* took $SECONDS s"; }
  echo "vramswap $*: exit $RC in $SECONDS s"
}

# fake_machine MEMAVAILABLE_KIB PRESERVE NVIDIA_SUSPEND [RESUME]: what sleep
# and doctor read of the machine, under FAKE_ROOT (VRAMSWAP_SYSROOT): free
# RAM, the NVIDIA driver's PreserveVideoMemoryAllocations, and resume= on
# the kernel command line; and a systemctl in BASE/bin (put it first on
# PATH) that says NVIDIA_SUSPEND of every unit.
FAKE_ROOT=$BASE/root
fake_machine() {
  mkdir -p "$FAKE_ROOT/proc/driver/nvidia" "$FAKE_ROOT/sys/power" "$FAKE_ROOT/run" "$BASE/bin"
  printf 'MemTotal: 24000000 kB\nMemAvailable: %s kB\nSwapFree: 0 kB\n' "$1" >"$FAKE_ROOT/proc/meminfo"
  printf 'PreserveVideoMemoryAllocations: %s\n' "$2" >"$FAKE_ROOT/proc/driver/nvidia/params"
  printf '#!/bin/bash\necho %s\n' "$3" >"$BASE/bin/systemctl"
  chmod +x "$BASE/bin/systemctl"
  echo "root=/dev/sda1${4:+ resume=$4}" >"$FAKE_ROOT/proc/cmdline"
  echo 0:0 >"$FAKE_ROOT/sys/power/resume"
}
