#!/bin/bash
# start on a running instance: with the same settings it says "already
# active" and changes nothing (exit 0); with settings that differ from what
# runs (given on the command line or in the configuration file), it names
# each, what runs and where the other value comes from, changes nothing,
# not even on another GPU, and exits 1.  Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
H=(--backend host --dir "$DIR")

vs start "${H[@]}" --size 64M --stripes 1 --priority 7
expect_rc 0 "start"
loop=$(loops_under "$DIR/gpu0")
pid=$(stat_value "$DIR/gpu0" pid)
# unchanged WHAT: gpu0 runs as started, and nothing else does.
unchanged() {
  [ "$(loops_under "$DIR")" = "$loop" ] || fail "$1: the loop devices changed: $(loops_under "$DIR" | xargs)"
  [ "$(stat_value "$DIR/gpu0" pid)" = "$pid" ] || fail "$1: gpu0's daemon changed"
  [ "$(awk -v d="$loop" '$1 == d { print $5 }' /proc/swaps)" = 7 ] || fail "$1: the priority changed"
  [ ! -e "$DIR/gpu1" ] || fail "$1: gpu1 was started"
}

info "the same settings: already active, exit 0"
vs start "${H[@]}" --size 64M --stripes 1 --priority 7
expect_rc 0 "start with the same settings"
grep -q "^gpu0: already active (swap on $loop, $DIR/gpu0); nothing changed$" <<<"$OUT" || { show start; fail "start does not say already active"; }
unchanged "the same settings"

info "other settings on the command line: each named, exit 1"
vs start "${H[@]}" --size 128M --stripes 2
expect_rc 1 "start with another size and stripes"
grep -q "^vramswap: gpu0: already active (swap on $loop, $DIR/gpu0), but with size 64M where --size asks for 128M, 1 stripe where --stripes asks for 2; nothing changed" <<<"$ERR" ||
  { show start; fail "start does not say which settings differ"; }
unchanged "another size and stripes"

info "another priority in the configuration file"
printf 'PRIORITY=9\n' >>"$VRAMSWAP_CONF"
vs start "${H[@]}" --size 64M
expect_rc 1 "start, PRIORITY=9 in the file"
grep -q "^vramswap: gpu0: already active .*, but with priority 7 where $VRAMSWAP_CONF:2 asks for 9; nothing changed" <<<"$ERR" ||
  { show start; fail "start does not name the file's line"; }
unchanged "another priority in the file"
sed -i '/^PRIORITY=/d' "$VRAMSWAP_CONF"

info "another GPU is not started either"
vs start "${H[@]}" --size 128M --gpu 0,1
expect_rc 1 "start --gpu 0,1, gpu0 otherwise"
unchanged "start --gpu 0,1"

vs stop --dir "$DIR"
expect_rc 0 "stop"
echo PASS
