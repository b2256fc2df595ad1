# shellcheck shell=bash
# vramswap-sleep.sh: "vramswap sleep" and "vramswap wake", run by the units
# vramswap-suspend.service and vramswap-hibernate.service around a suspend
# or a hibernation.  Sourced by vramswap; sleep needs vramswap-state.sh,
# vramswap-status.sh, vramswap-checks.sh (what survives, where hibernation
# resumes from) and vramswap-start-stop.sh (stop's steps).

# What sleep took off, for wake.
readonly SLEEP_STATE=$SYSROOT/run/vramswap.sleep

# meminfo_kib KEY: a figure of /proc/meminfo in KiB (0 when absent).
meminfo_kib() {
  awk -v k="$1:" '$1 == k { v = $2 } END { print v + 0 }' "$SYSROOT/proc/meminfo" 2>/dev/null || echo 0
}

# survives KIND BACKEND: whether an instance's memory outlives KIND
# (suspend or hibernate).  RAM does, in both (a hibernation image holds
# it); GPU memory survives suspend only where the driver preserves it, and
# hibernation never.  VRAMSWAP_TEST_HOST_IS_VRAM=1, for testing only, takes
# the host backend for GPU memory.
survives() {
  local backend=$2
  [ "${VRAMSWAP_TEST_HOST_IS_VRAM:-}" != 1 ] || [ "$backend" != host ] || backend=cuda
  [ "$backend" = host ] && return 0
  [ "$1" = suspend ] && vram_preserved
}

# Before suspend or hibernation (vramswap-suspend.service and
# vramswap-hibernate.service, ordered before the sleep): every VRAM swap
# whose memory would not survive is taken off, its pages back in RAM or
# other swap, and recorded for wake.  When they do not fit, when one that
# holds pages does not answer, or when a stop refuses, the sleep is refused
# (exit 1), with the reason in the journal, and what was taken off is put
# back at once; SLEEP_STATE keeps what could not be, for wake.
cmd_sleep() {
  local kind=$SLEEP_KIND r used=0 free=0 avail why entries=()
  [ "$(id -u)" = 0 ] || die "sleep needs root (swapoff, losetup, umount)"
  lock
  # shellcheck disable=SC2034 # stop's steps read it
  STOP_SINCE=$(kernel_log_mark)
  collect_all
  if [ "$kind" = hibernate ] && why=$(resume_on_vram) && [ -n "$why" ]; then
    die "refusing to hibernate: $why, and GPU memory does not survive hibernation; point resume= at a disk swap"
  fi
  for r in "${!R_GPU[@]}"; do
    case ${R_STATE[$r]} in
      active | unprotected | active-no-dio | degraded | no-mount) ;;
      unresponsive)
        # Its pages cannot be brought back, and the sleep would lose them.
        if ! survives "$kind" "${R_BACKEND[$r]}" && [ "${R_USED[$r]:-0}" != 0 ]; then
          die "refusing to $kind: gpu${R_GPU[$r]}'s vramfs server does not answer, so the $(iec "${R_USED[$r]}") in its swap cannot be brought back into RAM, and its memory does not survive $kind (see vramswap status)"
        fi
        say "gpu${R_GPU[$r]}: unresponsive, with nothing in its swap: left as it is (see vramswap status)"
        continue
        ;;
      *)
        say "gpu${R_GPU[$r]}: ${R_STATE[$r]}, left as it is (see vramswap status)"
        continue
        ;;
    esac
    if survives "$kind" "${R_BACKEND[$r]}"; then
      echo "gpu${R_GPU[$r]}: its memory survives $kind: kept"
      continue
    fi
    entries+=("$r")
    used=$((used + ${R_USED[$r]:-0} / 1024))
    # SwapFree counts the free space of these swaps too, which cannot take
    # their own pages.
    free=$((free + (${R_SIZE[$r]:-0} - ${R_USED[$r]:-0}) / 1024))
  done
  if [ "${#entries[@]}" -eq 0 ]; then
    echo "nothing to take off before $kind"
    return 0
  fi
  free=$(($(meminfo_kib SwapFree) - free))
  [ "$free" -ge 0 ] || free=0
  avail=$(($(meminfo_kib MemAvailable) + free))
  if [ "$used" -gt "$avail" ]; then
    die "refusing to $kind: GPU memory does not survive it here ($([ "$kind" = suspend ] && echo "the NVIDIA driver does not preserve it: see vramswap doctor" || echo "it never survives hibernation")), and the $((used / 1024)) MiB in VRAM swap do not fit in the $((avail / 1024)) MiB of RAM available and free in other swap; close programs to make room, then $kind again"
  fi
  sleep_record "${entries[@]}"
  if ! sleep_stop "${entries[@]}"; then
    say "refusing to $kind: VRAM swap could not be taken off (see above); putting back what was"
    restore_all ||
      say "what could not be put back is kept in $SLEEP_STATE: 'vramswap wake' tries again"
    exit "$EX_FAIL"
  fi
  echo "VRAM swap is off for the $kind; 'vramswap wake' starts it again after resume"
}

# sleep_record R...: SLEEP_STATE gets one line per record, the options that
# start it again as it was: "DIR<TAB>GPU<TAB>OPTION...".
sleep_record() {
  local r opts k
  : >"$SLEEP_STATE" || die "cannot write $SLEEP_STATE"
  for r in "$@"; do
    k=$(wc -w <<<"${R_LOOPS[$r]}")
    opts="--backend $(stat_of "$r" backend) --size $(stat_of "$r" size_bytes) --stripes ${k:-1}"
    opts+=" --priority $(cut -d' ' -f1 <<<"${R_PRIOS[$r]}") --cache $(stat_of "$r" cache_bytes)"
    [ "$(stat_of "$r" lazy)" = 1 ] && opts+=" --discard" || opts+=" --no-discard"
    [ "${R_FAILOVER[$r]}" = 1 ] && opts+=" --failover" || opts+=" --no-failover"
    opts+=" --transport $(stat_of "$r" transport)"
    printf '%s\t%s\t%s\n' "${R_MNT[$r]%/gpu*}" "${R_GPU[$r]}" "$opts" >>"$SLEEP_STATE"
  done
}

# sleep_stop R...: stops those instances, as stop does, one after the
# other; at the first that fails it stops taking any off.
sleep_stop() {
  local r d n
  WANTED=()
  for r in "$@"; do
    WANTED[${R_MNT[$r]%/gpu*}]="${WANTED[${R_MNT[$r]%/gpu*}]:-}${WANTED[${R_MNT[$r]%/gpu*}]:+ }${R_GPU[$r]}"
  done
  ( check_cgroups ) || return 1
  for d in "${!WANTED[@]}"; do
    DIR=$d
    scan
    for n in ${WANTED[$d]}; do stop_one "$n" || return 1; done
  done
}

# restore_all: puts back every swap of SLEEP_STATE, each as far as it is
# off; SLEEP_STATE then keeps the lines that could not be, or goes.  Fails
# when one could not be.
restore_all() {
  local d n opts kept=''
  while IFS=$'\t' read -r d n opts; do
    [ -n "$d" ] || continue
    # A subshell: a step that fails exits (step_failed).
    # shellcheck disable=SC2086 # the recorded options are words
    ( restore "$d" "$n" $opts ) || kept+="$d"$'\t'"$n"$'\t'"$opts"$'\n'
  done <"$SLEEP_STATE"
  if [ -z "$kept" ]; then
    rm -f "$SLEEP_STATE"
    return 0
  fi
  printf '%s' "$kept" >"$SLEEP_STATE"
  return 1
}

# settings_from OPTION...: SET as a start with these options and no
# configuration file would have it: what was recorded, and nothing else.
settings_from() {
  settings_defaults
  # shellcheck disable=SC2034 # parse_options and apply_flags read it
  FLAG=()
  parse_options start "$@"
  apply_flags
}

# restore DIR N OPTION...: puts instance N of DIR back as OPTION... (a
# line of SLEEP_STATE) say it was, from whatever of it is still there: all
# of it (nothing to do), its mount with stripes off but attached (a
# swapoff failed), its mount alone (a stop failed at the unmount), or
# nothing (as start).  Meant for a subshell: a step that fails exits.
restore() {
  local n=$2 dev label
  local -a stripes swapon_args
  settings_from "${@:3}"
  # shellcheck disable=SC2034 # what scan and start's steps work in
  DIR=$1
  scan
  check_instance "$n"
  case $STATE in
    none)
      resolve_failover
      enable_uring
      start_guard
      start_one "$n"
      start_done
      return 0
      ;;
    active | unprotected | active-no-dio | degraded | no-swap) ;;
    *)
      say "gpu$n: $STATE: cannot be put back as it was (see vramswap status)"
      return 1
      ;;
  esac
  read -r -a stripes <<<"${LOOPS[$n]:-}"
  if [ "${#stripes[@]}" = "$((10#${SET[STRIPES]}))" ]; then
    # Every stripe is attached: those that were taken off go on again.
    swapon_args=(--priority "$((10#${SET[PRIORITY]}))")
    [ "${SET[DISCARD]}" = no ] || swapon_args+=(--discard)
    for dev in "${stripes[@]}"; do
      swap_active "$dev" && continue
      swapon "${swapon_args[@]}" "$dev" || { say "gpu$n: swapon $dev failed"; return 1; }
    done
    [ "$STATE" = active ] || echo "gpu$n: swap on ${stripes[*]} again"
    return 0
  fi
  if [ -n "$(swap_devs_of "$n")" ]; then
    say "gpu$n: some of its stripes are swap and others detached: cannot be put back as it was"
    return 1
  fi
  # Its stripes were detached (its unmount failed): attached again, on the
  # mount that stayed.
  for dev in "${stripes[@]}"; do
    loop_detach "$dev" || { say "gpu$n: losetup -d $dev failed"; return 1; }
  done
  start_guard
  attach_stripes "$n"
  enable_stripes "$n"
  start_done
  label="${#STRIPE_DEVS[@]} stripe"
  [ "${#STRIPE_DEVS[@]}" = 1 ] || label+=s
  echo "gpu$n: swap on ${STRIPE_DEVS[*]} again ($label, priority $((10#${SET[PRIORITY]})))"
}

# After resume: starts again, as they were, the swaps that sleep took off.
cmd_wake() {
  [ "$(id -u)" = 0 ] || die "wake needs root (mount, losetup, swapon)"
  if [ ! -s "$SLEEP_STATE" ]; then
    echo "nothing to start again"
    rm -f "$SLEEP_STATE"
    return 0
  fi
  lock
  restore_all || die "not everything could be started again; $SLEEP_STATE keeps it for another 'vramswap wake'"
}
