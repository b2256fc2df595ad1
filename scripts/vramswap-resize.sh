# shellcheck shell=bash
# vramswap-resize.sh: "vramswap resize", and the resize the elastic
# watcher (vramswap-elastic.sh) asks for.  Sourced by vramswap after
# vramswap-lib.sh, vramswap-state.sh and vramswap-start-stop.sh (stop's
# care for the pages: the cgroup check, swapoff with progress and retries).
#
# The unit of change is a stripe: a slice of the data file that start
# attached to its own loop device.  A shrink takes the last stripes off
# (swapoff, losetup -d), then truncates the data file, and vramfs gives
# the memory past the new end back; a grow truncates the file longer
# (vramfs takes the memory, or refuses with ENOSPC), then attaches, mkswaps
# and swapons the new stripes at the priority of the others.  Stripe s
# always lies at s times the stripe's length, so a grow puts back the very
# slices a shrink took off.
#
# A resize says what it does in DIR/.gpuN.resizing while it runs (status
# shows the instance as resizing); a resize that was killed leaves it, and
# the next resize of that GPU (the elastic watcher's too) finishes it first.
# The last resize, with its reason, is in DIR/.gpuN.resize.

# STRIPE_EACH, STRIPE_MAX: the length of a stripe, and how many the
# configured size holds; STRIPE_DEV[s]: the loop device of stripe s, for
# each one attached.  Set by stripe_layout.
STRIPE_EACH=0 STRIPE_MAX=0
declare -gA STRIPE_DEV=()

# loop_sysfs DEV FIELD: a number from /sys/block/loopN/loop/FIELD (0 when
# unreadable).
loop_sysfs() {
  local v=0
  read -r v 2>/dev/null <"/sys/block/${1#/dev/}/loop/$2" || true
  [[ $v =~ ^[0-9]+$ ]] || v=0
  echo "$v"
}

# stripe_layout N: the stripes of instance N (after scan and read_stats).
# start records the stripe's length and count in DIR/.gpuN.loop; for a swap
# started without them, the loop devices' slices in sysfs say it.
stripe_layout() {
  local n=$1 record=$DIR/.gpu$1.loop dev each max
  STRIPE_DEV=()
  each=$(sed -n 's/^# stripe_bytes //p' "$record" 2>/dev/null | tail -n 1)
  max=$(sed -n 's/^# stripes //p' "$record" 2>/dev/null | tail -n 1)
  if ! [[ $each =~ ^[1-9][0-9]*$ ]]; then
    each=0
    for dev in ${LOOPS[$n]:-}; do
      each=$(loop_sysfs "$dev" sizelimit)
      # One stripe over the whole file: no sizelimit.
      [ "$each" != 0 ] || each=$(loop_bytes "$dev")
      break
    done
  fi
  [[ $max =~ ^[1-9][0-9]*$ ]] || max=$(( ${STATS[max_size_bytes]:-0} / (each > 0 ? each : 1) ))
  STRIPE_EACH=$each STRIPE_MAX=$max
  [ "$each" -gt 0 ] || return 0
  for dev in ${LOOPS[$n]:-}; do
    STRIPE_DEV[$(($(loop_sysfs "$dev" offset) / each))]=$dev
  done
}

# stripes_now: how many stripes run now: the highest attached, plus one.
stripes_now() {
  local s k=0
  for s in "${!STRIPE_DEV[@]}"; do [ "$s" -lt "$k" ] || k=$((s + 1)); done
  echo "$k"
}

# --- the record of resizes -------------------------------------------------

# record_resize N FROM TO REASON: the last resize of N, for status, and a
# line in the journal.
record_resize() {
  local n=$1 from=$2 to=$3 reason=$4 line
  printf '%s %s %s %s\n' "$(date +%s)" "$from" "$to" "$reason" >"$DIR/.gpu$n.resize" 2>/dev/null || true
  line="gpu$n: $([ "$to" -lt "$from" ] && echo shrunk || echo grown) from $(mib "$from") MiB to $(mib "$to") MiB: $reason"
  echo "$line"
  journal "$line"
}

# journal TEXT: a line in the system log (the journal), where logger is.
journal() {
  command -v logger >/dev/null || return 0
  logger -t vramswap -- "$1" 2>/dev/null || true
}

# --- the steps ----------------------------------------------------------------

# RESIZE_SIGNAL: a signal that came during a resize; the resize stops at
# the next stripe and puts back what it changed.
RESIZE_SIGNAL=
resize_signals() {
  local sig
  for sig in HUP INT TERM; do
    # shellcheck disable=SC2064 # the signal's name, now
    trap "RESIZE_SIGNAL=$sig" "$sig"
  done
}

# total_kib KEY...: the sum of these /proc/meminfo fields (KiB).
total_kib() {
  local key value sum=0 want=" $* "
  while read -r key value _; do
    [[ $want != *" ${key%:} "* ]] || sum=$((sum + value))
  done <"$SYSROOT/proc/meminfo"
  echo "$sum"
}

# shrink_refusal N K: why instance N cannot shrink to K stripes now, in one
# sentence; nothing when it can.  The pages in the stripes that go must fit
# in RAM and the free space of the other swap areas; and each memory-
# limited cgroup must have room for its share of them under its limit, or
# in the free swap that stays on, where its own reclaim moves other pages
# of its to make room (--force overrides that one, saying so).
shrink_refusal() {
  local n=$1 k=$2 s dev used=0 free_gone=0 room swap_left cgroup swap headroom out=()
  for s in "${!STRIPE_DEV[@]}"; do
    [ "$s" -ge "$k" ] || continue
    dev=${STRIPE_DEV[$s]}
    [ -n "${SWAP_USED[$dev]:-}" ] || continue
    used=$((used + ${SWAP_USED[$dev]}))
    free_gone=$((free_gone + ${SWAP_SIZE[$dev]} - ${SWAP_USED[$dev]}))
  done
  [ "$used" -gt 0 ] || return 0
  swap_left=$(($(total_kib SwapFree) - free_gone))
  [ "$swap_left" -ge 0 ] || swap_left=0
  room=$(($(total_kib MemAvailable) + swap_left))
  if [ "$used" -gt "$room" ]; then
    echo "the stripes it would take off hold $((used / 1024)) MiB, more than the $((room > 0 ? room / 1024 : 0)) MiB that RAM and the free space of the other swap areas can take"
    return 0
  fi
  while read -r cgroup swap headroom; do
    [ -n "$cgroup" ] || continue
    out+=("cgroup $cgroup holds $(mib "$swap") MiB in swap and has $(mib "$headroom") MiB of headroom")
  done < <(cgroups_at_risk "$used" "$swap_left")
  [ "${#out[@]}" -gt 0 ] || return 0
  if [ "${FLAG[FORCE]:-}" = yes ]; then
    say "gpu$n: $(joined_by '; ' "${out[@]}"); --force: its processes may be OOM-killed"
    return 0
  fi
  echo "$(joined_by '; ' "${out[@]}"): its processes would be OOM-killed; raise its limit or stop them first (or --force)"
}

# truncate_data N BYTES: the data file to BYTES (vramfs takes or gives back
# the memory); fails saying why.
truncate_data() {
  local n=$1 bytes=$2 out
  out=$(bounded truncate -s "$bytes" "$DIR/gpu$n/$DATA_NAME" 2>&1) && return 0
  case $out in
    *"No space left"*) echo "vramfs cannot take the memory for $(mib "$bytes") MiB (no space left on the $([ "${STATS[backend]:-}" = host ] && echo machine || echo GPU))" ;;
    *"File too large"*) echo "vramfs refuses $(mib "$bytes") MiB: more than its max_size" ;;
    *) echo "truncate failed: $(one_line "$out")" ;;
  esac
  return 1
}

# The steps below say why they failed in STEP_ERR (they change STRIPE_DEV,
# so they run in this shell, not in $(...)).
STEP_ERR=

# swapon_stripe N S: mkswap and swapon stripe S of instance N (attached), at
# the priority of the others and with their discard.
swapon_stripe() {
  local n=$1 s=$2 dev=${STRIPE_DEV[$2]:-} out args
  [ -n "$dev" ] || { STEP_ERR="stripe $s is not attached"; return 1; }
  args=(--priority "$RESIZE_PRIO")
  [ "${STATS[lazy]:-0}" != 1 ] || args+=(--discard)
  ! swap_active "$dev" || return 0
  out=$(mkswap -L "vramswap-gpu$n-$s" "$dev" 2>&1) || { STEP_ERR="mkswap $dev: $(one_line "$out")"; return 1; }
  out=$(swapon "${args[@]}" "$dev" 2>&1) || { STEP_ERR="swapon $dev: $(one_line "$out")"; return 1; }
}

# attach_stripe N S: a loop device on stripe S's slice, recorded.
attach_stripe() {
  local n=$1 s=$2 file=$DIR/gpu$1/$DATA_NAME dev id
  [ -z "${STRIPE_DEV[$s]:-}" ] || return 0
  id=$(bounded stat -c '%Hd:%Ld %i' "$file" 2>&1) || { STEP_ERR="stat $file: $(one_line "$id")"; return 1; }
  dev=$(loop_attach "$file" --offset $((s * STRIPE_EACH)) --sizelimit "$STRIPE_EACH" 2>&1) ||
    { STEP_ERR=$(one_line "$dev"); return 1; }
  STRIPE_DEV[$s]=$dev
  echo "$dev $id" >>"$DIR/.gpu$n.loop"
}

# detach_stripe N S: losetup -d of stripe S (swap already off), and its line
# gone from the record.
detach_stripe() {
  local n=$1 s=$2 dev=${STRIPE_DEV[$2]:-} out rest
  [ -n "$dev" ] || return 0
  out=$(loop_detach "$dev" 2>&1) || { STEP_ERR=$(one_line "$out"); return 1; }
  unset "STRIPE_DEV[$s]"
  rest=$(grep -v "^$dev " "$DIR/.gpu$n.loop" 2>/dev/null) || true
  printf '%s\n' "$rest" | sed '/^$/d' >"$DIR/.gpu$n.loop"
}

# shrink_to N K: takes stripes K and up off.  Their swap goes off, the last
# first, with stop's care; a swapoff that fails, or a signal, turns back on
# the ones this call turned off, and nothing has changed.  Then they are
# detached and the file truncated: past that point nothing is undone.
shrink_to() {
  local n=$1 k=$2 s dev off=() why args
  for ((s = STRIPE_MAX - 1; s >= k; s--)); do
    dev=${STRIPE_DEV[$s]:-}
    if [ -z "$dev" ] || ! swap_active "$dev"; then continue; fi
    if [ -n "$RESIZE_SIGNAL" ] || ! swap_off_device "$n" "$dev"; then
      why=${RESIZE_SIGNAL:+interrupted (SIG$RESIZE_SIGNAL)}
      args=(--priority "$RESIZE_PRIO")
      [ "${STATS[lazy]:-0}" != 1 ] || args+=(--discard)
      for dev in ${off[@]+"${off[@]}"}; do
        swapon "${args[@]}" "$dev" 2>/dev/null ||
          say "gpu$n: swapon $dev (putting it back) failed; run 'vramswap resize --gpu $n' again"
      done
      LAST_REFUSAL=${why:-a swapoff failed}
      say "gpu$n: ${why:-the shrink stopped}; the stripes are as they were, nothing changed"
      resize_stopped "$n"
      return 1
    fi
    off+=("$dev")
  done
  # Nothing swaps to them now: the rest is short and is not interrupted.
  trap '' HUP INT TERM
  for ((s = STRIPE_MAX - 1; s >= k; s--)); do
    detach_stripe "$n" "$s" ||
      { LAST_REFUSAL=$STEP_ERR; say "gpu$n: $STEP_ERR; swap is off on it, run 'vramswap resize --gpu $n' again"; return 1; }
  done
  why=$(truncate_data "$n" $((k * STRIPE_EACH))) || { LAST_REFUSAL=$why; say "gpu$n: $why"; return 1; }
}

# grow_to N K: the file truncated to K stripes (vramfs takes the memory),
# then each new stripe attached and swapped on.  A failure or a signal
# takes back what this call added.
grow_to() {
  local n=$1 k=$2 from=$3 s dev why='' size failed=''
  size=$((k * STRIPE_EACH))
  # (Equal to it already when a grow that was cut short is finished; larger
  # when a shrink was cut short after its stripes went.)
  if [ "${STATS[size_bytes]:-0}" != "$size" ]; then
    # The memory first, outside the truncate, which the kernel runs under
    # the file's lock: every swap-out to the stripes that are on would wait
    # for the allocation (vramfs(8), --prepare-grow).  The truncate gives
    # the answer: where this fails, it takes the memory itself.
    bounded "$VRAMFS" --prepare-grow "$size" "$DIR/gpu$n/$DATA_NAME" >/dev/null 2>&1 || true
    why=$(truncate_data "$n" "$size") || {
      LAST_REFUSAL=$why
      say "gpu$n: $why; nothing changed"
      return 1
    }
  fi
  for ((s = 0; s < k; s++)); do
    [ -z "$RESIZE_SIGNAL" ] || { failed=1 why="interrupted (SIG$RESIZE_SIGNAL)"; break; }
    if ! attach_stripe "$n" "$s" || ! swapon_stripe "$n" "$s"; then
      failed=1 why=${STEP_ERR:-a step failed}
      break
    fi
  done
  [ -n "$failed" ] || return 0
  trap '' HUP INT TERM
  for ((s = k - 1; s >= from; s--)); do
    dev=${STRIPE_DEV[$s]:-}
    [ -n "$dev" ] || continue
    ! swap_active "$dev" || swapoff "$dev" 2>/dev/null || true
    detach_stripe "$n" "$s" || true
  done
  truncate_data "$n" $((from * STRIPE_EACH)) >/dev/null || true
  LAST_REFUSAL=$why
  say "gpu$n: $why; nothing changed"
  resize_stopped "$n"
  return 1
}

# resize_stopped N: after a resize put back what it had changed: its record
# goes, and a signal that stopped it ends vramswap now.
resize_stopped() {
  [ -n "$RESIZE_SIGNAL" ] || return 0
  rm -f "$DIR/.gpu$1.resizing"
  exit $((128 + $(kill -l "$RESIZE_SIGNAL")))
}

# resize_instance N BYTES REASON [FROM]: instance N (active, after scan,
# check_instance and stripe_layout) to as many whole stripes as BYTES
# holds.  Says what it did or why not, from FROM bytes (those of a resize
# it finishes; default: the size now); fails when nothing changed.
RESIZE_PRIO=100
resize_instance() {
  local n=$1 bytes=$2 reason=$3 k now from dev why
  LAST_REFUSAL=
  k=$((bytes / STRIPE_EACH))
  [ "$k" -le "$STRIPE_MAX" ] || k=$STRIPE_MAX
  now=$(stripes_now)
  from=${4:-${STATS[size_bytes]:-$((now * STRIPE_EACH))}}
  for dev in $(swap_devs_of "$n"); do RESIZE_PRIO=${SWAP_PRIO[$dev]}; done
  if [ "$k" -lt "$now" ]; then
    why=$(shrink_refusal "$n" "$k")
    if [ -n "$why" ]; then
      say "gpu$n: cannot shrink to $(mib $((k * STRIPE_EACH))) MiB: $why; nothing changed"
      LAST_REFUSAL=$why
      return 1
    fi
  fi
  echo "$$ $(process_start $$) $from $((k * STRIPE_EACH)) $reason" >"$DIR/.gpu$n.resizing"
  resize_signals
  if [ "$k" -lt "$now" ]; then
    shrink_to "$n" "$k" || { rm -f "$DIR/.gpu$n.resizing"; trap - HUP INT TERM; return 1; }
  else
    grow_to "$n" "$k" "$now" || { rm -f "$DIR/.gpu$n.resizing"; trap - HUP INT TERM; return 1; }
  fi
  rm -f "$DIR/.gpu$n.resizing"
  trap - HUP INT TERM
  record_resize "$n" "$from" $((k * STRIPE_EACH)) "$reason"
}
# LAST_REFUSAL: why the last resize_instance changed nothing (the elastic
# watcher shows it).
# shellcheck disable=SC2034
LAST_REFUSAL=

# prepare_instance N: scan, state and stripes of instance N, which must be
# active (or degraded by a resize that was killed); fails saying why.
prepare_instance() {
  local n=$1 left
  scan
  check_instance "$n"
  left=$(interrupted_resize "$n")
  case $STATE in
    active) ;;
    degraded) [ -n "$left" ] || { say "gpu$n: $(advice "$n" degraded); nothing changed"; return 1; } ;;
    none) say "gpu$n: no VRAM swap runs on it under $DIR; nothing changed"; return 1 ;;
    stopping) say "gpu$n: a vramswap stop (pid $STOPPING) is taking it down; nothing changed"; return 1 ;;
    resizing) say "gpu$n: $(advice "$n" resizing); nothing changed"; return 1 ;;
    *) say "gpu$n: it is $STATE, not active ($(advice "$n" "$STATE")); nothing changed"; return 1 ;;
  esac
  stripe_layout "$n"
  if [ "$STRIPE_EACH" = 0 ] || [ "$STRIPE_MAX" = 0 ]; then
    say "gpu$n: cannot tell its stripes from $DIR/.gpu$n.loop or its loop devices; nothing changed"
    return 1
  fi
}

# finish_interrupted N: a resize of N that was killed is done now, to the
# size it was going to.
finish_interrupted() {
  local n=$1 left to from reason
  left=$(interrupted_resize "$n")
  [ -n "$left" ] || return 0
  read -r to from reason <<<"$left"
  say "gpu$n: a resize to $(mib "$to") MiB was interrupted; finishing it"
  resize_instance "$n" "$to" "${reason:-vramswap resize} (finished after an interruption)" "$from" ||
    return 1
  prepare_instance "$n"
}

# target_bytes SIZE: the bytes that resize --size SIZE asks for: a size, or
# N% of the configured size.
target_bytes() {
  local max=$((STRIPE_EACH * STRIPE_MAX))
  if [[ $1 =~ ^([0-9]+)%$ ]]; then echo $((max * 10#${BASH_REMATCH[1]} / 100)); else size_bytes "$1"; fi
}

cmd_resize() {
  local n bytes k max found=() hit=
  [ -n "${FLAG[SIZE]:-}" ] || usage_error "resize needs --size SIZE (bytes, K/M/G/T, or N% of the configured size)"
  [ "$(id -u)" = 0 ] || die "resize needs root (swapoff, losetup, swapon)"
  if [ -n "${FLAG[GPU]:-}" ]; then
    [[ ${FLAG[GPU]} =~ ^[0-9]+$ ]] || usage_error "resize works on one GPU: --gpu N, not ${FLAG[GPU]}"
    n=$((10#${FLAG[GPU]}))
  fi
  lock stop
  # What the kernel logs from now on tells why a swapoff failed.
  # shellcheck disable=SC2034 # swap_off_device reads it
  STOP_SINCE=$(kernel_log_mark)
  find_dirs
  if [ -z "${n:-}" ]; then
    for DIR in "${DIRS[@]}"; do
      scan
      for k in $(all_instances); do found+=("$k:$DIR"); done
    done
    case ${#found[@]} in
      0) die "no VRAM swap is running under ${DIRS[*]}; nothing to resize" ;;
      1) n=${found[0]%%:*} DIR=${found[0]#*:} ;;
      *) usage_error "several VRAM swaps run ($(printf '%s ' "${found[@]%%:*}" | sed 's/ $//; s/ /, /g')): name one with --gpu N" ;;
    esac
  else
    for DIR in "${DIRS[@]}"; do
      scan
      [[ " $(all_instances | xargs) " != *" $n "* ]] || { hit=1; break; }
    done
    [ -n "$hit" ] || die "gpu$n: no VRAM swap runs on it under ${DIRS[*]}; nothing changed"
  fi
  prepare_instance "$n" || exit "$EX_FAIL"
  finish_interrupted "$n" || exit "$EX_FAIL"
  bytes=$(target_bytes "${FLAG[SIZE]}")
  max=$((STRIPE_EACH * STRIPE_MAX))
  [ -n "$bytes" ] || usage_error "bad --size ${FLAG[SIZE]}"
  if [ "$bytes" -gt "$max" ]; then
    die "gpu$n: --size ${FLAG[SIZE]} is more than its configured size, $(mib "$max") MiB (the most it may grow to; 'vramswap stop' and 'start --size' to change that); nothing changed"
  fi
  k=$((bytes / STRIPE_EACH))
  if [ "$k" = 0 ]; then
    die "gpu$n: --size ${FLAG[SIZE]} is less than one stripe, $(mib "$STRIPE_EACH") MiB, the smallest it can be ('vramswap stop' takes it off); nothing changed"
  fi
  if [ $((k * STRIPE_EACH)) != "$bytes" ]; then
    say "gpu$n: it changes in whole stripes of $(mib "$STRIPE_EACH") MiB: $(mib $((k * STRIPE_EACH))) MiB"
  fi
  if [ "$k" = "$(stripes_now)" ] && [ "${STATS[size_bytes]:-}" = $((k * STRIPE_EACH)) ]; then
    echo "gpu$n: already $(mib $((k * STRIPE_EACH))) MiB; nothing changed"
    return 0
  fi
  resize_instance "$n" $((k * STRIPE_EACH)) "vramswap resize --size ${FLAG[SIZE]}" || exit "$EX_FAIL"
}
