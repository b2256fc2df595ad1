#!/bin/bash
# Bad command lines: each answered with one clear line on stderr, a non-zero
# exit status, and no mount left behind.
# It swaps nothing and attaches no loop device: it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_root
requires_fuse

dir=$(make_tempdir)
mnt=$dir/mnt
mkdir "$mnt"
touch "$dir/file"

host="backend=host"
expect_refusal "unknown option(s): \`-o bogus'" "$mnt" -o "$host,size=64M,bogus"
expect_refusal "unknown option '--bogus'" "$mnt" --bogus
expect_refusal "needs a size" "$mnt" -o "$host"
expect_refusal "greater than 0" "$mnt" -o "$host,size=0"
expect_refusal "negative" "$mnt" -o "$host,size=-1"
expect_refusal "not a number" "$mnt" -o "$host,size=lots"
expect_refusal "unknown unit" "$mnt" -o "$host,size=4X"
expect_refusal "needs a value" "$mnt" -o "$host,size="
expect_refusal "too large" "$mnt" -o "$host,size=99999999999T"
expect_refusal "larger than the" "$mnt" -o "$host,size=64T"
expect_refusal "power of two" "$mnt" -o "$host,size=64M,block=3000"
expect_refusal "between 4K and 16M" "$mnt" -o "$host,size=64M,block=32M"
expect_refusal "power of two" "$mnt" -o "$host,size=64M,cache=100M"
expect_refusal "between 64K and 64G" "$mnt" -o "$host,size=64M,cache=32K"
expect_refusal "cuda or host" "$mnt" -o "backend=opencl,size=64M"
expect_refusal "must be dev or uring" "$mnt" -o "$host,size=64M,transport=pipe"
expect_refusal "from 1 to 128" "$mnt" -o "$host,size=64M,queue_depth=0"
expect_refusal "seconds from 1 to 3600" "$mnt" -o "$host,size=64M,copy_timeout=0"
expect_refusal "option max_read is not supported" "$mnt" -o "$host,size=64M,max_read=4096"
expect_refusal "failover: needs transport=dev" "$mnt" -o "$host,size=64M,failover,transport=uring"
expect_refusal "lazy is not supported" "$mnt" -o "$host,size=64M,failover,lazy"
expect_refusal "no mountpoint" -o "$host,size=64M"
expect_refusal "No such file or directory" "$dir/missing" -o "$host,size=64M"
expect_refusal "is not a directory" "$dir/file" -o "$host,size=64M"

# A backend this build or machine lacks.
if "$VRAMFS" --version | grep -q cuda; then
  if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    expect_refusal "no CUDA device" "$mnt" -o "backend=cuda,size=64M"
  fi
else
  expect_refusal "built without CUDA" "$mnt" -o "backend=cuda,size=64M"
fi

# Already mounted there.
mount_vramfs "$mnt" "size=64M"
status=0
err=$("$VRAMFS" "$mnt" -o "$host,size=64M" 2>&1) || status=$?
[ "$status" -ne 0 ] || fail "a second vramfs mounted over the first"
case $err in *"already mounted on"*) ;; *) fail "second mount said: $err" ;; esac
[ "$(grep -c " $mnt fuse.vramfs " /proc/mounts)" -eq 1 ] || fail "two mounts on $mnt"
echo "ok: second mount refused: $err"
umount "$mnt"

info "options that do nothing with the host backend are warned about, not silently ignored"
out=$("$VRAMFS" "$mnt" -o "$host,size=64M,device=1,reserve=1G" 2>&1) || fail "the mount failed: $out"
register mount "$mnt"
grep -q "warning: device=1 is ignored with backend=host" <<<"$out" || fail "no warning for device=: $out"
grep -q "warning: reserve= is ignored with backend=host" <<<"$out" || fail "no warning for reserve=: $out"
umount "$mnt"

info "a cache larger than the file is capped at the file's size"
mount_vramfs "$mnt" "size=64M,cache=1G"
[ "$(stat_value "$mnt" cache_bytes)" = $((64 << 20)) ] ||
  fail "cache_bytes is $(stat_value "$mnt" cache_bytes) for a 64M file"
umount "$mnt"

info "a relative mountpoint works in daemon mode"
(cd "$dir" && "$VRAMFS" mnt -o "$host,size=64M") || fail "vramfs with a relative mountpoint failed"
grep -q " $mnt fuse.vramfs " /proc/mounts || fail "not mounted on $mnt"
[ "$(stat_value "$mnt" size_bytes)" = $((64 << 20)) ] || fail "the relative mount does not answer"
umount "$mnt"

info "--version names the libfuse release"
"$VRAMFS" --version | grep -qE "libfuse 3\.[0-9]+" || fail "--version says: $("$VRAMFS" --version)"

info "without root, the memlock limit is named as the cause"
if command -v setpriv >/dev/null && [ "$(ulimit -H -l)" != unlimited ]; then
  chmod 755 "$dir"
  mkdir -p "$dir/user" && chown nobody "$dir/user"
  err=$(setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
    "$VRAMFS" "$dir/user" -o "$host,size=64M" 2>&1) && fail "a user without a memlock limit mounted"
  if "$VRAMFS" --version | grep -q "sanitizer build"; then
    echo "note: the sanitizer build locks no memory: not checked"
  else
    grep -q "memlock limit" <<<"$err" || fail "the refusal does not name the memlock limit: $err"
    echo "ok: $err"
    # A size under the limit can still fail: vramfs's own code is locked
    # first.  The refusal must say so, not only name the size.
    err=$(setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
      "$VRAMFS" "$dir/user" -o "$host,size=1M,cache=512K" 2>&1) && fail "a 1M mount under a small memlock limit mounted"
    grep -q "locked already by vramfs itself" <<<"$err" ||
      fail "the refusal of a small mount does not say what is locked already: $err"
  fi
else
  echo "note: no setpriv, or no memlock limit here: not checked"
fi
