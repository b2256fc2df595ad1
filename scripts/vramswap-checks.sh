# shellcheck shell=bash
# vramswap-checks.sh: "vramswap doctor" and its checks, and what "vramswap
# sleep" decides with; sourced by vramswap for those commands, after
# vramswap-lib.sh, vramswap-state.sh and vramswap-status.sh (check_swaps
# reads the records status shows).  Each check prints one line, "ok",
# "warn" or "fail", its name and what it found, with what to do where
# something is off.  The files it reads under /proc, /sys and /dev are
# taken under SYSROOT (empty but for testing), the commands from PATH.

DOCTOR_FAILS=0
# report LEVEL CHECK TEXT
report() {
  printf '%-4s  %-12s %s\n' "$1" "$2" "$3"
  [ "$1" != fail ] || DOCTOR_FAILS=$((DOCTOR_FAILS + 1))
}

# check_config: the configuration file, read by main (CONFIG_ERRORS).
check_config() {
  local line
  if [ -z "$CONFIG_ERRORS" ]; then
    if [ -f "$CONF" ]; then
      report ok config "$CONF"
    else
      report ok config "no $CONF: the built-in defaults"
    fi
    return 0
  fi
  while IFS= read -r line; do
    [ -z "$line" ] || report fail config "$line: start refuses the file until it is fixed"
  done <<<"$CONFIG_ERRORS"
}

check_user() {
  if [ "$(id -u)" = 0 ]; then
    report ok root "running as root"
  else
    report warn root "not root (uid $(id -u)): start, stop and sleep need root, and the swaps' .stats and the free loop devices are read by root only; run 'sudo vramswap doctor' for every check"
  fi
}

check_fuse() {
  if [ ! -c "$SYSROOT/dev/fuse" ]; then
    report fail fuse "no /dev/fuse: load the fuse module (modprobe fuse); in a container, pass /dev/fuse in"
  elif ! grep -qw fuse "$SYSROOT/proc/filesystems" 2>/dev/null; then
    report fail fuse "the fuse module is not loaded: modprobe fuse, and name it in /etc/modules-load.d/ so it loads at boot"
  else
    report ok fuse "/dev/fuse and the fuse module are there"
  fi
}

check_loop() {
  if ! command -v losetup >/dev/null; then
    report fail loop "losetup not found: install util-linux (the mount package on Debian)"
  elif ! losetup --help 2>&1 | grep -q -- --direct-io; then
    report fail loop "this losetup has no --direct-io (util-linux 2.30 or newer has it); without direct I/O a swapped process can be OOM-killed"
  elif [ ! -e "$SYSROOT/dev/loop-control" ]; then
    report fail loop "no /dev/loop-control: load the loop module (modprobe loop)"
  elif [ "$(id -u)" = 0 ] && ! losetup -f >/dev/null 2>&1; then
    report fail loop "no free loop device: detach unused ones (losetup -D) or raise the loop module's max_loop"
  else
    report ok loop "loop devices, and losetup with --direct-io"
  fi
}

check_fusermount() {
  if command -v fusermount3 >/dev/null; then
    report ok fusermount3 "$(command -v fusermount3)"
  else
    report warn fusermount3 "not found: install fuse3; vramswap mounts without it as root, but 'mount -t fuse.vramfs' and /etc/fstab lines need mount.fuse3 from that package"
  fi
}

check_kernel() {
  local release
  release=$(kernel_release)
  if ! kernel_at_least "$FAILOVER_KERNEL"; then
    report warn kernel "Linux $release: no crash survival (failover needs $FAILOVER_KERNEL, for FUSE_NOTIFY_RESEND; vramswap starts without it) and no FUSE over io_uring (6.14): a vramfs server that dies takes the swapped pages with it"
  elif ! kernel_at_least 6.14; then
    report ok kernel "Linux $release: crash survival (failover, $FAILOVER_KERNEL and newer) works; FUSE over io_uring needs 6.14, so transport dev"
  elif ! kernel_at_least 6.19; then
    report ok kernel "Linux $release: failover and FUSE over io_uring both work, but not on one mount: on 6.14 to 6.18 requests in flight on io_uring cannot be handed to a new server, so --transport uring runs without failover"
  else
    report ok kernel "Linux $release: failover ($FAILOVER_KERNEL+) and FUSE over io_uring (6.14+); vramfs still gives failover the classic transport only"
  fi
}

check_uring_param() {
  local value=''
  read -r value 2>/dev/null <"$URING_PARAM" || true
  if [ ! -e "$URING_PARAM" ]; then
    if [ "${SET[TRANSPORT]}" = uring ]; then
      report fail enable_uring "${FROM[TRANSPORT]:-TRANSPORT} asks for uring, but this kernel has no $URING_PARAM (FUSE over io_uring needs Linux 6.14): set TRANSPORT=dev"
    else
      report ok enable_uring "absent: this kernel has no FUSE over io_uring; the classic transport serves"
    fi
  elif [ "$value" = Y ]; then
    report ok enable_uring "Y: FUSE over io_uring is allowed"
  else
    report ok enable_uring "${value:-unreadable}: FUSE over io_uring is off; vramswap start --transport uring turns it on"
  fi
}

check_gpus() {
  local out index name free total mode any='' rc=0
  if [ "${SET[BACKEND]}" = host ]; then
    report ok gpu "backend host: the swap is in RAM, no GPU needed"
    return 0
  fi
  if ! "$VRAMFS" --version 2>/dev/null | grep -qw cuda; then
    report fail gpu "$VRAMFS was built without the cuda backend (vramfs --version); install a build with CUDA, or use --backend host"
  fi
  if ! command -v nvidia-smi >/dev/null; then
    report fail gpu "nvidia-smi not found: install the NVIDIA driver (or use --backend host, which puts the swap in RAM)"
    return 0
  fi
  out=$(bounded_for "$GPU_TIMEOUT" nvidia-smi --query-gpu=index,name,memory.free,memory.total,compute_mode \
    --format=csv,noheader,nounits 2>&1) || rc=$?
  if [ "$rc" = 137 ]; then
    report fail gpu "nvidia-smi did not answer within $GPU_TIMEOUT s: a GPU or its driver hangs (dmesg, nvidia-bug-report.sh)"
    return 0
  elif [ "$rc" != 0 ]; then
    report fail gpu "nvidia-smi cannot list the GPUs: $(one_line "$out")"
    return 0
  fi
  while IFS=, read -r index name free total mode; do
    [[ $index =~ ^[0-9]+$ ]] || continue
    name=${name# } free=${free// /} total=${total// /} mode=${mode// /}
    # One CUDA context at a time: the standby server, a second context
    # waiting beside the serving one, cannot start there.
    if [ "$mode" = Exclusive_Process ] && [ "${SET[FAILOVER]}" = yes ] && [ "${SET[STANDBY]}" = yes ]; then
      report warn standby "gpu$index is in exclusive-process compute mode: it admits one CUDA context, so no standby server can wait beside the serving one, and a takeover pauses the swap about 0.3 s instead of milliseconds ('nvidia-smi -i $index -c DEFAULT' allows it)"
    fi
    any=1
    if [[ $free =~ ^[0-9]+$ ]] && [ "$free" -lt 1024 ]; then
      report warn gpu "gpu$index $name: only $free of $total MiB free: other programs hold its memory"
    else
      report ok gpu "gpu$index $name: $free of $total MiB free"
    fi
  done <<<"$out"
  [ -n "$any" ] || report fail gpu "nvidia-smi lists no GPU: $(one_line "$out")"
}

# has_cap NAME BIT: whether the capability BIT is in the effective set (as
# root) or the bounding set (what root would get).
cap_bit() { # FIELD BIT
  local value
  value=$(awk -v f="$1:" '$1 == f { print $2 }' "$SYSROOT/proc/self/status" 2>/dev/null)
  [[ $value =~ ^[0-9a-fA-F]+$ ]] || return 2
  (((16#$value >> $2) & 1))
}

check_caps() {
  local field=CapEff rc=0
  [ "$(id -u)" = 0 ] || field=CapBnd
  cap_bit "$field" 24 || rc=$?
  case $rc in
    0) report ok caps "CAP_SYS_RESOURCE: vramfs can set IO_FLUSHER and an OOM score of -1000" ;;
    2) report warn caps "cannot read the capabilities from $SYSROOT/proc/self/status" ;;
    *) report warn caps "no CAP_SYS_RESOURCE (a container?): vramfs runs, but without IO_FLUSHER and the OOM score of -1000 its swap can stall under memory pressure and the OOM killer may pick it; run it where root has that capability" ;;
  esac
}

check_memlock() {
  local hard need
  hard=$(ulimit -H -l)
  # The cache and the daemon's own memory; with the host backend the data too.
  need=$(size_bytes "${SET[CACHE]:-64M}")
  need=$((need + (64 << 20)))
  if [ "${SET[BACKEND]}" = host ] && [ -n "$(size_bytes "${SET[SIZE]}")" ]; then
    need=$((need + $(size_bytes "${SET[SIZE]}")))
  fi
  if [ "$hard" = unlimited ]; then
    report ok memlock "no limit on locked memory"
  elif [ "$(id -u)" = 0 ] && cap_bit CapEff 14; then
    report ok memlock "root has CAP_IPC_LOCK: the limit ($((hard / 1024)) MiB) does not bind vramfs"
  elif [ "$(id -u)" = 0 ] && cap_bit CapEff 24; then
    report ok memlock "$((hard / 1024)) MiB, which vramfs raises (root with CAP_SYS_RESOURCE)"
  elif [ $((hard * 1024)) -ge "$need" ]; then
    report ok memlock "$((hard / 1024)) MiB, enough for about $((need >> 20)) MiB"
  else
    report warn memlock "$((hard / 1024)) MiB of locked memory at most, and vramfs needs about $((need >> 20)) MiB: it runs unlocked, and can wait on its own swap; raise the hard limit (ulimit -l unlimited, LimitMEMLOCK=infinity)"
  fi
}

# check_priorities: other swap against VRAM swap's priority: the lowest
# that runs (check_swaps collected them), else PRIORITY.
check_priorities() {
  local dev _ prio vram_prio=$((10#${SET[PRIORITY]})) first=() others=() n=0 r p running=''
  for r in "${!R_GPU[@]}"; do
    for p in ${R_PRIOS[$r]}; do
      if [ -z "$running" ] || [ "$p" -lt "$running" ]; then running=$p; fi
    done
  done
  [ -z "$running" ] || vram_prio=$running
  if [ ! -r "$SYSROOT/proc/swaps" ]; then
    report warn priority "cannot read $SYSROOT/proc/swaps"
    return 0
  fi
  while read -r dev _ _ _ prio; do
    n=$((n + 1))
    [ "$n" -gt 1 ] || continue
    [ -z "${VRAM_LOOPS[$dev]:-}" ] || continue
    if [ "$prio" -ge "$vram_prio" ]; then first+=("$dev at $prio"); else others+=("$dev at $prio"); fi
  done <"$SYSROOT/proc/swaps"
  if [ "${#first[@]}" -gt 0 ]; then
    report warn priority "$(joined_by ', ' "${first[@]}"): swap at a priority equal to or above VRAM swap's $vram_prio, which the kernel fills as early or first; lower it (swapon --priority, pri= in /etc/fstab) or raise PRIORITY"
  elif [ "${#others[@]}" -gt 0 ]; then
    report ok priority "other swap below VRAM swap's $vram_prio: $(joined_by ', ' "${others[@]}")"
  else
    report ok priority "no other swap"
  fi
}

check_zswap() {
  local value=''
  read -r value 2>/dev/null <"$SYSROOT/sys/module/zswap/parameters/enabled" || true
  case $value in
    Y | 1) report warn zswap "zswap is on: pages are compressed into RAM before they reach VRAM swap, which spends the RAM that VRAM swap is there to save; turn it off (zswap.enabled=0 on the kernel command line, or echo N >/sys/module/zswap/parameters/enabled)" ;;
    *) report ok zswap "off" ;;
  esac
}

# vram_swap_ids: the loop devices of VRAM swaps, their MAJ:MIN and the
# UUIDs of their swap signatures, one a line.  blkid reads the device,
# through the daemon: under a deadline, and not at all where the daemon
# does not answer.
vram_swap_ids() {
  local dev
  for dev in "${!VRAM_LOOPS[@]}"; do
    echo "$dev"
    cat "/sys/block/${dev#/dev/}/dev" 2>/dev/null || true
    [ "${VRAM_LOOPS[$dev]}" != unresponsive ] || continue
    bounded blkid -s UUID -o value "$dev" 2>/dev/null || true
  done
}

# resume_on_vram: what says that hibernation would write to, or resume
# from, a VRAM swap; nothing when nothing does.
resume_on_vram() {
  local word resume='' sys='' ids
  local words=()
  read -r -a words 2>/dev/null <"$SYSROOT/proc/cmdline" || true
  for word in ${words[@]+"${words[@]}"}; do
    case $word in resume=*) resume=${word#resume=} ;; esac
  done
  read -r sys 2>/dev/null <"$SYSROOT/sys/power/resume" || true
  ids=$(vram_swap_ids)
  case $resume in
    /dev/loop* | LABEL=vramswap* | PARTLABEL=vramswap*)
      echo "the kernel command line's resume=$resume is a VRAM swap"; return 0 ;;
    UUID=*)
      if grep -qxF "${resume#UUID=}" <<<"$ids"; then echo "resume=$resume is a VRAM swap"; return 0; fi ;;
  esac
  if [[ $sys == 7:* ]]; then
    echo "$SYSROOT/sys/power/resume is $sys, a loop device"
    return 0
  fi
  if [ -n "$sys" ] && [ "$sys" != 0:0 ] && grep -qxF "$sys" <<<"$ids"; then
    echo "$SYSROOT/sys/power/resume is $sys, a VRAM swap"
  fi
}

check_resume() {
  local why
  why=$(resume_on_vram)
  if [ -n "$why" ]; then
    report fail resume "$why: hibernation would write its image to GPU memory, which does not survive it (vramswap sleep refuses to hibernate); point resume= at a disk swap"
  else
    report ok resume "hibernation does not resume from a VRAM swap"
  fi
}

# vram_preserved: whether the NVIDIA driver keeps GPU memory across suspend
# (PreserveVideoMemoryAllocations with nvidia-suspend.service enabled).
vram_preserved() {
  grep -Eq '^PreserveVideoMemoryAllocations: *1' "$SYSROOT/proc/driver/nvidia/params" 2>/dev/null &&
    [ "$(systemctl is-enabled nvidia-suspend.service 2>/dev/null)" = enabled ]
}

check_preserve() {
  local params=$SYSROOT/proc/driver/nvidia/params
  if [ ! -e "$params" ]; then
    if [ "${SET[BACKEND]}" = host ]; then
      report ok suspend "no NVIDIA driver loaded, and RAM (backend host) survives suspend"
    else
      report warn suspend "no NVIDIA driver loaded ($params): whether GPU memory survives suspend is not known; vramswap sleep takes VRAM swap off before it"
    fi
  elif vram_preserved; then
    report ok suspend "the NVIDIA driver preserves GPU memory across suspend (PreserveVideoMemoryAllocations=1, nvidia-suspend.service): VRAM swap stays on"
  elif grep -Eq '^PreserveVideoMemoryAllocations: *1' "$params"; then
    report warn suspend "PreserveVideoMemoryAllocations=1 but nvidia-suspend.service is not enabled, so GPU memory is lost in suspend: systemctl enable nvidia-suspend.service nvidia-resume.service"
  else
    report warn suspend "GPU memory does not survive suspend here (PreserveVideoMemoryAllocations=0): vramswap sleep swaps the pages back into RAM first, and refuses the suspend when they do not fit; to keep VRAM swap on, set 'options nvidia NVreg_PreserveVideoMemoryAllocations=1' in /etc/modprobe.d and enable nvidia-suspend.service"
  fi
}

check_sleep_units() {
  local unit state bad=()
  command -v systemctl >/dev/null || { report ok sleep "no systemctl: no sleep units to check"; return 0; }
  for unit in vramswap-suspend.service vramswap-hibernate.service; do
    state=$(systemctl is-enabled "$unit" 2>/dev/null) || true
    [ "$state" = enabled ] || bad+=("$unit ${state:-not found}")
  done
  if [ "${#bad[@]}" -eq 0 ]; then
    report ok sleep "vramswap-suspend.service and vramswap-hibernate.service are enabled"
  else
    report warn sleep "$(joined_by ', ' "${bad[@]}"): a suspend or hibernation then loses the pages in VRAM swap; systemctl enable vramswap-suspend.service vramswap-hibernate.service"
  fi
}

check_swaps() {
  local r text
  collect_all
  if [ "${#R_GPU[@]}" -eq 0 ]; then
    report ok swap "no VRAM swap is active ('vramswap start', or 'systemctl enable --now vramswap')"
    return 0
  fi
  for r in "${!R_GPU[@]}"; do
    text="gpu${R_GPU[$r]} ${R_STATE[$r]} (${R_MNT[$r]}, $(iec "${R_USED[$r]:--}") of $(iec "${R_SIZE[$r]:--}") used"
    [ "${R_FAILOVER[$r]}" != 1 ] || text+=", failover, ${R_RESTARTS[$r]:-0} restarts"
    text+=")"
    case ${R_STATE[$r]} in
      active) report ok swap "$text" ;;
      unprotected | degraded | stopping | unknown | no-swap) report warn swap "$text: ${R_ADVICE[$r]#gpu"${R_GPU[$r]}": }" ;;
      *) report fail swap "$text: ${R_ADVICE[$r]#gpu"${R_GPU[$r]}": }" ;;
    esac
  done
}

cmd_doctor() {
  check_config
  check_user
  check_fuse
  check_loop
  check_fusermount
  check_kernel
  check_uring_param
  check_gpus
  check_caps
  check_memlock
  check_swaps
  check_priorities
  check_zswap
  check_resume
  check_preserve
  check_sleep_units
  if [ "$DOCTOR_FAILS" -gt 0 ]; then
    echo "$DOCTOR_FAILS check(s) failed"
    return "$EX_FAIL"
  fi
  return 0
}
