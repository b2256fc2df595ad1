#!/bin/bash
# A start that fails before anything is set up says why in one line and
# leaves nothing: a GPU that does not exist, nvidia-smi failing, a mount
# that fails (naming the step and what vramfs said; vramfs gets the GPU's
# UUID), a DIR that cannot be created.  vramfs and nvidia-smi are fakes.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# It swaps nothing and attaches no loop device (vramfs, and what it would
# do, are fakes): it runs beside other tests.
VRAMFS_TEST_PARALLEL=1
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

# --- GPUs that do not exist, a mount that fails: exit 1, nothing left ---------------

info "a GPU that does not exist"
fake nvidia-smi 'printf "0, GPU-00000000-aaaa\n1, GPU-11111111-bbbb\n"'
PATH=$FAKE_PATH vs start --backend cuda --gpu 5 --dir "$DIR"
expect_rc 1 "start --gpu 5"
grep -q "^vramswap: GPU 5 does not exist (GPUs here: 0 1)$" <<<"$ERR" || { show start; fail "start --gpu 5 says: $ERR"; }
assert_nothing "start --gpu 5"
PATH=$FAKE_PATH vs start --backend cuda --gpu 0,7 --dir "$DIR"
expect_rc 1 "start --gpu 0,7"
grep -q "GPU 7 does not exist" <<<"$ERR" || fail "start --gpu 0,7 says: $ERR"
assert_nothing "start --gpu 0,7 (gpu0 must not be started either)"
fake nvidia-smi 'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." ; exit 9'
PATH=$FAKE_PATH vs start --backend cuda --dir "$DIR"
expect_rc 1 "start, nvidia-smi failing"
grep -q "nvidia-smi cannot list the GPUs: NVIDIA-SMI has failed" <<<"$ERR" || fail "start with a failing nvidia-smi says: $ERR"
assert_nothing "start, nvidia-smi failing"

info "vramfs cannot mount: step named, directory removed"
fake nvidia-smi 'printf "0, GPU-00000000-aaaa\n1, GPU-11111111-bbbb\n"'
cat >"$BASE/fake-vramfs" <<'EOF'
#!/bin/bash
echo "vramfs: cannot reserve 64M of VRAM on GPU 1: out of memory" >&2
exit 1
EOF
chmod +x "$BASE/fake-vramfs"
PATH=$FAKE_PATH VRAMFS=$BASE/fake-vramfs vs start --backend cuda --size 64M --dir "$DIR" --gpu 1
expect_rc 1 "start, vramfs failing"
# vramfs gets the UUID: CUDA may number the GPUs otherwise than nvidia-smi.
grep -q "^vramswap: gpu1: mount (.*device=GPU-11111111-bbbb.*) failed" <<<"$ERR" ||
  { show start; fail "vramfs did not get the GPU's UUID"; }
grep -q "^vramswap: gpu1: mount (.*) failed: vramfs: cannot reserve 64M of VRAM on GPU 1: out of memory$" <<<"$ERR" ||
  { show start; fail "a failing mount is not reported as such"; }
assert_nothing "start, vramfs failing"

info "DIR cannot be created"
vs start --backend host --size 64M --dir "/proc/vramswap-test-$$"
expect_rc 1 "start --dir /proc/..."
grep -q "gpu0: creating /proc/vramswap-test-$$ failed" <<<"$ERR" || fail "an impossible DIR says: $ERR"
touch "$BASE/a-file"
vs start --backend host --size 64M --dir "$BASE/a-file/run"
expect_rc 1 "start --dir under a file"
grep -q "gpu0: creating $BASE/a-file/run failed: .*Not a directory" <<<"$ERR" || fail "DIR under a file says: $ERR"
assert_nothing "unwritable DIR"
echo "PASS"
