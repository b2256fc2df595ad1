#!/bin/bash
# vramswap on the machine's real GPUs (backend cuda): start --gpu all gives
# one swap per GPU at equal priority, a memory-limited process swaps through
# them with every page verified, a GPU that does not exist is refused, and
# stop leaves nothing behind.  Skipped where there is no GPU.
. "$TESTS_DIR/functions.sh"
requires_root
requires_fuse
requires_loop
requires_swap
requires_gpu
"$VRAMFS" --version | grep -q cuda || skip "this vramfs was built without CUDA"
: "${VRAMSWAP:=$TESTS_DIR/../scripts/vramswap}"

base=$(make_tempdir)
dir=$base/run
gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
# Whatever happens, stop what this test started.
cleanup_first() { "$VRAMSWAP" stop --dir "$dir" >/dev/null 2>&1; }

info "a GPU that does not exist is refused"
status=0
err=$("$VRAMSWAP" start --gpu "$gpus" --size 256M --dir "$dir" 2>&1) || status=$?
[ "$status" -ne 0 ] || fail "start --gpu $gpus succeeded on a machine with $gpus GPU(s)"
echo "$err"
grep -qi "gpu $gpus" <<<"$err" || fail "the refusal does not name GPU $gpus: $err"
! grep -q "$dir" /proc/mounts || fail "the refused start left a mount"

info "start --gpu all on $gpus GPU(s)"
"$VRAMSWAP" start --gpu all --size 1G --priority 50 --dir "$dir"
"$VRAMSWAP" status --dir "$dir" | tee "$base/status"
for ((g = 0; g < gpus; g++)); do
  mnt=$dir/gpu$g
  [ "$(stat_value "$mnt" backend)" = cuda ] || fail "gpu$g is not served from VRAM"
  [ "$(stat_value "$mnt" vram_bytes)" -ge $((1 << 30)) ] || fail "gpu$g holds too little VRAM"
done
[ "$(awk 'NR > 1 && $1 ~ /^\/dev\/loop/ { print $5 }' /proc/swaps | sort -u)" = 50 ] ||
  fail "the VRAM swaps do not all have priority 50: $(cat /proc/swaps)"

info "a process limited to 64 MiB works on 256 MiB through them"
cg=$(make_memory_cgroup 64)
run_in_cgroup "$cg" "$VRAMFS_IO" swapper 256 3 17 || fail "pages came back wrong"
for ((g = 0; g < gpus; g++)); do
  echo "gpu$g: $(grep -E '^(write_bytes|read_bytes|errors) ' "$dir/gpu$g/.stats" | tr '\n' ' ')"
  [ "$(stat_value "$dir/gpu$g" errors)" = 0 ] || fail "gpu$g counted errors"
done

info "stop"
"$VRAMSWAP" stop --dir "$dir"
! grep -q "$dir" /proc/mounts || fail "mounts left after stop"
! grep -q "^/dev/loop" /proc/swaps || fail "swap left after stop"
