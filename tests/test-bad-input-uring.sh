#!/bin/bash
# transport=uring refused before anything is mounted, with one clear line:
# where the fuse module's enable_uring is N and cannot be turned on (a
# read-only file bound over the parameter stands for it), and for rings
# that would lock more memory than a machine can spare.  The bind over the
# module's parameter is made in a mount namespace of the test's own, so
# that no other process sees it or can undo it.  vramfs turns the real
# parameter on where it can, as every uring test does: it runs beside
# other tests.
if [ -z "${VRAMFS_TEST_OWN_MOUNTS:-}" ] && command -v unshare >/dev/null; then
  VRAMFS_TEST_OWN_MOUNTS=1 exec unshare --mount --propagation private bash "$0" "$@"
fi
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_root
requires_fuse
uring_param=/sys/module/fuse/parameters/enable_uring
[ -e "$uring_param" ] ||
  skip_optional "this kernel's fuse module has no enable_uring (FUSE over io_uring needs Linux 6.14 or newer)"
"$VRAMFS" --version | grep -q 'transports:.*uring' || skip_optional "this vramfs was built without liburing"

dir=$(make_tempdir)
mnt=$dir/mnt
mkdir "$mnt"
host="backend=host"

info "enable_uring is N and cannot be turned on"
# The bind is undone before anything else on exit, so the real parameter
# is back whatever happens.
echo N >"$dir/enable_uring"
cleanup_first() { mountpoint -q "$uring_param" && umount "$uring_param"; }
mount --bind "$dir/enable_uring" "$uring_param"
mount -o remount,bind,ro "$uring_param"
expect_refusal "transport=uring: FUSE over io_uring is off ($uring_param is N) and cannot be turned on: Read-only file system" \
  "$mnt" -o "$host,size=64M,transport=uring"
umount "$uring_param"

info "rings that would lock more than a machine can spare"
# Not gigabytes of pinned memory: 8 threads x 128 entries of 1 MiB on
# every possible CPU is over a GiB even with one CPU.
expect_refusal "more than 1024 MiB: lower queue_depth= or queue_threads=, or use transport=dev" \
  "$mnt" -o "$host,size=64M,transport=uring,queue_depth=128,queue_threads=8"
echo PASS
