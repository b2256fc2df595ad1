#!/bin/bash
# vramswap metrics --output FILE replaces only a regular file (through a
# file beside it, renamed over it): a symbolic link is followed and stays a
# link, its target replaced; a device (a null device of the test's own) or
# a FIFO is written in place and stays what it is; a folder is refused.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps nothing and attaches no loop device: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

# no_temporary_files DIR: metrics left nothing of its own in DIR.
no_temporary_files() {
  [ -z "$(find "$1" -maxdepth 1 -name '*.prom.*')" ] || fail "metrics left temporary files: $(find "$1" -maxdepth 1 -name '*.prom.*')"
}

info "a device node"
mknod "$BASE/null" c 1 3
vs metrics --dir "$DIR" --output "$BASE/null"
expect_rc 0 "metrics --output a device"
[ -c "$BASE/null" ] || fail "metrics --output replaced a device with: $(stat -c %F "$BASE/null")"
[ "$(stat -c %t:%T "$BASE/null")" = 1:3 ] || fail "the device node changed: $(stat -c %t:%T "$BASE/null")"

info "a FIFO: written in place, read by whoever reads it"
mkfifo "$BASE/fifo.prom"
timeout 30 cat "$BASE/fifo.prom" >"$BASE/fifo.out" &
reader=$!
vs metrics --dir "$DIR" --output "$BASE/fifo.prom"
expect_rc 0 "metrics --output a FIFO"
wait "$reader" || fail "nothing read the metrics from the FIFO"
[ -p "$BASE/fifo.prom" ] || fail "metrics --output replaced a FIFO with: $(stat -c %F "$BASE/fifo.prom")"
grep -q '^vramswap_up 1$' "$BASE/fifo.out" || fail "the FIFO's reader got: $(cat "$BASE/fifo.out")"
no_temporary_files "$BASE"

info "a symbolic link: followed, and still a link"
mkdir -p "$BASE/textfile"
echo old >"$BASE/textfile/vramswap.prom"
ln -s textfile/vramswap.prom "$BASE/link.prom"
vs metrics --dir "$DIR" --output "$BASE/link.prom"
expect_rc 0 "metrics --output a symbolic link"
[ -L "$BASE/link.prom" ] || fail "metrics --output replaced the symbolic link with: $(stat -c %F "$BASE/link.prom")"
[ "$(readlink "$BASE/link.prom")" = textfile/vramswap.prom ] || fail "the link points elsewhere: $(readlink "$BASE/link.prom")"
grep -q '^vramswap_up 1$' "$BASE/textfile/vramswap.prom" || fail "the link's target was not written: $(cat "$BASE/textfile/vramswap.prom")"
[ "$(stat -c %a "$BASE/textfile/vramswap.prom")" = 644 ] || fail "the link's target is not mode 644"
no_temporary_files "$BASE"
no_temporary_files "$BASE/textfile"

info "a symbolic link whose target does not exist yet"
ln -s textfile/new.prom "$BASE/new-link.prom"
vs metrics --dir "$DIR" --output "$BASE/new-link.prom"
expect_rc 0 "metrics --output a dangling link"
[ -L "$BASE/new-link.prom" ] || fail "metrics --output replaced the dangling link"
grep -q '^vramswap_up 1$' "$BASE/textfile/new.prom" || fail "the dangling link's target was not created"

info "a folder: refused"
vs metrics --dir "$DIR" --output "$BASE/textfile"
expect_rc 1 "metrics --output a folder"
grep -q "^vramswap: metrics: $BASE/textfile is a folder" <<<"$ERR" || { show metrics; fail "a folder as --output is not refused as such"; }
[ -d "$BASE/textfile" ] || fail "the folder is gone"
echo PASS
