#!/bin/bash
# The shell library that vramswap, the tests and bench/run share
# (scripts/vramswap-lib.sh) and the tests' own helpers: the mount table
# decoded, the daemon found by its mount, helpers that fail loudly inside
# $(...), teardown in the safe order, and skips that fail where the tests
# must run.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
export TESTS_DIR
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

dir=$(make_tempdir)

info "skips: a failure under VRAMFS_TESTS_MUST_RUN=1, except the optional ones"
# run_helpers ENV... -- SCRIPT: SCRIPT in a new bash that has sourced
# functions.sh; STATUS and OUTPUT say what happened.
run_helpers() {
  local env=()
  while [ "$1" != -- ]; do env+=("$1"); shift; done
  STATUS=0
  OUTPUT=$(env ${env[@]+"${env[@]}"} bash -c ". \"\$TESTS_DIR/functions.sh\"; $2" 2>&1) || STATUS=$?
}
run_helpers VRAMFS_TESTS_MUST_RUN=1 -- 'skip "no /dev/fuse"'
[ "$STATUS" = 1 ] || fail "skip under VRAMFS_TESTS_MUST_RUN=1 exited $STATUS: $OUTPUT"
grep -q "FAIL: no /dev/fuse (VRAMFS_TESTS_MUST_RUN=1" <<<"$OUTPUT" || fail "the failed skip says: $OUTPUT"
run_helpers VRAMFS_TESTS_MUST_RUN=1 -- 'requires_gpu; skip_optional "built without CUDA"'
[ "$STATUS" = 77 ] || fail "an optional skip under VRAMFS_TESTS_MUST_RUN=1 exited $STATUS: $OUTPUT"
run_helpers VRAMFS_TESTS_MUST_RUN=0 -- 'skip "no /dev/fuse"'
[ "$STATUS" = 77 ] || fail "skip exited $STATUS: $OUTPUT"

info "a test that shares the lock cannot push a process into swap"
run_helpers VRAMFS_TEST_LOCKED=shared -- 'make_memory_cgroup 16'
[ "$STATUS" = 1 ] || fail "make_memory_cgroup under a shared lock exited $STATUS: $OUTPUT"
grep -q "it pushes a process into swap, but this test runs beside others that swap" <<<"$OUTPUT" ||
  fail "make_memory_cgroup under a shared lock says: $OUTPUT"

info "teardown leaves a registered loop device alone once another test's file holds it"
# As a test beside this one that got the name the test let go of: a
# folder of its own, which this test's cleanup does not know.
other=$(mktemp -d /tmp/vramfs-other.XXXXXX)
register dir "$other"
truncate -s 1M "$other/file"
dev=$(losetup --find --show -- "$other/file")
register loop "$dev"
run_helpers -- "register loop $dev; register swap $dev"
held=$(loop_backing "$dev") || fail "the inner test's teardown detached $dev, which was not its own: $OUTPUT"
[ "$held" = "$other/file" ] || fail "$dev holds $held, not $other/file"

info "cleanup_first sees the test's own variables, even those named like cleanup's"
# shellcheck disable=SC2016 # $dir is the inner script's, expanded there
run_helpers -- 'dir=/the/tests/dir; cleanup_first() { echo "cleanup_first saw dir=$dir"; }'
grep -qx "cleanup_first saw dir=/the/tests/dir" <<<"$OUTPUT" ||
  fail "cleanup_first did not see the test's \$dir (status $STATUS): $OUTPUT"

info "the mount table, escapes decoded"
printf '%s\n' \
  '36 25 0:31 / /tmp/a\040b rw,relatime shared:1 - fuse.vramfs vram\040swap rw' \
  '37 25 0:32 / /tmp/back\134slash rw - tmpfs tmpfs rw' \
  '38 25 7:1 / /mnt/x rw master:3 unbindable - ext4 /dev/loop1 rw' >"$dir/mountinfo"
want=$(printf '0:31\tfuse.vramfs\tvram swap\t/tmp/a b\n0:32\ttmpfs\ttmpfs\t/tmp/back\\slash\n7:1\text4\t/dev/loop1\t/mnt/x')
got=$(MOUNTINFO=$dir/mountinfo mount_table)
[ "$got" = "$want" ] || fail "mount_table decoded: $(cat -A <<<"$got")"
MOUNTINFO=$dir/mountinfo is_mounted "/tmp/a b" || fail "is_mounted does not find /tmp/a b"
! MOUNTINFO=$dir/mountinfo is_mounted /tmp/a || fail "is_mounted finds /tmp/a"
[ "$(MOUNTINFO=$dir/mountinfo vramfs_mounts_under /tmp)" = "/tmp/a b" ] ||
  fail "vramfs_mounts_under /tmp: $(MOUNTINFO=$dir/mountinfo vramfs_mounts_under /tmp)"

info "a real mount whose path has a space"
mnt="$dir/with space/mnt"
mount_vramfs "$mnt" "size=16M"
is_mounted "$mnt" || fail "is_mounted does not find '$mnt'"
[ "$(vramfs_mounts_under "$dir")" = "$mnt" ] || fail "vramfs_mounts_under: $(vramfs_mounts_under "$dir")"
unmount "$mnt" || fail "unmount '$mnt' failed"
! is_mounted "$mnt" || fail "'$mnt' is still mounted"

info "the daemon is found by its mount, not by a command line that names it"
# A process named vramfs whose command line names the mount point, started
# first; the real daemon, mounted by a relative path, does not name it.
mkdir -p "$dir/bin" "$dir/mnt"
ln -s "$(command -v bash)" "$dir/bin/vramfs"
"$dir/bin/vramfs" -c 'while :; do sleep 1; done' decoy "$dir/mnt" &
decoy=$!
# shellcheck disable=SC2317 # run by cleanup
cleanup_first() { kill "$decoy" 2>/dev/null; }
(cd "$dir" && exec "$VRAMFS" mnt -f -o "backend=$VRAMFS_TEST_BACKEND${VRAMFS_TEST_TRANSPORT:+,transport=$VRAMFS_TEST_TRANSPORT},size=16M") 2>"$dir/log" &
daemon=$!
register mount "$dir/mnt"
for _ in $(seq 100); do is_mounted "$dir/mnt" && break; nap 0.1; done
is_mounted "$dir/mnt" || fail "the mount did not come up: $(cat "$dir/log")"
[ "$(daemon_pid "$dir/mnt")" = "$daemon" ] ||
  fail "daemon_pid found $(daemon_pid "$dir/mnt"), not the daemon $daemon (the decoy is $decoy)"
kill "$decoy"
wait "$decoy" 2>/dev/null || true
umount "$dir/mnt"
wait "$daemon" || fail "the daemon exited with status $?: $(cat "$dir/log")"

info "... and by its command line only when .stats does not answer"
mount_vramfs "$dir/mnt" "size=16M"
daemon=$(stat_value "$dir/mnt" pid)
kill -STOP "$daemon"
# shellcheck disable=SC2317 # run by cleanup
cleanup_first() { kill -CONT "$daemon" 2>/dev/null; }
SECONDS=0
found=$(VRAMFS_PROBE_TIMEOUT=1 daemon_pid "$dir/mnt")
[ "$found" = "$daemon" ] || fail "with .stats silent, daemon_pid found '$found', not $daemon"
! VRAMFS_PROBE_TIMEOUT=1 read_stats "$dir/mnt" || fail "read_stats answered for a stopped daemon"
info "read_stats: $STATS_ERR"
[ "$SECONDS" -lt 10 ] || fail "finding a stopped daemon took $SECONDS s"
kill -CONT "$daemon"
umount "$dir/mnt"

info "a helper run as \$(...) fails loudly"
mkdir -p "$dir/fake"
printf '#!/bin/bash\necho "losetup: cannot find an unused loop device" >&2\nexit 1\n' >"$dir/fake/losetup"
chmod +x "$dir/fake/losetup"
touch "$dir/file"
run_helpers PATH="$dir/fake:$PATH" -- "dev=\$(attach_loop $dir/file); echo \"attached '\$dev'\""
[ "$STATUS" != 0 ] || fail "attach_loop with a failing losetup succeeded: $OUTPUT"
! grep -q attached <<<"$OUTPUT" || fail "the test went on with an empty device: $OUTPUT"
grep -q "losetup failed: losetup: cannot find an unused loop device" <<<"$OUTPUT" ||
  fail "attach_loop does not say why: $OUTPUT"
STATUS=0
OUTPUT=$(PATH="$dir/fake:$PATH" bash -c '. "$VRAMSWAP_LIB"; dev=$(loop_attach "$1") || exit 3; echo "$dev"' _ "$dir/file" 2>&1) ||
  STATUS=$?
[ "$STATUS" = 3 ] || fail "loop_attach with a failing losetup: status $STATUS: $OUTPUT"

info "teardown: the cgroup's processes first, then swapoff, losetup -d, umount"
mount_vramfs "$dir/tmnt" "size=64M"
loop=$(attach_loop "$dir/tmnt/swapfile")
enable_swap "$loop"
cg=$(make_memory_cgroup 64)
spawn_in_cgroup "$cg" /dev/null sleep 600
sleeper=$SPAWNED
for _ in $(seq 50); do [ -n "$(cat "$cg/cgroup.procs")" ] && break; nap 0.1; done
# Fakes that log each step, and whether the cgroup still had a process.
for tool in swapoff losetup umount; do
  real=$(command -v $tool)
  cat >"$dir/fake/$tool" <<EOF
#!/bin/bash
if [ -n "\$(cat "$cg/cgroup.procs" 2>/dev/null)" ]; then procs=busy; else procs=empty; fi
[ "\$1" = -n ] || echo "$tool \$procs" >>"$dir/steps"
exec $real "\$@"
EOF
  chmod +x "$dir/fake/$tool"
done
# The order of registration is the order of creation, the reverse of what
# teardown must do; the cgroup, made last, must still go first.
run_helpers PATH="$dir/fake:$PATH" -- "register mount '$dir/tmnt'; register loop $loop; register swap $loop; register cgroup $cg"
wait "$sleeper" 2>/dev/null || true
cat "$dir/steps"
[ "$(xargs <"$dir/steps")" = "swapoff empty losetup empty umount empty" ] ||
  fail "teardown steps: $(xargs <"$dir/steps")"
! swap_active "$loop" || fail "$loop is still swap after teardown"
! is_mounted "$dir/tmnt" || fail "$dir/tmnt is still mounted after teardown"
[ ! -d "$cg" ] || fail "the cgroup $cg is still there after teardown"

info "kernel log: read errors of one loop device"
log='[  100.000001] I/O error, dev loop7, sector 8 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0
[  100.000002] I/O error, dev loop17, sector 8 op 0x0:(READ) flags 0x0 phys_seg 1 prio class 0
[  100.000003] I/O error, dev loop7, sector 16 op 0x1:(WRITE) flags 0x0 phys_seg 1 prio class 0'
[ "$(loop_read_errors /dev/loop7 "$log")" = 1 ] || fail "loop_read_errors counted $(loop_read_errors /dev/loop7 "$log")"
echo PASS
