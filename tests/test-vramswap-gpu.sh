#!/bin/bash
# vramswap on the machine's real GPUs (backend cuda): start --gpu all gives
# one swap per GPU at equal priority, a memory-limited process swaps through
# them with every page verified and its pages written to VRAM, a GPU that
# does not exist is refused, and stop leaves nothing behind.  Skipped where
# there is no GPU.
: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine
requires_gpu
"$VRAMFS" --version | grep -q cuda || skip_optional "this vramfs was built without CUDA"
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
declare -A writes_before=()
for ((g = 0; g < gpus; g++)); do writes_before[$g]=$(stat_value "$dir/gpu$g" write_bytes); done
cg=$(make_memory_cgroup 64)
run_in_cgroup "$cg" "$VRAMFS_IO" swapper 256 3 17 || fail "pages came back wrong"
written=0
for ((g = 0; g < gpus; g++)); do
  echo "gpu$g: $(grep -E '^(vram_bytes|data_bytes|write_bytes|read_bytes|errors) ' "$dir/gpu$g/.stats" | tr '\n' ' ')"
  [ "$(stat_value "$dir/gpu$g" errors)" = 0 ] || fail "gpu$g counted errors"
  [ "$(stat_value "$dir/gpu$g" backend)" = cuda ] || fail "gpu$g is not served from VRAM"
  w=$(( $(stat_value "$dir/gpu$g" write_bytes) - writes_before[$g] ))
  # Equal priority: the kernel hands swap-outs to every GPU in turn.
  [ "$w" -gt 0 ] || fail "nothing was swapped out to gpu$g"
  written=$((written + w))
done
# What the process could not keep under its limit went out through vramfs
# to VRAM (the backend is cuda; vram_bytes holds the whole size).
[ "$written" -ge $(((256 - 64) << 20)) ] ||
  fail "only $((written >> 20)) MiB were swapped out to the GPUs: the process did not swap through VRAM"

info "stop"
"$VRAMSWAP" stop --dir "$dir"
! grep -q "$dir" /proc/mounts || fail "mounts left after stop"
! grep -q "^/dev/loop" /proc/swaps || fail "swap left after stop"
