#!/bin/bash
# Bad command lines: each answered with one clear line on stderr, a non-zero
# exit status, and no mount left behind.
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_root
requires_fuse

dir=$(make_tempdir)
mnt=$dir/mnt
mkdir "$mnt"
touch "$dir/file"

# expect_refusal TEXT ARGS...: vramfs ARGS must fail saying TEXT.
expect_refusal() {
  local want=$1 status=0 err
  shift
  err=$("$VRAMFS" "$@" 2>&1 >/dev/null) || status=$?
  [ "$status" -ne 0 ] || fail "vramfs $* succeeded; expected: $want"
  [ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "vramfs $* printed more than one line: $err"
  case $err in
    "vramfs: "*"$want"*) ;;
    *) fail "vramfs $* said '$err', expected it to say '$want'" ;;
  esac
  if mountpoint -q "$mnt"; then
    umount "$mnt"
    fail "vramfs $* left a mount behind"
  fi
  echo "ok: vramfs $* -> $err"
}

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
