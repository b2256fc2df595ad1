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
# other swap, and recorded for wake.  When they do not fit, or a stop
# refuses, nothing is taken off and the sleep is refused (exit 1), with the
# reason in the journal.
cmd_sleep() {
  local kind=$SLEEP_KIND d n r used=0 free=0 avail why entries=()
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
      active | unprotected | active-no-dio) ;;
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
    say "refusing to $kind: VRAM swap could not be taken off (see above); starting again what was"
    cmd_wake || true
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

stat_of() { awk -v k="$2" '$1 == k { print $2 }' <<<"${R_STATS[$1]}"; }

# sleep_stop R...: stops those instances, as stop does.
sleep_stop() {
  local r rc=0
  WANTED=()
  for r in "$@"; do
    WANTED[${R_MNT[$r]%/gpu*}]="${WANTED[${R_MNT[$r]%/gpu*}]:-}${WANTED[${R_MNT[$r]%/gpu*}]:+ }${R_GPU[$r]}"
  done
  ( check_cgroups ) || return 1
  for DIR in "${!WANTED[@]}"; do
    scan
    for n in ${WANTED[$DIR]}; do stop_one "$n" || rc=1; done
  done
  return "$rc"
}

# After resume: starts again, as they were, the swaps that sleep took off.
cmd_wake() {
  local d n opts rc=0 out
  [ "$(id -u)" = 0 ] || die "wake needs root (mount, losetup, swapon)"
  if [ ! -s "$SLEEP_STATE" ]; then
    echo "nothing to start again"
    rm -f "$SLEEP_STATE"
    return 0
  fi
  while IFS=$'\t' read -r d n opts; do
    [ -n "$d" ] || continue
    # A start of its own: the configuration file must not change what it was.
    # shellcheck disable=SC2086 # the recorded options are words
    if ! out=$(VRAMSWAP_CONF=/dev/null "$0" start --gpu "$n" --dir "$d" $opts 9>&- 2>&1); then
      rc=$EX_FAIL
    fi
    echo "$out"
  done <"$SLEEP_STATE"
  rm -f "$SLEEP_STATE"
  return "$rc"
}
