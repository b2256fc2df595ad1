#!/bin/bash
# vramswap under a non-English locale: a dead daemon is still told apart
# from one that does not answer (a dead FUSE mount's error text is
# translated), so status says "dead" and stop turns it off.  Uses an
# installed locale whose messages are translated, or makes one with
# localedef; skips where neither can be had.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

# translated LOCALE: whether the C library's messages are translated in it.
translated() {
  local c l
  c=$(LC_ALL=C cat /nonexistent-vramswap 2>&1)
  l=$(LC_ALL=$1 cat /nonexistent-vramswap 2>&1)
  [ "$c" != "$l" ]
}
loc=
for l in $(locale -a 2>/dev/null | grep -Ev '^(C|POSIX|en_)' | grep -i 'utf-\?8'); do
  if translated "$l"; then loc=$l; break; fi
done
if [ -z "$loc" ] && command -v localedef >/dev/null && [ -e /usr/share/i18n/locales/de_DE ]; then
  export LOCPATH=$BASE/locales
  mkdir -p "$LOCPATH"
  if localedef -i de_DE -f UTF-8 "$LOCPATH/de_DE.UTF-8" >/dev/null 2>&1 && translated de_DE.UTF-8; then
    loc=de_DE.UTF-8
  fi
fi
[ -n "$loc" ] || skip_optional "no locale with translated messages here, and none could be made (locales, libc-l10n)"
info "locale $loc: $(LC_ALL=$loc cat /nonexistent-vramswap 2>&1)"

vs start --backend host --size 64M --no-failover --dir "$DIR"
expect_rc 0 "start"
loop=$(loops_under "$DIR/gpu0")
# Off by hand first: a dead swap that other processes use would hurt them.
swapoff "$loop"
kill -9 "$(daemon_pid "$DIR/gpu0")"
sleep 0.5

info "status under $loc: dead, not unresponsive"
LC_ALL=$loc vs status --dir "$DIR"
expect_rc 3 "status, a dead daemon"
grep -q " dead$" <<<"$OUT" || { show status; fail "status under $loc does not call the dead daemon dead"; }

info "stop under $loc turns it off"
LC_ALL=$loc vs stop --dir "$DIR"
expect_rc 0 "stop, a dead daemon"
nothing_left "after stop"
echo PASS
