#!/bin/bash
# resize and --elastic refuse bad input with one clear line and change
# nothing: a size above the configured one or below a stripe, a GPU with no
# swap, no swap at all, no --size, a bad size, several GPUs, a resize while
# a stop runs (refused at once, not after waiting for the lock); a headroom
# larger than the GPU, and no free-VRAM reading (elastic).  Backend host;
# free VRAM is faked (VRAMSWAP_GPU_MEMORY_FILE).

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps, but pushes no process into swap: it runs beside others that
# do the same (functions.sh).
VRAMFS_TEST_LOCK=shared
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

mnt=$DIR/gpu0

unchanged() { # WHAT
  read_stats "$mnt" || fail "$1: .stats: $STATS_ERR"
  if [ "${STATS[size_bytes]}" != $((128 * MiB)) ] || [ "${STATS[resizes]}" != 0 ]; then
    fail "$1: the size changed (${STATS[size_bytes]}, ${STATS[resizes]} resizes)"
  fi
  [ "$(loops_under "$mnt" | wc -l)" = 4 ] || fail "$1: the stripes changed"
}

# refused RC TEXT ARGS...: vramswap ARGS exits RC with one line on stderr
# that holds TEXT, and nothing changed.
refused() {
  local rc=$1 text=$2
  shift 2
  vs "$@"
  expect_rc "$rc" "$*"
  [ "$(grep -c . <<<"$ERR")" = 1 ] || { show "$@"; fail "$*: not one line on stderr"; }
  [[ $ERR == "vramswap: "*"$text"* ]] || { show "$@"; fail "$*: the message does not say '$text'"; }
  echo "  $* -> $ERR"
}

info "no swap at all"
refused 1 "no VRAM swap is running under $DIR; nothing to resize" resize --size 64M --dir "$DIR"

vs start --backend host --size 128M --stripes 4 --dir "$DIR"
expect_rc 0 "start"

info "bad sizes and GPUs"
refused 1 "gpu0: --size 256M is more than its configured size, 128 MiB" resize --size 256M --dir "$DIR"
unchanged "above the configured size"
refused 1 "gpu0: --size 16M is less than one stripe, 32 MiB" resize --size 16M --dir "$DIR"
unchanged "below a stripe"
refused 1 "gpu3: no VRAM swap runs on it under $DIR; nothing changed" resize --gpu 3 --size 64M --dir "$DIR"
refused 2 "resize needs --size SIZE" resize --dir "$DIR"
refused 2 "bad --size value 'lots'" resize --size lots --dir "$DIR"
refused 2 "resize works on one GPU: --gpu N, not 0,1" resize --gpu 0,1 --size 64M --dir "$DIR"
refused 2 "unknown option --priority for resize" resize --priority 5 --size 64M --dir "$DIR"
unchanged "bad options"
vs resize --size 128M --dir "$DIR"
expect_rc 0 "resize to the size it has"
[ "$OUT" = "gpu0: already 128 MiB; nothing changed" ] || { show resize; fail "resize to its size said: $OUT"; }
unchanged "the same size"

info "a resize while a stop runs: refused at once"
mkdir -p "$BASE/slow"
real_swapoff=$(PATH=/usr/sbin:/sbin:$PATH command -v swapoff)
# Each swapoff waits until the resize has been refused (at most 10 s), so
# that the stop is still running when the resize asks.
printf '#!/bin/bash\nfor _ in {1..100}; do [ -e %q ] && break; sleep 0.1; done\nexec %q "$@"\n' \
  "$BASE/resize-asked" "$real_swapoff" >"$BASE/slow/swapoff"
chmod +x "$BASE/slow/swapoff"
PATH=$BASE/slow:$PATH "$VRAMSWAP" stop --dir "$DIR" >"$BASE/stop.out" 2>&1 &
stopper=$!
stopping() { [ -e "$DIR/.gpu0.stopping" ]; }
wait_for 10 stopping || fail "the stop did not begin"
SECONDS=0
refused 1 "a vramswap stop (pid $stopper) is running; resize refused, nothing changed" resize --size 64M --dir "$DIR"
[ "$SECONDS" -le 3 ] || fail "resize waited $SECONDS s for the stop"
touch "$BASE/resize-asked"
wait "$stopper" || { cat "$BASE/stop.out"; fail "the stop failed"; }
nothing_left "after the stop"

info "elastic: a headroom larger than the GPU, and no reading"
echo "$((6 * 1024 * MiB)) $((8 * 1024 * MiB))" >"$BASE/gpu-memory"
VRAMSWAP_GPU_MEMORY_FILE=$BASE/gpu-memory refused 2 "--elastic 9G: 9216 MiB is not less than the 8192 MiB GPU 0 has; nothing started" \
  start --backend host --size 128M --elastic 9G --dir "$DIR"
nothing_left "a headroom larger than the GPU"
[ ! -e "$DIR" ] || fail "start made $DIR"
# No reading: a reading file that does not exist (a machine without a GPU
# has none from the driver either, but one with a GPU has).
VRAMSWAP_GPU_MEMORY_FILE=$BASE/no-such-reading refused 2 \
  "--elastic needs free GPU memory from the driver (NVML), and GPU 0's cannot be read" \
  start --backend host --size 128M --elastic 1G --dir "$DIR"
nothing_left "no reading"
refused 2 "bad --elastic value 'much'" start --backend host --size 128M --elastic much --dir "$DIR"
echo "ELASTIC=huge" >>"$VRAMSWAP_CONF"
refused 2 "bad ELASTIC value 'huge'" start --backend host --size 128M --dir "$DIR"
nothing_left "at the end"
echo PASS
