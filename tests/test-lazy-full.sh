#!/bin/bash
# A lazy vramfs on a GPU that another program has filled: a write that
# cannot be placed fails with ENOSPC at once (no hang), is counted and
# logged, what was written stays readable, and once the other program frees
# its memory the same writes succeed.  Needs a GPU; skipped elsewhere.
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_root
requires_fuse
requires_gpu
"$VRAMFS" --version | grep -q cuda || skip_optional "this vramfs was built without CUDA"
[ -x "${VRAM_HOG:-}" ] || skip_optional "no vram-hog program (it is built only with CUDA)"

dir=$(make_tempdir)
mnt=$dir/mnt
file=$mnt/swapfile
mkdir -p "$mnt"
size_mib=4096
piece_mib=64
leave_mib=512

hog=
cleanup_first() { release_hog; }

# In the foreground, so that its log can be read.
"$VRAMFS" "$mnt" -f -o "backend=cuda,lazy,size=${size_mib}M,cache=16M" 2>"$dir/log" &
register mount "$mnt"
for _ in $(seq 100); do [ -e "$file" ] && break; nap 0.1; done
[ -e "$file" ] || fail "the mount did not come up: $(cat "$dir/log")"
[ "$(stat_value "$mnt" vram_bytes)" = 0 ] || fail "a lazy mount holds VRAM before any write"

info "another program takes all but $leave_mib MiB of the GPU"
mkfifo "$dir/hold"
"$VRAM_HOG" 0 "$leave_mib" <"$dir/hold" >"$dir/hog" 2>&1 &
hog=$!
exec 7>"$dir/hold"  # the hog holds its memory until this closes
for _ in $(seq 600); do grep -q holding "$dir/hog" && break; nap 0.1; done
grep -q holding "$dir/hog" || fail "vram-hog did not take the memory: $(cat "$dir/hog")"
cat "$dir/hog"

info "writing $size_mib MiB in $piece_mib MiB pieces until one cannot be placed"
written=0
status=0
while [ "$written" -lt "$size_mib" ]; do
  start=$(date +%s)
  timeout 60 "$VRAMFS_IO" fill "$file" $((written << 20)) $((piece_mib << 20)) 7 direct \
    2>"$dir/err" || { status=$?; break; }
  written=$((written + piece_mib))
done
took=$(( $(date +%s) - start ))
[ "$status" != 124 ] || fail "a write to the full GPU hung"
[ "$status" != 0 ] || fail "all $size_mib MiB were placed with only $leave_mib MiB free"
echo "stopped after $written MiB: $(cat "$dir/err") (in $took s)"
grep -q "No space left on device" "$dir/err" || fail "the failed write said: $(cat "$dir/err")"
[ "$took" -le 10 ] || fail "the failing write took $took s"
errors=$(stat_value "$mnt" errors)
[ "$errors" -gt 0 ] || fail "the failed write was not counted"
grep -q "no VRAM left on GPU" "$dir/log" || fail "nothing in the log: $(cat "$dir/log")"
grep "no VRAM left" "$dir/log" | head -n 2

info "what was written reads back, while the GPU is still full"
"$VRAMFS_IO" verify "$file" 0 $((written << 20)) 7 direct

info "the other program exits; the rest of the file can now be written"
release_hog
"$VRAMFS_IO" fill "$file" $((written << 20)) $(((size_mib - written) << 20)) 7 direct
"$VRAMFS_IO" verify "$file" 0 $((size_mib << 20)) 7 direct
[ "$(stat_value "$mnt" errors)" = "$errors" ] || fail "errors were counted after VRAM was free"
[ "$(stat_value "$mnt" vram_bytes)" -ge $((size_mib << 20)) ] ||
  fail "vram_bytes is $(stat_value "$mnt" vram_bytes) after writing all $size_mib MiB"
umount "$mnt"
echo PASS
