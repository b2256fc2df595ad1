#!/bin/bash
# Elastic mode on a real GPU: vramswap start --elastic 4G with half of GPU
# 0 as swap in 8 stripes; 8 processes in a memory cgroup swap through it,
# every page verified.  Then another program (vram-hog) takes half of the
# card in steps of 1 GiB, each retried for up to 30 s as a caching
# allocator would: it gets them all, because the swap shrinks.  status
# shows the smaller size; after the hog exits, the swap grows back to its
# configured size.  Prints the time each GiB took and the time to grow
# back; no OOM kill anywhere, no I/O error.  Needs a GPU; skipped elsewhere.
: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine
requires_gpu
"$VRAMFS" --version | grep -q cuda || skip_optional "this vramfs was built without CUDA"
[ -x "${VRAM_HOG:-}" ] || skip_optional "no vram-hog program (it is built only with CUDA)"

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

mnt=$DIR/gpu0
procs=8
# How long free VRAM must stay above the headroom before a stripe comes
# back: shorter than the default 30 s, so that growing back takes a minute.
export VRAMSWAP_ELASTIC_GROW_AFTER=${VRAMSWAP_ELASTIC_GROW_AFTER:-10}
total_mib=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits -i 0 | tr -d ' ')
[[ $total_mib =~ ^[0-9]+$ ]] || fail "nvidia-smi gives no memory total: $total_mib"
want_mib=$((total_mib / 2))
oom_before=$(grep -w '^oom_kill' /proc/vmstat | cut -d ' ' -f 2)

hog='' hold=$BASE/hold
cleanup_first() { release_hog; }

vs start --gpu 0 --size 50% --stripes 8 --elastic 4G --dir "$DIR"
show "start --elastic 4G"
expect_rc 0 "start --gpu 0 --size 50% --stripes 8 --elastic 4G"
max=$(stat_value "$mnt" max_size_bytes)
info "swap of $((max >> 20)) MiB on a GPU of $total_mib MiB"

info "$procs processes in a 2 GiB cgroup work on 512 MiB each for 240 s"
cg=$(make_memory_cgroup 2048)
pids=()
for ((p = 0; p < procs; p++)); do
  spawn_in_cgroup "$cg" "$BASE/soak.$p" "$VRAMFS_IO" soak 512 240 $((40 + p))
  pids+=("$SPAWNED")
done
swapped() { [ "$(swap_used_under "$mnt")" -gt $((1 << 20)) ]; }
wait_for 120 swapped || fail "the processes did not swap 1 GiB ($(swap_used_under "$mnt") KiB)"
info "$(($(swap_used_under "$mnt") >> 10)) MiB in the swap"

info "vram-hog takes $want_mib MiB in steps of 1 GiB, each retried for up to 30 s"
mkfifo "$hold"
"$VRAM_HOG" 0 --steps 1024 "$want_mib" 30 <"$hold" >"$BASE/hog" 2>&1 &
hog=$!
exec 7>"$hold"
SECONDS=0
holding() { grep -q '^holding' "$BASE/hog"; }
until holding; do
  alive "$hog" || { cat "$BASE/hog" "$DIR/.gpu0.elastic.log"; fail "vram-hog did not get its memory"; }
  [ "$SECONDS" -lt 900 ] || { cat "$BASE/hog"; fail "vram-hog still waits after 900 s"; }
  nap 0.5
done
took=$SECONDS
cat "$BASE/hog"
awk '/^step/ { t = $(NF - 1); sum += t; if (t > worst) worst = t; n++ }
  END { printf "yielding: %d steps of 1 GiB, %.2f s each on average, the slowest %.2f s\n", n, sum / n, worst }' "$BASE/hog"
info "the hog holds $want_mib MiB after $took s"

vs status --dir "$DIR"
echo "$OUT"
size=$(stat_value "$mnt" size_bytes)
[ "$size" -lt "$max" ] || fail "the swap did not shrink: $size of $max bytes"
awk '$1 == "0" { exit !($6 != $7) }' <<<"$OUT" || fail "status does not show a SIZE below MAX"
grep -q "^gpu0: last resized .*: elastic: free VRAM" <<<"$OUT" || fail "status does not give the shrink's reason"
info "the swap is $((size >> 20)) of $((max >> 20)) MiB"

info "the hog exits: the swap grows back"
release_hog
SECONDS=0
grown() { [ "$(stat_value "$mnt" size_bytes)" = "$max" ] && [ "$(loops_under "$mnt" | wc -l)" = 8 ]; }
wait_for 600 grown || fail "the swap did not grow back in 600 s: $(stat_value "$mnt" size_bytes) of $max; $(tail -5 "$DIR/.gpu0.elastic.log")"
info "grown back to $((max >> 20)) MiB in $SECONDS s (a stripe each ${VRAMSWAP_ELASTIC_GROW_AFTER} s and more)"

all_verified "$BASE/soak" "${pids[@]}"
[ "$(stat_value "$mnt" errors)" = 0 ] || fail "vramfs counted $(stat_value "$mnt" errors) errors"
oom_after=$(grep -w '^oom_kill' /proc/vmstat | cut -d ' ' -f 2)
[ "$oom_after" = "$oom_before" ] || fail "the OOM killer acted $((oom_after - oom_before)) times"
cat "$DIR/.gpu0.elastic.log"

vs stop --dir "$DIR"
expect_rc 0 "stop"
nothing_left "after stop"
echo PASS
