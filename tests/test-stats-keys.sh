#!/bin/bash
# One declared .stats: every key that vramswap's shell, the tests and the
# documentation read by name is one that vramfs declares (vramfs
# --stats-keys, the table that also writes .stats).  A key renamed or
# dropped in the C++ fails here, not on a user's status or metrics.
# It mounts nothing: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"

src=$TESTS_DIR/..
declared=$("$VRAMFS" --stats-keys | awk '{ print $1 }')
[ "$(wc -l <<<"$declared")" -ge 20 ] || fail "vramfs --stats-keys printed too little: $declared"
info "$(wc -l <<<"$declared") keys declared"

declare -A is_declared=()
while read -r key; do is_declared[$key]=1; done <<<"$declared"

# named FILE...: "FILE KEY" for each key read by name in the files, a line
# each.  The shell reads .stats into STATS[key] (read_stats), metrics name
# stats:key, and a few lines pick one key with awk '$1 == "key"'.  Tests
# use stat_value MOUNT KEY and stat_now MOUNT KEY, vramswap stat_of RECORD
# KEY.  The documentation names a key with its value: `key value`
# (Markdown), .BR "key value" (man).  Each pattern is one grep over all the
# files: a grep per file and pattern took most of this test's time.
# shellcheck disable=SC2016 # the patterns match a literal $1 and backquotes
named() {
  set +e  # a pattern that matches nothing is no error
  grep -oHE 'STATS\[[a-z_]+\]' "$@" | sed -E 's/:STATS\[([a-z_]+)\]$/ \1/'
  grep -oHE '\bstats:[a-z_]+' "$@" | sed -E 's/:stats:/ /'
  grep -oHE '\$1 == "[a-z_]+"' "$@" | sed -E 's/:.*"([a-z_]+)"$/ \1/'
  grep -oHE '\b(stat_value|stat_now|stat_of) "[^"]+" [a-z_]+' "$@" | sed -E 's/:.* ([a-z_]+)$/ \1/'
  grep -oHE '`[a-z]+(_[a-z]+)* [0-9a-z]+`' "$@" | sed -E 's/:`([a-z_]+) [0-9a-z]+`$/ \1/'
  grep -oHE '^\.BR? "[a-z]+(_[a-z]+)* [0-9a-z]+"' "$@" | sed -E 's/:\.BR? "([a-z_]+) [0-9a-z]+"$/ \1/'
}

files=()
for f in "$src"/scripts/vramswap.in "$src"/scripts/*.sh "$src"/tests/*.sh "$src"/man/*.8.in \
  "$src"/README.md "$src"/docs/*.md; do
  [ -f "$f" ] || continue
  [ "$f" != "$src/tests/test-stats-keys.sh" ] || continue
  files+=("$f")
done
missing=0 checked=0
while read -r f key; do
  [ -n "$key" ] || continue
  checked=$((checked + 1))
  # Not keys of .stats: the documentation's own placeholder, and keys of
  # vramswap's JSON and of the lines status prints (not vramfs's).
  case $key in key | make | vramswap) continue ;; esac
  if [ -z "${is_declared[$key]:-}" ]; then
    echo "FAIL: ${f#"$src"/} reads .stats key '$key', which vramfs does not declare" >&2
    missing=$((missing + 1))
  fi
done < <(named "${files[@]}" | sort -u)
[ "$missing" = 0 ] || fail "$missing keys named but not declared (vramfs --stats-keys lists those that are)"
[ "$checked" -ge 30 ] || fail "only $checked names found: the patterns above no longer match the files"
echo "ok: $checked names in the shell, tests and docs, each declared"
