# shellcheck shell=bash
# vramswap-elastic.sh: elastic mode.  "vramswap elastic" is the watcher
# that start runs for each GPU when --elastic HEADROOM (ELASTIC= in the
# configuration file) is set: a loop that keeps at least HEADROOM of the
# GPU's memory free for other programs by shrinking the swap (a stripe at a
# time, with resize's care) when free VRAM falls below it, and growing it
# back towards the size it started with once free VRAM has stayed above
# HEADROOM and one stripe for a while.  Sourced by vramswap after
# vramswap-resize.sh.
#
# The watcher is a process of its own (setsid), not vramfs's: it outlives
# the death of a vramfs server, and it needs no CUDA context (one costs
# about 525 MiB of VRAM on an H100).  It reads free VRAM through the
# driver's NVML (vramfs --gpu-memory), under a deadline.  It says what it
# sees and decides in DIR/.gpuN.elastic, which status shows, and what it
# does in the journal.

# Seconds between two readings; how long free VRAM must stay above the
# headroom and a stripe before the swap grows by a stripe (and at least
# that long after any resize): the hysteresis that keeps it from growing
# into memory that a program frees and takes again.
ELASTIC_INTERVAL=${VRAMSWAP_ELASTIC_INTERVAL:-2}
[[ $ELASTIC_INTERVAL =~ ^[0-9]{1,3}(\.[0-9]{1,3})?$ ]] || ELASTIC_INTERVAL=2
ELASTIC_GROW_AFTER=${VRAMSWAP_ELASTIC_GROW_AFTER:-30}
[[ $ELASTIC_GROW_AFTER =~ ^[0-9]{1,5}$ ]] || ELASTIC_GROW_AFTER=30

# gpu_memory N: "FREE TOTAL" (bytes) of GPU N's memory, read through the
# driver (vramfs --gpu-memory N: NVML, no CUDA context) under a deadline;
# VRAMSWAP_GPU_MEMORY_FILE names a file that holds them instead (for
# testing, and for machines whose driver has no NVML).  Fails saying why.
gpu_memory() {
  local out rc=0 free total
  if [ -n "${VRAMSWAP_GPU_MEMORY_FILE:-}" ]; then
    read -r free total 2>/dev/null <"$VRAMSWAP_GPU_MEMORY_FILE" ||
      { echo "cannot read $VRAMSWAP_GPU_MEMORY_FILE"; return 1; }
  else
    out=$(bounded_for "$GPU_TIMEOUT" "$VRAMFS" --gpu-memory "$1" 2>&1) || rc=$?
    [ "$rc" != 137 ] || { echo "the driver did not answer within $GPU_TIMEOUT s"; return 1; }
    [ "$rc" = 0 ] || { one_line "${out#vramfs: }"; return 1; }
    read -r free total <<<"$out"
  fi
  if ! [[ $free =~ ^[0-9]+$ ]] || ! [[ $total =~ ^[1-9][0-9]*$ ]]; then
    echo "unreadable free and total memory: '$free $total'"
    return 1
  fi
  echo "$free $total"
}

# headroom_bytes HEADROOM TOTAL: HEADROOM (a size or N%) of a GPU of TOTAL.
headroom_bytes() {
  if [[ $1 =~ ^([0-9]+)%$ ]]; then echo $(($2 * 10#${BASH_REMATCH[1]} / 100)); else size_bytes "$1"; fi
}

# check_elastic N: start's check of --elastic for GPU N before anything is
# made: free VRAM can be read, and the headroom leaves room for swap.
check_elastic() {
  local n=$1 reading free total headroom
  reading=$(gpu_memory "$n") ||
    usage_error "--elastic needs free GPU memory from the driver (NVML), and GPU $n's cannot be read: $reading; nothing started"
  read -r free total <<<"$reading"
  headroom=$(headroom_bytes "${SET[ELASTIC]}" "$total")
  [ "$headroom" -lt "$total" ] ||
    usage_error "${FROM[ELASTIC]:---elastic} ${SET[ELASTIC]}: $(mib "$headroom") MiB is not less than the $(mib "$total") MiB GPU $n has; nothing started"
}

# --- the watcher's record, and its process ----------------------------------

# elastic_state N: the watcher's record of instance N into ELASTIC (keys
# pid, start, headroom, free, total, time, note); fails when no watcher of N
# runs.
declare -gA ELASTIC=()
elastic_state() {
  local key value
  ELASTIC=()
  while read -r key value; do
    [ -z "$key" ] || ELASTIC[$key]=$value
  done 2>/dev/null <"$DIR/.gpu$1.elastic"
  [[ ${ELASTIC[pid]:-} =~ ^[0-9]+$ ]] && [ "$(process_start "${ELASTIC[pid]}")" = "${ELASTIC[start]:-}" ]
}

# start_watcher N: the watcher of instance N, in a session of its own, its
# output in DIR/.gpuN.elastic.log.  It must hold neither the lock nor a
# pipe of start's.
start_watcher() {
  local n=$1 self
  [ -n "${SET[ELASTIC]:-}" ] || return 0
  ! elastic_state "$n" || return 0
  self=$(realpath -- "$0")
  (close_inherited && exec setsid "$self" elastic --gpu "$n" --elastic "${SET[ELASTIC]}" --dir "$DIR" \
    </dev/null >>"$DIR/.gpu$n.elastic.log" 2>&1) &
  echo "gpu$n: elastic: keeps ${SET[ELASTIC]} of VRAM free for other programs (vramswap elastic, pid $!)"
}

# stop_watcher N: ends instance N's watcher, and with it a resize it runs
# (which puts back what it had changed), and removes its record.
stop_watcher() {
  local n=$1 pid
  if elastic_state "$n"; then
    pid=${ELASTIC[pid]}
    # Its whole session: a swapoff it waits for ends too.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    wait_exit "$pid" 30 || { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
  fi
  rm -f "$DIR/.gpu$n.elastic"
}

# stop_watchers: before stop takes the lock (a watcher's resize may hold
# it): the watchers of the instances stop works on.
stop_watchers() {
  local d file n
  for d in "${DIRS[@]}"; do
    DIR=$d
    for file in "$DIR"/.gpu*.elastic; do
      [ -f "$file" ] || continue
      n=${file#"$DIR/.gpu"}
      n=${n%.elastic}
      [[ $n =~ ^[0-9]+$ ]] || continue
      if [ -n "${FLAG[GPU]:-}" ] && [ "${FLAG[GPU]}" != all ] && [[ ",${FLAG[GPU]}," != *",$n,"* ]]; then
        continue
      fi
      stop_watcher "$n"
    done
  done
}

# --- the loop ----------------------------------------------------------------

# note TEXT: what the watcher sees and decides, into its record (status
# shows it) with the figures; into the journal and the log when it says
# something else than the last, figures aside (free VRAM moves by a few
# MiB all the time: a line per reading would flood the journal).
LAST_NOTE=
note() {
  local tmp
  tmp="$DIR/.gpu$N.elastic.tmp"
  printf 'pid %s\nstart %s\nheadroom %s\nfree %s\ntotal %s\ntime %s\nnote %s\n' "$$" "$MY_START" \
    "$HEADROOM" "$FREE" "$TOTAL" "$(date +%s)" "$1" >"$tmp" 2>/dev/null && mv -f "$tmp" "$DIR/.gpu$N.elastic"
  [ "${1//[0-9]/}" != "$LAST_NOTE" ] || return 0
  LAST_NOTE=${1//[0-9]/}
  echo "$(date '+%F %T') gpu$N: $1"
  journal "gpu$N: elastic: $1"
}

# try_lock: the lock, without waiting: a watcher that finds a start, stop
# or resize running tries again at its next reading.
try_lock() {
  local file
  file=$(lock_path)
  exec 9>>"$file" || return 1
  flock -n 9 || { exec 9>&-; return 1; }
  echo "elastic $$" 2>/dev/null >"$file.holder" || true
}
unlock() { exec 9>&-; }

# A resize sets traps of its own, and resets them when done.
watcher_traps() {
  trap 'note "stopped (SIGTERM)"; exit 0' TERM
  trap 'exit 0' INT HUP
}

# elastic_resize N BYTES REASON: resize_instance, under the lock (it tries
# again at the next reading when another command holds it), after
# finishing a resize that was killed.
elastic_resize() {
  local rc=0
  try_lock || { LAST_REFUSAL="another vramswap command is running"; return 1; }
  if [ -n "$(interrupted_resize "$1")" ]; then
    { prepare_instance "$1" && finish_interrupted "$1"; } || rc=1
  fi
  [ "$rc" != 0 ] || [ -z "$2" ] || resize_instance "$@" || rc=1
  unlock
  watcher_traps
  return "$rc"
}

N='' MY_START='' HEADROOM=0 FREE=0 TOTAL=0
cmd_elastic() {
  local reading above_since=0 changed_at=0 t k now drop want free_mib head_mib each_mib left
  [ "$(id -u)" = 0 ] || die "elastic needs root (swapoff, losetup, swapon)"
  [[ ${FLAG[GPU]:-} =~ ^[0-9]+$ ]] || usage_error "elastic watches one GPU: --gpu N"
  [ -n "${SET[ELASTIC]:-}" ] || usage_error "elastic needs --elastic HEADROOM (or ELASTIC= in $CONF)"
  N=$((10#${FLAG[GPU]}))
  MY_START=$(process_start $$)
  watcher_traps
  elastic_state "$N" && [ "${ELASTIC[pid]}" != $$ ] &&
    die "gpu$N: a watcher (pid ${ELASTIC[pid]}) runs already"
  note "starting"
  for (( ; ; )); do
    t=$(date +%s)
    if ! reading=$(gpu_memory "$N"); then
      note "cannot read free VRAM ($reading); changing nothing"
      sleep "$ELASTIC_INTERVAL"
      continue
    fi
    read -r FREE TOTAL <<<"$reading"
    HEADROOM=$(headroom_bytes "${SET[ELASTIC]}" "$TOTAL")
    scan
    check_instance "$N"
    left=$(interrupted_resize "$N")
    case $STATE in
      none)
        note "gpu$N has no VRAM swap any more; the watcher ends"
        rm -f "$DIR/.gpu$N.elastic"
        exit 0
        ;;
      active) ;;
      degraded) [ -n "$left" ] || { note "the swap is degraded; changing nothing"; sleep "$ELASTIC_INTERVAL"; continue; } ;;
      *)
        note "the swap is $STATE; changing nothing"
        sleep "$ELASTIC_INTERVAL"
        continue
        ;;
    esac
    if [ -n "$left" ]; then
      # A resize that was killed (its own, or by hand) is finished first.
      if elastic_resize "$N" ""; then note "finished a resize that was interrupted"; fi
      sleep "$ELASTIC_INTERVAL"
      continue
    fi
    stripe_layout "$N"
    now=$(stripes_now)
    free_mib=$(mib "$FREE") head_mib=$(mib "$HEADROOM") each_mib=$(mib "$STRIPE_EACH")
    if [ "$FREE" -lt "$HEADROOM" ]; then
      # Enough stripes off to bring free VRAM back over the headroom, as
      # far as one stripe (then only stop takes it off).
      drop=$(((HEADROOM - FREE + STRIPE_EACH - 1) / STRIPE_EACH))
      k=$((now - drop))
      [ "$k" -ge 1 ] || k=1
      above_since=0
      if [ "$k" -ge "$now" ]; then
        note "free VRAM $free_mib MiB is below the headroom of $head_mib MiB, but the swap is at its smallest, one stripe of $each_mib MiB ('vramswap stop --gpu $N' takes it off)"
      elif elastic_resize "$N" $((k * STRIPE_EACH)) "elastic: free VRAM $free_mib MiB was below the headroom of $head_mib MiB"; then
        note "shrunk to $(mib $((k * STRIPE_EACH))) MiB: free VRAM $free_mib MiB was below the headroom of $head_mib MiB"
        changed_at=$t
      else
        note "cannot shrink to $(mib $((k * STRIPE_EACH))) MiB: ${LAST_REFUSAL:-see the journal (journalctl -t vramswap)}; free VRAM $free_mib MiB is below the headroom of $head_mib MiB; nothing forced"
      fi
    elif [ "$now" -lt "$STRIPE_MAX" ] && [ "$FREE" -ge $((HEADROOM + STRIPE_EACH)) ]; then
      [ "$above_since" != 0 ] || above_since=$t
      want=$((above_since > changed_at ? above_since : changed_at))
      want=$((want + ELASTIC_GROW_AFTER))
      if [ "$t" -lt "$want" ]; then
        note "free VRAM $free_mib MiB is above the headroom of $head_mib MiB and a stripe of $each_mib MiB; growing if it stays so for $((want - t)) s more"
      elif elastic_resize "$N" $(((now + 1) * STRIPE_EACH)) "elastic: free VRAM $free_mib MiB stayed above the headroom of $head_mib MiB and a stripe of $each_mib MiB for $ELASTIC_GROW_AFTER s"; then
        note "grown to $(mib $(((now + 1) * STRIPE_EACH))) MiB: free VRAM $free_mib MiB stayed above the headroom of $head_mib MiB and a stripe of $each_mib MiB for $ELASTIC_GROW_AFTER s"
        changed_at=$t above_since=0
      else
        note "cannot grow to $(mib $(((now + 1) * STRIPE_EACH))) MiB: ${LAST_REFUSAL:-see the journal (journalctl -t vramswap)}; free VRAM $free_mib MiB"
        changed_at=$t above_since=0
      fi
    else
      above_since=0
      if [ "$now" -ge "$STRIPE_MAX" ]; then
        note "free VRAM $free_mib MiB, headroom $head_mib MiB: the swap has its configured size, $(mib $((STRIPE_MAX * STRIPE_EACH))) MiB"
      else
        note "free VRAM $free_mib MiB, headroom $head_mib MiB: holding $(mib $((now * STRIPE_EACH))) of $(mib $((STRIPE_MAX * STRIPE_EACH))) MiB; it grows once free VRAM stays above the headroom and a stripe of $each_mib MiB"
      fi
    fi
    sleep "$ELASTIC_INTERVAL"
  done
}
