#!/bin/bash
# The man pages: clean for groff and mandoc, and in step with --help.
# It swaps nothing and attaches no loop device: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"

: "${MAN_DIR:?MAN_DIR: the folder of the built man pages}"
command -v groff >/dev/null || command -v mandoc >/dev/null || skip "neither groff nor mandoc is installed"

for page in "$MAN_DIR"/vramfs.8 "$MAN_DIR"/vramswap.8; do
  [ -f "$page" ] || fail "$page was not built"
  if command -v groff >/dev/null; then
    out=$(groff -man -ww -z "$page" 2>&1)
    [ -z "$out" ] || fail "groff warns about $page: $out"
  fi
  if command -v mandoc >/dev/null; then
    out=$(mandoc -T lint -W warning "$page" 2>&1) || true
    [ -z "$out" ] || fail "mandoc warns about $page: $out"
  fi
  echo "ok: $(basename "$page") is clean"
done

info "every option of vramfs --help is in vramfs(8)"
text=$(sed 's/\\-/-/g; s/\\(dq/"/g' "$MAN_DIR/vramfs.8")
for opt in $("$VRAMFS" --help | grep -oE '(^| )(-o [a-z_]+=?|-[a-zA-Z]\b|--[a-z-]+)' | sed 's/^ *//; s/^-o //; s/=$//' | sort -u); do
  grep -qF -- "$opt" <<<"$text" || fail "vramfs(8) does not describe $opt"
done
echo "ok: vramfs(8) describes every option"
