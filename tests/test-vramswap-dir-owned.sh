#!/bin/bash
# stop removes the folders that start made, and no other: a --dir that was
# there before stays (with a gpuN folder that was there before); a --dir
# several levels deep that start made goes, every level of it, once its
# last instance stops; a folder in which something else was put stays.
# Backend host.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

# start_stop DIR ARGS...: start in DIR (ARGS for start), then stop.
start_stop() {
  local d=$1
  shift
  vs start --backend host --size 64M --dir "$d" "$@"
  expect_rc 0 "start --dir $d"
  vs stop --dir "$d"
  expect_rc 0 "stop --dir $d"
}

info "a --dir that was there before stays"
mkdir "$BASE/pre"
start_stop "$BASE/pre"
[ -d "$BASE/pre" ] || fail "stop removed $BASE/pre, which start did not make"
[ -z "$(ls -A "$BASE/pre")" ] || fail "stop left in $BASE/pre: $(ls -A "$BASE/pre")"

info "so does a gpu0 folder that was there before"
mkdir -p "$BASE/pre2/gpu0"
start_stop "$BASE/pre2"
[ -d "$BASE/pre2/gpu0" ] || fail "stop removed $BASE/pre2/gpu0, which start did not make"
[ "$(ls -A "$BASE/pre2")" = gpu0 ] || fail "stop left in $BASE/pre2: $(ls -A "$BASE/pre2")"

info "a --dir of three new levels goes, every level of it"
start_stop "$BASE/new/a/b"
[ ! -e "$BASE/new" ] || fail "stop left what start made: $(find "$BASE/new")"

info "... once its last instance stops"
vs start --backend host --size 64M --gpu 0,1 --dir "$BASE/two/run"
expect_rc 0 "start --gpu 0,1"
vs stop --gpu 0 --dir "$BASE/two/run"
expect_rc 0 "stop --gpu 0"
[ -d "$BASE/two/run/gpu1" ] || fail "stop --gpu 0 removed gpu1's folder"
vs stop --gpu 1 --dir "$BASE/two/run"
expect_rc 0 "stop --gpu 1"
[ ! -e "$BASE/two" ] || fail "stop left what start made: $(find "$BASE/two")"

info "a folder that start made, with something else put in it, stays"
vs start --backend host --size 64M --dir "$BASE/mine/run"
expect_rc 0 "start --dir $BASE/mine/run"
touch "$BASE/mine/run/notes"
vs stop --dir "$BASE/mine/run"
expect_rc 0 "stop --dir $BASE/mine/run"
[ -f "$BASE/mine/run/notes" ] || fail "stop removed a file that start did not make"
[ ! -e "$BASE/mine/run/gpu0" ] || fail "stop left gpu0, which start made"
echo PASS
