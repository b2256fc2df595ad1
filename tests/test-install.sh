#!/bin/bash
# make install and make uninstall in a DESTDIR: vramswap finds its library
# where it is installed; the configuration file is put where vramswap reads
# it, but never over one that is there, and uninstall takes it only while
# it is the shipped one; uninstall leaves no other file and no folder of
# this package behind.
: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps nothing and attaches no loop device: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
[ -n "${TOP_BUILDDIR:-}" ] || skip_optional "run by make check (TOP_BUILDDIR names the build tree)"
command -v make >/dev/null || skip "no make"

dest=$(make_tempdir)/dest
# A make of its own: not the jobserver of the make check that runs this.
build_make() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$TOP_BUILDDIR" "$@" DESTDIR="$dest"; }

info "make install DESTDIR=$dest"
build_make install >"$dest.log" 2>&1 || { cat "$dest.log"; fail "make install failed"; }
(cd "$dest" && find . | sort)
vramswap=$(find "$dest" -path '*/sbin/vramswap')
# The prefix, as configure set it (it may itself be named after vramfs).
prefix=${vramswap%/sbin/vramswap}
lib=$(find "$dest" -name vramswap-lib.sh)
[ -x "$vramswap" ] || fail "no vramswap installed"
[ -f "$lib" ] || fail "no vramswap-lib.sh installed"
grep -q "^VRAMSWAP_LIB=\${VRAMSWAP_LIB:-'${lib#"$dest"}'}" "$vramswap" ||
  fail "the installed vramswap does not look for its library at ${lib#"$dest"}"
env -u VRAMSWAP_LIB VRAMSWAP_LIB="$lib" "$vramswap" --version | grep -q '^vramswap ' ||
  fail "the installed vramswap does not run with its library"
# Every file of a command that vramswap loads lies beside the library.
names=$(sed -n 's/.*) load \([a-z -]*\);.*/\1/p' "$vramswap" | tr ' ' '\n' | sort -u)
[ -n "$names" ] || fail "no load lines found in the installed vramswap"
for name in $names; do
  [ -f "${lib%/*}/vramswap-$name.sh" ] || fail "vramswap loads vramswap-$name.sh, which is not installed"
done
out=$(env -u VRAMSWAP_LIB VRAMSWAP_LIB="$lib" VRAMSWAP_CONF=/dev/null "$vramswap" doctor --backend host 2>&1) || true
grep -q '^ok  *fuse \|^fail  *fuse ' <<<"$out" || fail "the installed vramswap doctor does not run: $out"

info "the configuration file, where vramswap reads it, never overwritten"
conf=$(sed -n "s/^CONF=\${VRAMSWAP_CONF:-'\(.*\)'}$/\1/p" "$vramswap")
[ -n "$conf" ] || fail "the installed vramswap names no configuration file"
[ -f "$dest$conf" ] || fail "make install put no $conf in place, where vramswap reads it"
cmp -s "$dest$conf" "$TESTS_DIR/../scripts/vramswap.conf" || fail "$conf is not the shipped one"
echo "SIZE=1G # the admin's" >>"$dest$conf"
build_make install >"$dest.log" 2>&1 || { cat "$dest.log"; fail "make install over an installed tree failed"; }
grep -q "^SIZE=1G # the admin's$" "$dest$conf" || fail "make install overwrote an existing $conf"

info "make uninstall DESTDIR=$dest"
build_make uninstall >"$dest.log" 2>&1 || { cat "$dest.log"; fail "make uninstall failed"; }
[ -f "$dest$conf" ] || fail "make uninstall removed a $conf that the admin changed"
rm -f "$dest$conf"
build_make install >"$dest.log" 2>&1 || { cat "$dest.log"; fail "make install failed"; }
build_make uninstall >"$dest.log" 2>&1 || { cat "$dest.log"; fail "make uninstall failed"; }
left=$(find "$dest" -type f)
[ -z "$left" ] || fail "files left after uninstall: $left"
left=$(cd "$prefix" && find . -path '*vramfs*' -o -path '*vramswap*')
[ -z "$left" ] || fail "folders of this package left after uninstall: $left"
echo PASS
