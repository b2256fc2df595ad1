#!/bin/bash
# nvidia-smi that does not answer (a wedged GPU can keep it for minutes)
# hangs neither start nor doctor: each gives up after VRAMSWAP_GPU_TIMEOUT
# seconds and says so, and start creates nothing.  A fake nvidia-smi.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

mkdir -p "$BASE/bin"
printf '#!/bin/bash\nexec sleep 600\n' >"$BASE/bin/nvidia-smi"
chmod +x "$BASE/bin/nvidia-smi"
export PATH=$BASE/bin:$PATH VRAMSWAP_GPU_TIMEOUT=2

info "start --backend cuda"
within 10 start --backend cuda --size 64M --dir "$DIR"
expect_rc 1 "start, nvidia-smi hangs"
grep -q "^vramswap: nvidia-smi did not answer within 2 s" <<<"$ERR" || { show start; fail "start does not say that nvidia-smi hangs"; }
[ ! -e "$DIR" ] || fail "start created $DIR"

info "doctor --backend cuda"
within 10 doctor --backend cuda
grep -q "^fail  gpu  *nvidia-smi did not answer within 2 s" <<<"$OUT" || { show doctor; fail "doctor does not say that nvidia-smi hangs"; }
grep -q "^ok  *resume " <<<"$OUT" || { show doctor; fail "doctor did not go on after nvidia-smi"; }
echo PASS
