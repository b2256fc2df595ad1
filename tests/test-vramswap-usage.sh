#!/bin/bash
# vramswap's usage: --help, --version, and --help and the man page listing
# the same commands and options; every bad flag and bad config line gets one
# clear line (naming FILE:LINE) and exit 2 with nothing created, and stop
# and status go on past a bad line, saying so.  The failover settings:
# refused with settings that cannot have it, given way to --transport uring
# and to an old kernel with a note.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps nothing and attaches no loop device (vramfs, and what it would
# do, are fakes): it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

# --- help, version ------------------------------------------------------------

info "--help and --version"
vs --help
expect_rc 0 "--help"
grep -q '^usage: vramswap start' <<<"$OUT" || fail "--help has no usage line"
vs --version
expect_rc 0 "--version"
grep -Eq '^vramswap [0-9]' <<<"$OUT" || fail "--version says: $OUT"
# The built page where the build says (MAN_DIR), else its source: the
# options are the same in both.
MAN=${MAN_DIR:-$TESTS_DIR/../man}/vramswap.8
[ -f "$MAN" ] || MAN=$TESTS_DIR/../man/vramswap.8.in
if [ -f "$MAN" ]; then
  info "--help and the man page list the same commands and options"
  vs --help
  # --help: the lines under "commands:" and "options:"; the man page: the
  # .TP headings of COMMANDS and OPTIONS.
  help_list=$(awk '/^commands:|^options:/ { on = 1; next } /^[^ ]/ { on = 0 }
    on && /^  [a-z]/ { print $1 } on && /^  --?[a-zA-Z]/ { n = split(substr($0, 1, 22), f, /[ ,]+/)
    for (i = 1; i <= n; i++) if (f[i] ~ /^--?[a-zA-Z]/) print f[i] }' <<<"$OUT" | sort -u)
  man_list=$(awk '/^\.SH (COMMANDS|OPTIONS)/ { on = 1; next } /^\.SH/ { on = 0 }
    on && prev == ".TP" { print } { prev = $0 }' "$MAN" |
    sed 's/\\-/-/g; s/\\f[BIRP]//g; s/^\.[A-Z]* //; s/"//g' |
    grep -Eo '(^|[ ,])(--?[a-zA-Z][a-z-]*|start|stop|resize|elastic|status|metrics|doctor|sleep|wake)' | tr -d ' ,' | sort -u)
  [ -n "$help_list" ] || fail "no options found in --help"
  [ "$help_list" = "$man_list" ] ||
    fail "--help and vramswap.8 differ: $(diff <(echo "$help_list") <(echo "$man_list") | grep '^[<>]' | tr '\n' ' ')"
fi

# --- bad command lines: exit 2, nothing created ---------------------------------

info "bad command lines"
H=(--backend host --size 64M --dir "$DIR")
expect_usage_error "missing command"
expect_usage_error "unknown command frobnicate" frobnicate
expect_usage_error "unknown option --bogus" --bogus
expect_usage_error "unknown option --bogus for start" start "${H[@]}" --bogus
expect_usage_error "unknown option -x for start" start "${H[@]}" -x
expect_usage_error "option --size needs a value" start --backend host --dir "$DIR" --size
expect_usage_error "option --size needs a value" start --backend host --dir "$DIR" --size=
expect_usage_error "bad --size value 'abc'" start "${H[@]}" --size abc
expect_usage_error "bad --size value '0'" start "${H[@]}" --size 0
expect_usage_error "bad --size value '12X'" start "${H[@]}" --size 12X
expect_usage_error "from 1% to 100%" start "${H[@]}" --size 101%
expect_usage_error "bad --cache value '50%'" start "${H[@]}" --cache 50%
expect_usage_error "bad --priority value '99999'" start "${H[@]}" --priority 99999
expect_usage_error "bad --priority value '-1'" start "${H[@]}" --priority -1
expect_usage_error "bad --priority value 'high'" start "${H[@]}" --priority high
expect_usage_error "bad --backend value 'opencl'" start "${H[@]}" --backend opencl
expect_usage_error "bad --gpu value 'x'" start "${H[@]}" --gpu x
expect_usage_error "bad --gpu value '1,,2'" start "${H[@]}" --gpu 1,,2
expect_usage_error "bad --transport value 'tcp': expected dev or uring" start "${H[@]}" --transport tcp
expect_usage_error "bad --queue-depth value '0': expected a number from 1 to 128" start "${H[@]}" --queue-depth 0
expect_usage_error "bad --queue-depth value 'deep'" start "${H[@]}" --queue-depth deep
expect_usage_error "unknown option --force for start" start "${H[@]}" --force
expect_usage_error "option --force takes no value" stop --dir "$DIR" --force=yes
expect_usage_error "unknown option --stripes for stop" stop --dir "$DIR" --stripes 2
expect_usage_error "option --gpu needs a value" start "${H[@]}" --gpu
expect_usage_error "option --dir needs a value" start --backend host --size 64M --dir ""
expect_usage_error "--backend host needs --size" start --backend host --dir "$DIR"
expect_usage_error "option --discard takes no value" start "${H[@]}" --discard=no
expect_usage_error "unknown option --size for stop" stop --dir "$DIR" --size 1G
expect_usage_error "unknown option --discard for stop" stop --dir "$DIR" --discard
expect_usage_error "unknown option --gpu for status" status --dir "$DIR" --gpu 0
expect_usage_error "unknown option extra for status" status --dir "$DIR" extra
expect_usage_error "--failover is refused by vramfs with these settings (from --transport): needs transport=dev: requests in flight on FUSE over io_uring" start "${H[@]}" --failover --transport uring
expect_usage_error "--failover is refused by vramfs with these settings (from --backend, --discard): backend=host with failover holds all of its memory" start "${H[@]}" --failover --discard
expect_usage_error "option --failover takes no value" start "${H[@]}" --failover=yes
expect_usage_error "option --no-failover takes no value" start "${H[@]}" --no-failover=1
expect_usage_error "unknown option --failover for stop" stop --dir "$DIR" --failover
expect_usage_error "unknown option --json for stop" stop --dir "$DIR" --json
expect_usage_error "unknown option --output for status" status --dir "$DIR" --output x
expect_usage_error "sleep: say what the machine is about to do: suspend or hibernate" sleep
expect_usage_error "sleep: expected suspend or hibernate, not nap" sleep nap

# --- bad config files: exit 2 naming FILE:LINE, nothing created ------------------

info "bad config lines"
CONF=$BASE/vramswap.conf
# bad_conf LINE TEXT: a config whose third line is LINE must be refused by
# start naming CONF:3 and TEXT; stop and status go on, saying the same
# (test-vramswap-bad-config.sh does it with swap running).
bad_conf() {
  printf '# vramswap test\nBACKEND=host\n%s\nSIZE=64M\nDIR=%s\n' "$1" "$DIR" >"$CONF"
  VRAMSWAP_CONF=$CONF expect_usage_error "$CONF:3: $2" start
  # --dir: a plain stop or status would find the swaps of the tests that
  # run beside this one (and stop them).
  VRAMSWAP_CONF=$CONF vs stop --dir "$DIR"
  expect_rc 0 "stop with a bad line 3: $1"
  [[ $ERR == "vramswap: $CONF:3: $2"*"; ignored here, and start refuses the file until it is fixed" ]] ||
    { show stop; fail "stop does not say that line 3 ($1) is bad"; }
  VRAMSWAP_CONF=$CONF vs status --dir "$DIR"
  expect_rc 3 "status with a bad line 3: $1"
  [[ $ERR == "vramswap: $CONF:3: $2"* ]] || { show status; fail "status does not say that line 3 ($1) is bad"; }
}
bad_conf 'FOO=1' "unknown key FOO"
bad_conf 'size=64M' "unknown key size"
bad_conf 'PRIORITY=high' "bad PRIORITY value 'high'"
bad_conf 'PRIORITY=40000' "bad PRIORITY value '40000'"
bad_conf 'DISCARD=maybe' "bad DISCARD value 'maybe': expected yes or no"
bad_conf 'BACKEND=opencl' "bad BACKEND value 'opencl': expected cuda or host"
bad_conf 'SIZE=lots' "bad SIZE value 'lots'"
bad_conf 'CACHE=10%' "bad CACHE value '10%'"
bad_conf 'GPU=all,0' "bad GPU value 'all,0'"
bad_conf 'STRIPES=0' "bad STRIPES value '0': expected a number from 1 to 16"
bad_conf 'TRANSPORT=fast' "bad TRANSPORT value 'fast': expected dev or uring"
bad_conf 'QUEUE_DEPTH=-4' "bad QUEUE_DEPTH value '-4'"
bad_conf 'FAILOVER=maybe' "bad FAILOVER value 'maybe': expected yes or no"
info "FAILOVER=yes with TRANSPORT=uring in the file: refused naming the line"
printf 'BACKEND=host\nSIZE=64M\nFAILOVER=yes\nTRANSPORT=uring\nDIR=%s\n' "$DIR" >"$CONF"
VRAMSWAP_CONF=$CONF expect_usage_error "$CONF:3: FAILOVER=yes is refused by vramfs with these settings (from $CONF:4): needs transport=dev" start
info "the default gives way to --transport uring: no failover asked of vramfs"
# A vramfs that fails every mount, noting its arguments; its option checks
# are the real vramfs's, which start asks what failover can have.
# shellcheck disable=SC2016 # the fake's own $1 and $*
printf '#!/bin/bash\n[ "$1" != --check-options ] || exec %q "$@"\necho "$*" >"%s/vramfs-args"\nexit 1\n' \
  "$(command -v "$VRAMFS")" "$BASE" >"$BASE/fake-vramfs"
chmod +x "$BASE/fake-vramfs"
echo Y >"$BASE/uring-on"
VRAMSWAP_URING_PARAM=$BASE/uring-on VRAMFS=$BASE/fake-vramfs vs start "${H[@]}" --transport uring
! grep -q failover "$BASE/vramfs-args" || fail "--transport uring asked vramfs for failover: $(cat "$BASE/vramfs-args")"
! grep -q "without failover" <<<"$ERR" || { show start; fail "the default gave way to --transport uring with a note"; }
info "... and to a kernel older than 6.9, saying so"
mkdir -p "$BASE/old/proc/sys/kernel"
echo 6.1.0-18-amd64 >"$BASE/old/proc/sys/kernel/osrelease"
VRAMSWAP_SYSROOT=$BASE/old VRAMFS=$BASE/fake-vramfs vs start "${H[@]}"
grep -q "^vramswap: starting without failover: it needs Linux 6.9 or newer (FUSE_NOTIFY_RESEND), and this kernel is 6.1.0-18-amd64" <<<"$ERR" ||
  { show start; fail "an old kernel does not turn the default failover off with a note"; }
! grep -q failover "$BASE/vramfs-args" || fail "an old kernel was asked for failover"
VRAMSWAP_SYSROOT=$BASE/old VRAMFS=$BASE/fake-vramfs expect_usage_error "--failover needs Linux 6.9 or newer" start "${H[@]}" --failover
VRAMFS=$BASE/fake-vramfs vs start "${H[@]}"
grep -q -- "-o .*,failover" "$BASE/vramfs-args" || fail "the default start did not ask vramfs for failover: $(cat "$BASE/vramfs-args")"
assert_nothing "the failover settings"
bad_conf 'DIR=relative/path' "bad DIR value 'relative/path': expected an absolute path"
bad_conf 'just some words' "expected KEY=value"
# The file is parsed, never sourced: nothing in it runs.
bad_conf "SIZE=\$(touch $BASE/pwned)" "bad SIZE value"
[ ! -e "$BASE/pwned" ] || fail "a command in the config file ran"
bad_conf "touch $BASE/pwned" "expected KEY=value"
[ ! -e "$BASE/pwned" ] || fail "a command in the config file ran"
info "a config file that cannot be read"
mkdir -p "$BASE/conf-dir"
VRAMSWAP_CONF=$BASE/conf-dir expect_usage_error "cannot read $BASE/conf-dir" start "${H[@]}"
echo "PASS"
