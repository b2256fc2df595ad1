#!/bin/bash
# vramswap refusals: every bad flag and bad config line gets one clear line
# and a non-zero exit with nothing created; a start that fails part-way rolls
# back everything it created and says which step failed; stop refuses to go
# on when swapoff fails and leaves everything running.  Failing steps are
# simulated with fake losetup/mkswap/swapon/swapoff/vramfs/nvidia-smi.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"
REAL_LOSETUP=$(command -v losetup)
REAL_SWAPON=$(command -v swapon)

vramfs_daemons_under() { # pids of vramfs daemons serving a mount under PATH
  local pid
  for pid in $(pgrep -x vramfs); do
    alive "$pid" || continue
    tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "^$1/" && echo "$pid"
  done
  return 0
}

# Nothing of ours exists: no loop device, mount, swap, daemon, and DIR was
# not created (or was removed again).
assert_nothing() { # WHAT
  [ -z "$(loops_under "$BASE")" ] || fail "$1: loop devices left: $(loops_under "$BASE")"
  [ -z "$(vramfs_mounts_under "$BASE")" ] || fail "$1: mounts left: $(vramfs_mounts_under "$BASE")"
  [ ! -e "$DIR" ] || fail "$1: $DIR was left behind: $(ls -A "$DIR")"
  sleep 0.1
  [ -z "$(vramfs_daemons_under "$BASE")" ] || fail "$1: vramfs daemons left: $(vramfs_daemons_under "$BASE")"
}

# A usage or configuration error: exit 2, one line on stderr that starts
# with "vramswap: " and contains TEXT, nothing on stdout, nothing created.
expect_usage_error() { # TEXT ARGS...
  local text=$1
  shift
  vs "$@"
  expect_rc 2 "$*"
  [ -z "$OUT" ] || { show "$@"; fail "$*: printed on stdout"; }
  [ "$(wc -l <<<"$ERR")" = 1 ] || { show "$@"; fail "$*: not one line on stderr"; }
  [[ $ERR == "vramswap: "* ]] || { show "$@"; fail "$*: message without the vramswap: prefix"; }
  [[ $ERR == *"$text"* ]] || { show "$@"; fail "$*: message does not say '$text'"; }
  echo "  $* -> $ERR"
  assert_nothing "$*"
}

# fake NAME SCRIPT: a command NAME in $BASE/fake-NAME/, first on PATH for
# the calls that use FAKE_PATH.
fake() {
  mkdir -p "$BASE/fake-$1"
  printf '#!/bin/bash\n%s\n' "$2" >"$BASE/fake-$1/$1"
  chmod +x "$BASE/fake-$1/$1"
  FAKE_PATH=$BASE/fake-$1:$PATH
}

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
  VRAMSWAP_CONF=$CONF vs stop
  expect_rc 0 "stop with a bad line 3: $1"
  [[ $ERR == "vramswap: $CONF:3: $2"*"; ignored here, and start refuses the file until it is fixed" ]] ||
    { show stop; fail "stop does not say that line 3 ($1) is bad"; }
  VRAMSWAP_CONF=$CONF vs status
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

# --- GPUs that do not exist, a mount that fails: exit 1, nothing left ---------------

info "a GPU that does not exist"
fake nvidia-smi 'printf "0, GPU-00000000-aaaa\n1, GPU-11111111-bbbb\n"'
PATH=$FAKE_PATH vs start --backend cuda --gpu 5 --dir "$DIR"
expect_rc 1 "start --gpu 5"
grep -q "^vramswap: GPU 5 does not exist (GPUs here: 0 1)$" <<<"$ERR" || { show start; fail "start --gpu 5 says: $ERR"; }
assert_nothing "start --gpu 5"
PATH=$FAKE_PATH vs start --backend cuda --gpu 0,7 --dir "$DIR"
expect_rc 1 "start --gpu 0,7"
grep -q "GPU 7 does not exist" <<<"$ERR" || fail "start --gpu 0,7 says: $ERR"
assert_nothing "start --gpu 0,7 (gpu0 must not be started either)"
fake nvidia-smi 'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." ; exit 9'
PATH=$FAKE_PATH vs start --backend cuda --dir "$DIR"
expect_rc 1 "start, nvidia-smi failing"
grep -q "nvidia-smi cannot list the GPUs: NVIDIA-SMI has failed" <<<"$ERR" || fail "start with a failing nvidia-smi says: $ERR"
assert_nothing "start, nvidia-smi failing"

info "vramfs cannot mount: step named, directory removed"
fake nvidia-smi 'printf "0, GPU-00000000-aaaa\n1, GPU-11111111-bbbb\n"'
cat >"$BASE/fake-vramfs" <<'EOF'
#!/bin/bash
echo "vramfs: cannot reserve 64M of VRAM on GPU 1: out of memory" >&2
exit 1
EOF
chmod +x "$BASE/fake-vramfs"
PATH=$FAKE_PATH VRAMFS=$BASE/fake-vramfs vs start --backend cuda --size 64M --dir "$DIR" --gpu 1
expect_rc 1 "start, vramfs failing"
# vramfs gets the UUID: CUDA may number the GPUs otherwise than nvidia-smi.
grep -q "^vramswap: gpu1: mount (.*device=GPU-11111111-bbbb.*) failed" <<<"$ERR" ||
  { show start; fail "vramfs did not get the GPU's UUID"; }
grep -q "^vramswap: gpu1: mount (.*) failed: vramfs: cannot reserve 64M of VRAM on GPU 1: out of memory$" <<<"$ERR" ||
  { show start; fail "a failing mount is not reported as such"; }
assert_nothing "start, vramfs failing"

info "DIR cannot be created"
vs start --backend host --size 64M --dir "/proc/vramswap-test-$$"
expect_rc 1 "start --dir /proc/..."
grep -q "gpu0: creating /proc/vramswap-test-$$ failed" <<<"$ERR" || fail "an impossible DIR says: $ERR"
touch "$BASE/a-file"
vs start --backend host --size 64M --dir "$BASE/a-file/run"
expect_rc 1 "start --dir under a file"
grep -q "gpu0: creating $BASE/a-file/run failed: .*Not a directory" <<<"$ERR" || fail "DIR under a file says: $ERR"
assert_nothing "unwritable DIR"

# --- a step fails after the mount: everything rolled back --------------------------

# rollback_case WHAT TEXT: start with the fake on PATH fails with TEXT in
# its message and leaves nothing behind.
rollback_case() {
  PATH=$FAKE_PATH vs start --backend host --size 64M --dir "$DIR" --gpu "${3:-0}"
  expect_rc 1 "$1"
  grep -q "$2" <<<"$ERR" || { show start; fail "$1: the message does not say '$2'"; }
  grep -q "rolling back" <<<"$ERR" || { show start; fail "$1: no word of rolling back"; }
  echo "  $1 -> $(grep -v 'rolling back\|^vramfs: warning' <<<"$ERR" | tr '\n' ' ')"
  assert_nothing "$1"
}

info "no free loop device (losetup fails)"
fake losetup 'echo "losetup: cannot find an unused loop device" >&2; exit 1'
rollback_case "losetup failing" "gpu0: attaching a loop device (losetup) failed: losetup failed: losetup: cannot find an unused loop device"
info "... with a DIR of several new levels and spaces: all of them removed"
SAVED_DIR=$DIR
DIR="$BASE/new dir/deeper/run"
rollback_case "losetup failing, nested DIR" "gpu0: attaching a loop device (losetup) failed"
[ ! -e "$BASE/new dir" ] || fail "rollback left $BASE/new dir behind"
DIR=$SAVED_DIR

info "a loop device without direct I/O is refused"
fake losetup "args=(); for a in \"\$@\"; do [ \"\$a\" = --direct-io=on ] || args+=(\"\$a\"); done; exec $REAL_LOSETUP \"\${args[@]}\""
rollback_case "loop without dio" "gpu0: attaching a loop device (losetup) failed: /dev/loop[0-9]* has dio=0, not 1"

info "mkswap fails"
fake mkswap 'echo "mkswap: error: swap area needs to be at least 40 KiB" >&2; exit 1'
rollback_case "mkswap failing" "gpu0: mkswap /dev/loop[0-9]* failed: mkswap: error: swap area needs"

info "swapon fails"
fake swapon 'echo "swapon: /dev/loop9: swapon failed: Device or resource busy" >&2; exit 1'
rollback_case "swapon failing" "gpu0: swapon --priority 100 /dev/loop[0-9]* failed: swapon: .*busy"

info "the second GPU fails: the first, already swapping, is rolled back too"
fake swapon "if [ -e $BASE/swapon-once ]; then echo 'swapon: failed' >&2; exit 1; fi
touch $BASE/swapon-once; exec $REAL_SWAPON \"\$@\""
rollback_case "second swapon failing" "gpu1: swapon .* failed" 0,1
grep -q "rolling back: swapoff" <<<"$ERR" || fail "the first GPU's swap was not turned off again"

info "a signal while losetup attaches: the new loop device is rolled back too"
# The fake attaches for real, then sends SIGTERM to the vramswap that runs
# it (the outermost process running VRAMSWAP), before vramswap has seen the
# device's name: only an undo entry pushed before the step can find it.
cat >"$BASE/interrupting-losetup" <<EOF
#!/bin/bash
[[ " \$* " == *' --find '* ]] || exec $REAL_LOSETUP "\$@"
$REAL_LOSETUP "\$@"
p=\$PPID top=
while [ "\$p" -gt 1 ]; do
  [ "\$(tr '\\0' '\\n' </proc/\$p/cmdline | sed -n 2p)" != "$VRAMSWAP" ] || top=\$p
  p=\$(awk '{ print \$4 }' /proc/\$p/stat)
done
kill -TERM "\$top"
sleep 0.5
EOF
fake losetup "exec bash $BASE/interrupting-losetup \"\$@\""
PATH=$FAKE_PATH vs start --backend host --size 64M --dir "$DIR"
expect_rc 143 "start interrupted while losetup attaches (SIGTERM)"
grep -q "^vramswap: interrupted" <<<"$ERR" || { show start; fail "the interrupted start does not say so"; }
echo "  -> $(tr '\n' ' ' <<<"$ERR")"
assert_nothing "start interrupted while losetup attaches"

info "--transport and --queue-depth reach vramfs; uring turns on enable_uring"
cat >"$BASE/fake-vramfs" <<EOF
#!/bin/bash
[ "\$1" != --check-options ] || exec $(command -v "$VRAMFS") "\$@"
echo "\$*" >"$BASE/vramfs-args"
echo "vramfs: unknown option transport" >&2
exit 1
EOF
URING=$BASE/enable_uring
echo N >"$URING"
VRAMSWAP_URING_PARAM=$URING VRAMFS=$BASE/fake-vramfs vs start "${H[@]}" --transport dev --queue-depth 8
expect_rc 1 "start --transport dev (a vramfs that refuses it)"
# A queue depth is for uring only (test-vramswap-queue-depth.sh).
grep -q -- "-o .*,transport=dev" "$BASE/vramfs-args" || fail "vramfs got: $(cat "$BASE/vramfs-args")"
! grep -q queue_depth "$BASE/vramfs-args" || fail "vramfs got a queue depth with transport dev: $(cat "$BASE/vramfs-args")"
[ "$(cat "$URING")" = N ] || fail "--transport dev turned enable_uring on"
assert_nothing "start --transport dev, vramfs failing"
VRAMSWAP_URING_PARAM=$URING VRAMFS=$BASE/fake-vramfs vs start "${H[@]}"
! grep -q "transport=\|queue_depth=" "$BASE/vramfs-args" ||
  fail "vramfs got a transport without --transport: $(cat "$BASE/vramfs-args")"
printf 'TRANSPORT=uring\nQUEUE_DEPTH=32\n' >"$BASE/uring.conf"
VRAMSWAP_CONF=$BASE/uring.conf VRAMSWAP_URING_PARAM=$URING VRAMFS=$BASE/fake-vramfs vs start "${H[@]}"
expect_rc 1 "start with TRANSPORT=uring (a vramfs that refuses it)"
grep -q -- "-o .*,transport=uring,queue_depth=32" "$BASE/vramfs-args" || fail "vramfs got: $(cat "$BASE/vramfs-args")"
[ "$(cat "$URING")" = Y ] || fail "TRANSPORT=uring did not turn enable_uring on"
assert_nothing "start with TRANSPORT=uring, vramfs failing"

info "... where the kernel has no enable_uring, or it cannot be set: one line, nothing started"
rm -f "$BASE/vramfs-args"
VRAMSWAP_URING_PARAM=$BASE/missing VRAMFS=$BASE/fake-vramfs vs start "${H[@]}" --transport uring
expect_rc 1 "start --transport uring without enable_uring"
[ "$(wc -l <<<"$ERR")" = 1 ] || { show start; fail "not one line"; }
grep -q "^vramswap: --transport uring: this kernel's fuse module has no $BASE/missing .*; nothing started$" <<<"$ERR" ||
  { show start; fail "a kernel without enable_uring is not reported as such"; }
[ ! -e "$BASE/vramfs-args" ] || fail "vramfs ran although enable_uring is missing"
assert_nothing "start --transport uring without enable_uring"
echo N >"$URING"
chmod 444 "$URING"
# Root without CAP_DAC_OVERRIDE cannot write a read-only file.
RC=0
VRAMSWAP_URING_PARAM=$URING VRAMFS=$BASE/fake-vramfs setpriv --bounding-set=-dac_override \
  "$VRAMSWAP" start "${H[@]}" --transport uring >"$BASE/out" 2>"$BASE/err" || RC=$?
OUT=$(cat "$BASE/out") ERR=$(cat "$BASE/err")
expect_rc 1 "start --transport uring, enable_uring read-only"
grep -q "^vramswap: --transport uring: cannot turn on FUSE over io_uring (writing Y to $URING failed); nothing started$" <<<"$ERR" ||
  { show start; fail "an enable_uring that cannot be set is not reported as such"; }
[ ! -e "$BASE/vramfs-args" ] || fail "vramfs ran although enable_uring could not be set"
assert_nothing "start --transport uring, enable_uring read-only"

info "what was already active before the start is left alone"
# The fake swapon of "the second GPU fails" again.
FAKE_PATH=$BASE/fake-swapon:$PATH
vs start --backend host --size 64M --dir "$DIR"
expect_rc 0 "start gpu0"
LOOP=$(loops_under "$DIR/gpu0")
swap_active "$LOOP" || fail "gpu0 did not start"
rm -f "$BASE/swapon-once"
touch "$BASE/swapon-once"
PATH=$FAKE_PATH vs start --backend host --size 64M --dir "$DIR" --gpu 0,1
expect_rc 1 "start --gpu 0,1 with gpu0 active"
grep -q "gpu0: already active" <<<"$OUT" || { show start; fail "gpu0 not reported as already active"; }
grep -q "gpu1: swapon .* failed" <<<"$ERR" || { show start; fail "the gpu1 failure is not reported"; }
swap_active "$LOOP" || fail "a failed start rolled back gpu0, which it did not create"
[ "$(loops_under "$DIR/gpu0")" = "$LOOP" ] || fail "gpu0's loop device changed"
[ -z "$(loops_under "$DIR/gpu1")" ] || fail "gpu1's loop device was left"
! mountpoint -q "$DIR/gpu1" || fail "gpu1 was left mounted"

# --- stop refuses when swapoff fails ----------------------------------------------

info "swapoff fails: stop says so, exits 1, and everything keeps running"
PID=$(daemon_pid "$DIR/gpu0")
# shellcheck disable=SC2016 # $1 is the fake's argument
fake swapoff 'echo "swapoff: $1: swapoff failed: Cannot allocate memory" >&2; exit 255'
PATH=$FAKE_PATH vs stop --dir "$DIR"
expect_rc 1 "stop with swapoff failing"
# With RAM to spare the message says what swapoff said, and no guess that
# RAM was short.
grep -q "^vramswap: gpu0: swapoff $LOOP failed: swapoff: $LOOP: swapoff failed: Cannot allocate memory; left running$" <<<"$ERR" ||
  { show stop; fail "stop does not explain the swapoff failure"; }
# ENOMEM with RAM to spare is tried 3 times in all before stop gives up.
[ "$(grep -c "^vramswap: gpu0: swapoff $LOOP: swapoff: $LOOP: swapoff failed: Cannot allocate memory, with RAM to spare; trying again$" <<<"$ERR")" = 2 ] ||
  { show stop; fail "stop did not try swapoff again twice"; }
swap_active "$LOOP" || fail "the swap went away although swapoff failed"
[ "$(loops_under "$DIR/gpu0")" = "$LOOP" ] || fail "the loop device went away although swapoff failed"
mountpoint -q "$DIR/gpu0" || fail "the mount went away although swapoff failed"
alive "$PID" || fail "the daemon was stopped although its swap is active"
vs status --dir "$DIR"
expect_rc 0 "status after the refused stop"

info "a swapoff that fails once with ENOMEM, then works: stop goes through"
real_swapoff=$(PATH=/usr/sbin:/sbin:$PATH command -v swapoff)
fake swapoff "if [ ! -e '$BASE/swapoff-failed' ]; then
  touch '$BASE/swapoff-failed'
  echo \"swapoff: \$1: swapoff failed: Cannot allocate memory\" >&2
  exit 255
fi
exec '$real_swapoff' \"\$@\""
PATH=$FAKE_PATH vs stop --dir "$DIR"
expect_rc 0 "stop with swapoff failing once"
grep -q "swapoff failed: Cannot allocate memory, with RAM to spare; trying again" <<<"$ERR" ||
  { show stop; fail "stop did not say that it tried swapoff again"; }
[ -z "$(loops_under "$BASE")" ] || fail "loop devices left after stop"
[ -z "$(vramfs_mounts_under "$BASE")" ] || fail "mounts left after stop"
! swap_active "$LOOP" || fail "$LOOP is still swap"
[ ! -e "$DIR/gpu0" ] || fail "stop left $DIR/gpu0"
echo "PASS"
