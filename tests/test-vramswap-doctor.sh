#!/bin/bash
# vramswap doctor, check by check: on a fake machine where all is well
# (a fake root of /proc, /sys and /dev through VRAMSWAP_SYSROOT, and fake
# nvidia-smi and systemctl) every check passes; each condition faked makes
# its check warn or fail with what to do; without root it says what it
# cannot check and exits 0.

: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# Doctor looks at every VRAM swap on the machine, which other tests make
# and break: here it reads an empty mount table (MOUNTINFO) and so finds
# none of theirs.  It swaps nothing and attaches no loop device: it runs
# beside other tests.
VRAMFS_TEST_PARALLEL=1
export MOUNTINFO=/dev/null
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"
requires_swap_machine

# shellcheck source=tests/vramswap_functions.sh
. "$TESTS_DIR/vramswap_functions.sh"

info "doctor: a fake machine where all is well"
R=$BASE/root
mkdir -p "$R/dev" "$R/proc/sys/kernel" "$R/proc/self" "$R/proc/driver/nvidia" \
  "$R/sys/module/zswap/parameters" "$R/sys/module/fuse/parameters" "$R/sys/power" "$BASE/bin"
ln -s /dev/fuse "$R/dev/fuse"
ln -s /dev/loop-control "$R/dev/loop-control"
well() {
  printf 'nodev\tsysfs\nnodev\tfuse\n' >"$R/proc/filesystems"
  echo 6.18.3 >"$R/proc/sys/kernel/osrelease"
  # CAP_IPC_LOCK (14) and CAP_SYS_RESOURCE (24), and more.
  printf 'Name:\tbash\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\n' >"$R/proc/self/status"
  printf 'Filename\tType\tSize\tUsed\tPriority\n/dev/sda2  partition\t1000\t0\t-2\n' >"$R/proc/swaps"
  echo N >"$R/sys/module/zswap/parameters/enabled"
  echo Y >"$R/sys/module/fuse/parameters/enable_uring"
  echo 'BOOT_IMAGE=/vmlinuz root=/dev/sda1 resume=/dev/sda2' >"$R/proc/cmdline"
  echo 8:2 >"$R/sys/power/resume"
  printf 'ResmanDebugLevel: 4294967295\nPreserveVideoMemoryAllocations: 1\n' >"$R/proc/driver/nvidia/params"
  cat >"$BASE/bin/nvidia-smi" <<'SMI'
#!/bin/bash
printf '0, NVIDIA H100 80GB HBM3, 80000, 81559\n1, NVIDIA H100 80GB HBM3, 79000, 81559\n'
SMI
  printf '#!/bin/bash\necho enabled\n' >"$BASE/bin/systemctl"
  chmod +x "$BASE/bin/"*
  printf 'BACKEND=cuda\nPRIORITY=100\nDIR=%s\n' "$DIR" >"$BASE/doctor.conf"
}
# doctor_says LEVEL CHECK PATTERN [RC]: doctor on the fake machine.
doctor_says() {
  local rc=${4:-}
  [ -n "$rc" ] || { [ "$1" = fail ] && rc=1 || rc=0; }
  PATH=$BASE/bin:$PATH VRAMSWAP_SYSROOT=$R VRAMSWAP_CONF=$BASE/doctor.conf vs doctor
  expect_rc "$rc" "doctor, $2 $1"
  grep -Eq "^$1 +$2 +.*$3" <<<"$OUT" || { show doctor; fail "doctor does not say: $1 $2 ... $3"; }
  echo "  $(grep -E "^$1 +$2 " <<<"$OUT" | head -n 1)"
}
well
PATH=$BASE/bin:$PATH VRAMSWAP_SYSROOT=$R VRAMSWAP_CONF=$BASE/doctor.conf vs doctor
echo "$OUT"
expect_rc 0 "doctor on a machine where all is well"
! grep -Eq '^(warn|fail) ' <<<"$OUT" || fail "doctor warns or fails on a machine where all is well"
for check in root fuse loop fusermount3 kernel enable_uring gpu caps memlock swap priority zswap resume suspend sleep; do
  grep -Eq "^ok +$check " <<<"$OUT" || fail "doctor has no line for $check"
done
[ "$(grep -Ec '^ok +gpu ' <<<"$OUT")" = 2 ] || fail "doctor does not list both GPUs"
grep -q "gpu1 NVIDIA H100 80GB HBM3: 79000 of 81559 MiB free" <<<"$OUT" || fail "doctor does not give the free and total VRAM"

info "doctor: each condition faked"
rm "$R/dev/fuse"
doctor_says fail fuse "no /dev/fuse: load the fuse module"
ln -s /dev/fuse "$R/dev/fuse"
printf 'nodev\tsysfs\n' >"$R/proc/filesystems"
doctor_says fail fuse "the fuse module is not loaded: modprobe fuse"
well
rm "$R/dev/loop-control"
doctor_says fail loop "no /dev/loop-control: load the loop module"
ln -s /dev/loop-control "$R/dev/loop-control"
# shellcheck disable=SC2016 # $1 and $@ are the fake's own
printf '#!/bin/bash\n[ "$1" = --help ] && { echo "usage: losetup [options]"; exit 0; }\nexec %s "$@"\n' \
  "$(command -v losetup)" >"$BASE/bin/losetup"
chmod +x "$BASE/bin/losetup"
doctor_says fail loop "this losetup has no --direct-io"
rm "$BASE/bin/losetup"
# A PATH of every command but fusermount3.
mkdir -p "$BASE/nofm"
for d in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
  for f in "$d"/*; do
    [ "${f##*/}" != fusermount3 ] && [ ! -e "$BASE/nofm/${f##*/}" ] && ln -s "$f" "$BASE/nofm/${f##*/}"
  done
done 2>/dev/null
cp "$BASE/bin/"* "$BASE/nofm/" 2>/dev/null || true
PATH=$BASE/nofm VRAMSWAP_SYSROOT=$R VRAMSWAP_CONF=$BASE/doctor.conf vs doctor
expect_rc 0 "doctor without fusermount3"
grep -q "^warn  fusermount3 .*not found: install fuse3" <<<"$OUT" || { show doctor; fail "doctor does not warn about fusermount3"; }
echo 6.1.0-18-amd64 >"$R/proc/sys/kernel/osrelease"
doctor_says warn kernel "Linux 6.1.0-18-amd64: no crash survival \(failover needs 6.9"
echo 6.12.9 >"$R/proc/sys/kernel/osrelease"
doctor_says ok kernel "Linux 6.12.9: crash survival .* works; FUSE over io_uring needs 6.14"
well
rm "$R/sys/module/fuse/parameters/enable_uring"
printf 'BACKEND=cuda\nTRANSPORT=uring\nFAILOVER=no\nDIR=%s\n' "$DIR" >"$BASE/doctor.conf"
doctor_says fail enable_uring "asks for uring, but this kernel has no .*enable_uring"
well
printf '#!/bin/bash\necho "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver."; exit 9\n' >"$BASE/bin/nvidia-smi"
doctor_says fail gpu "nvidia-smi cannot list the GPUs: NVIDIA-SMI has failed"
printf '#!/bin/bash\necho "0, NVIDIA A10, 300, 23028"\n' >"$BASE/bin/nvidia-smi"
doctor_says warn gpu "gpu0 NVIDIA A10: only 300 of 23028 MiB free"
well
printf 'Name:\tbash\nCapEff:\t0000000000004000\nCapBnd:\t0000000000004000\n' >"$R/proc/self/status"
doctor_says warn caps "no CAP_SYS_RESOURCE"
printf 'Name:\tbash\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\n' >"$R/proc/self/status"
RC=0
OUT=$(bash -c 'ulimit -l 1024 && exec "$@"' _ env PATH="$BASE/bin:$PATH" VRAMSWAP_SYSROOT="$R" \
  VRAMSWAP_CONF="$BASE/doctor.conf" "$VRAMSWAP" doctor 2>&1) || RC=$?
expect_rc 0 "doctor, a small memlock limit"
grep -q "^warn  memlock .*1 MiB of locked memory at most" <<<"$OUT" || { echo "$OUT"; fail "doctor does not warn about the memlock limit"; }
well
printf 'Filename\tType\tSize\tUsed\tPriority\n/dev/sda2  partition\t1000\t0\t200\n/dev/zram0 partition\t1000\t0\t100\n/dev/sdb1 partition\t1000\t0\t-3\n' >"$R/proc/swaps"
doctor_says warn priority "/dev/sda2 at 200, /dev/zram0 at 100: swap at a priority equal to or above VRAM swap's 100"
well
echo Y >"$R/sys/module/zswap/parameters/enabled"
doctor_says warn zswap "zswap is on"
well
echo 'root=/dev/sda1 resume=/dev/loop3' >"$R/proc/cmdline"
doctor_says fail resume "resume=/dev/loop3 is a VRAM swap"
echo 'root=/dev/sda1 resume=LABEL=vramswap-gpu0' >"$R/proc/cmdline"
doctor_says fail resume "resume=LABEL=vramswap-gpu0 is a VRAM swap"
echo 'root=/dev/sda1' >"$R/proc/cmdline"
echo 7:5 >"$R/sys/power/resume"
doctor_says fail resume "sys/power/resume is 7:5, a loop device"
well
printf 'PreserveVideoMemoryAllocations: 0\n' >"$R/proc/driver/nvidia/params"
doctor_says warn suspend "GPU memory does not survive suspend here \(PreserveVideoMemoryAllocations=0\)"
printf 'PreserveVideoMemoryAllocations: 1\n' >"$R/proc/driver/nvidia/params"
printf '#!/bin/bash\necho disabled\nexit 1\n' >"$BASE/bin/systemctl"
doctor_says warn suspend "nvidia-suspend.service is not enabled"
doctor_says warn sleep "vramswap-suspend.service disabled"
well
PATH=$BASE/bin:$PATH VRAMSWAP_SYSROOT=$R VRAMSWAP_CONF=$BASE/doctor.conf vs doctor --bogus
expect_rc 2 "doctor --bogus"

info "doctor without root: says what it cannot check, exits 0"
RC=0
# The machine itself (the fake root is the test's, readable by root only).
OUT=$(setpriv --reuid=65534 --regid=65534 --clear-groups env VRAMSWAP_CONF=/nonexistent \
  VRAMSWAP_LIB="$VRAMSWAP_LIB" VRAMFS="$VRAMFS" MOUNTINFO="$MOUNTINFO" "$VRAMSWAP" doctor \
  --backend host 2>&1) || RC=$?
echo "$OUT" | head -n 3
expect_rc 0 "doctor without root"
grep -q "^warn  root .*not root (uid 65534)" <<<"$OUT" || fail "doctor without root does not say so"
echo PASS
