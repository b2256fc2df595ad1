# shellcheck shell=bash
# vramswap-state.sh: what runs.  Sourced by vramswap for every command that
# looks at running VRAM swaps.  Instances are found from three places, so
# that broken states show too: the mount table, the loop devices' backing
# files and /proc/swaps (scan); each gets a state (check_instance), and
# collect_status makes of them the records that status, doctor and sleep
# read.  Needs vramswap-lib.sh and, from vramswap, DIR, SET, FLAG and
# MOUNT_SOURCE.

# --- what exists now -------------------------------------------------------

# Instances are found from three places, so that broken states show too: the
# mount table, the loop devices' backing files and /proc/swaps.

declare -gA MNT=() LOOPS=() DIO=() SWAP_SIZE=() SWAP_USED=() SWAP_PRIO=() OTHER_MNT=()
# MADE_STRIPES[N], MADE_BACKEND[N]: how many stripes start attached, and
# with which backend (DIR/.gpuN.loop).
declare -gA MOUNTED=() LOOP_TAKEN=() MADE_STRIPES=() MADE_BACKEND=()

# instance_of PATH: INSTANCE is the instance number if PATH is DIR/gpuN or
# below it; fails otherwise.
INSTANCE=
instance_of() {
  local rest
  [[ $1 == "$DIR/gpu"* ]] || return 1
  rest=${1#"$DIR/gpu"}
  rest=${rest%%/*}
  [[ $rest =~ ^[0-9]+$ ]] || return 1
  [ "$1" = "$DIR/gpu$rest" ] || [[ $1 == "$DIR/gpu$rest/"* ]] || return 1
  INSTANCE=$rest
}

scan() {
  local mp source fstype n dev file size used prio majmin state backing line stripes made
  MNT=() LOOPS=() DIO=() SWAP_SIZE=() SWAP_USED=() SWAP_PRIO=() OTHER_MNT=()
  MOUNTED=() LOOP_TAKEN=() MADE_STRIPES=() MADE_BACKEND=()
  while IFS=$'\t' read -r majmin fstype source mp; do
    MOUNTED[$majmin]=1
    instance_of "$mp" || continue
    n=$INSTANCE
    [ "$mp" = "$DIR/gpu$n" ] || continue
    # shellcheck disable=SC2034 # start refuses a mount point of another kind
    if [ "$fstype" = fuse.vramfs ]; then MNT[$n]=$mp; else OTHER_MNT[$n]=$fstype; fi
  done < <(mount_table)
  for dev in $(loop_devices); do
    loop_backing "$dev" file || continue
    instance_of "$file" || continue
    n=$INSTANCE
    LOOPS[$n]="${LOOPS[$n]:-}${LOOPS[$n]:+ }$dev"
    LOOP_TAKEN[$dev]=$n
    loop_dio "$dev" "DIO[$dev]"
  done
  # After umount -l an instance is gone from the mount table, but its loop
  # devices still hold the file, whose path then reads /swapfile.  start
  # left DIR/.gpuN.loop with each loop device and the file's device and
  # inode numbers (and "# backend NAME"): they find them again while they
  # still match.
  for state in "$DIR"/.gpu*.loop; do
    [ -f "$state" ] || continue
    n=${state#"$DIR/.gpu"}
    n=${n%.loop}
    [[ $n =~ ^[0-9]+$ ]] || continue
    stripes=0 made=
    while IFS= read -r line; do
      case $line in
        /dev/*) stripes=$((stripes + 1)) ;;
        "# backend "*) made=${line#"# backend "} ;;
      esac
    done 2>/dev/null <"$state"
    MADE_STRIPES[$n]=$stripes
    MADE_BACKEND[$n]=$made
    if [ -n "${MNT[$n]:-}" ] || [ -n "${LOOPS[$n]:-}" ]; then continue; fi
    while read -r dev backing; do
      [[ $dev == /dev/* ]] || continue
      [ -z "${LOOP_TAKEN[$dev]:-}" ] || continue
      [ -z "${MOUNTED[${backing%% *}]:-}" ] || continue
      [ -e "/sys/block/${dev#/dev/}/loop/backing_file" ] || continue
      # The inode number is read from the file itself: through the daemon.
      [ "$(bounded losetup -n -O BACK-MAJ:MIN,BACK-INO "$dev" 2>/dev/null | xargs)" = "$backing" ] ||
        continue
      LOOPS[$n]="${LOOPS[$n]:-}${LOOPS[$n]:+ }$dev"
      LOOP_TAKEN[$dev]=$n
      loop_dio "$dev" "DIO[$dev]"
    done 2>/dev/null <"$state"
  done
  # The heading line is no loop device either.
  while read -r dev _ size used prio; do
    [[ $dev == /dev/loop* ]] || continue
    # shellcheck disable=SC2034 # stop reads it
    SWAP_SIZE[$dev]=$size
    SWAP_USED[$dev]=$used
    SWAP_PRIO[$dev]=$prio
  done </proc/swaps
}

all_instances() {
  local n
  local -a all=()  # indexed: its keys come out in order
  for n in "${!MNT[@]}" "${!LOOPS[@]}"; do all[10#$n]=$n; done
  [ "${#all[@]}" = 0 ] || printf '%s\n' "${all[@]}"
}

swap_devs_of() { # N: the loop devices of N that are swap now
  local dev
  for dev in ${LOOPS[$1]:-}; do
    [ -n "${SWAP_USED[$dev]:-}" ] && echo "$dev"
  done
  return 0
}

swap_used_of() { # N: KiB in use on N's swap devices
  local dev kib=0
  for dev in ${LOOPS[$1]:-}; do kib=$((kib + ${SWAP_USED[$dev]:-0})); done
  echo "$kib"
}

# DIRS: where status and stop look.  --dir names one; without it, the
# configured DIR and the parent of every mount a vramswap start made
# (source "vramswap", named gpuN), wherever its --dir put it.
DIRS=()
find_dirs() {
  local _ fstype source mp
  DIRS=("$DIR")
  [ -z "${FLAG[DIR]:-}" ] || return 0
  while IFS=$'\t' read -r _ fstype source mp; do
    if [ "$fstype" != fuse.vramfs ] || [ "$source" != "$MOUNT_SOURCE" ]; then continue; fi
    [[ ${mp##*/} =~ ^gpu[0-9]+$ ]] || continue
    [[ " ${DIRS[*]} " == *" ${mp%/*} "* ]] || DIRS+=("${mp%/*}")
  done < <(mount_table)
}

# --- state of one instance (after scan) -------------------------------------

# check_instance N sets STATE to none, active, degraded, unprotected,
# failed, active-no-dio, dead, unresponsive, no-swap, no-mount, stale-loop,
# stopping (STOPPING the pid of the vramswap that stops it), resizing
# (RESIZING "PID TO_BYTES" of the vramswap that resizes it) or (without
# root) unknown; STATS to the mount's counters where it answers.  Needs
# scan first.
STATE='' STOPPING='' RESIZING=''

# stopping_by N [VAR]: the pid of another vramswap that is stopping
# instance N, from DIR/.gpuN.stopping ("PID START", see process_start),
# while it runs; printed, or put in VAR (empty when none).
stopping_by() {
  local pid_ start_
  [ -z "${2:-}" ] || printf -v "$2" ''
  read -r pid_ start_ 2>/dev/null <"$DIR/.gpu$1.stopping" || return 0
  [[ $pid_ =~ ^[0-9]+$ ]] && [ "$pid_" != $$ ] || return 0
  [ "$(process_start "$pid_")" != "$start_" ] || answer "${2:-}" "$pid_"
}
# resizing_by N: "PID TO_BYTES" of another vramswap that resizes instance N
# now (DIR/.gpuN.resizing, written by vramswap-resize.sh), or nothing.
# interrupted_resize N: "TO_BYTES FROM_BYTES REASON" of a resize of N that
# was killed before it was done, or nothing.
# Both print, or with a VAR after N put it there (empty when nothing).
resizing_by() {
  local pid_ start_ to_
  [ -z "${2:-}" ] || printf -v "$2" ''
  read -r pid_ start_ _ to_ _ 2>/dev/null <"$DIR/.gpu$1.resizing" || return 0
  [[ $pid_ =~ ^[0-9]+$ ]] && [ "$pid_" != $$ ] || return 0
  [ "$(process_start "$pid_")" != "$start_" ] || answer "${2:-}" "$pid_ $to_"
}
interrupted_resize() {
  local pid_ start_ from_ to_ reason_
  [ -z "${2:-}" ] || printf -v "$2" ''
  read -r pid_ start_ from_ to_ reason_ 2>/dev/null <"$DIR/.gpu$1.resizing" || return 0
  [[ $pid_ =~ ^[0-9]+$ ]] && [[ $to_ =~ ^[0-9]+$ ]] || return 0
  [ "$(process_start "$pid_")" != "$start_" ] || return 0
  answer "${2:-}" "$to_ $from_ $reason_"
}

# stripes_of N [VAR]: how many stripes N has: those start made, or those
# attached if more.
stripes_of() {
  local -a attached_
  read -r -a attached_ <<<"${LOOPS[$1]:-}"
  answer "${2:-}" $((${#attached_[@]} > ${MADE_STRIPES[$1]:-0} ? ${#attached_[@]} : ${MADE_STRIPES[$1]:-0}))
}

# shellcheck disable=SC2034 # metrics lists them
readonly STATES="active degraded unprotected failed active-no-dio dead unresponsive no-swap no-mount stale-loop stopping resizing unknown"
check_instance() {
  local n=$1 dev stripes left
  local -a swaps=()
  STATS=()
  STATS_ERR=
  stopping_by "$n" STOPPING
  # A stop takes it down, step by step: what it looks like meanwhile is no
  # state of its own.
  if [ -n "$STOPPING" ]; then
    STATE=stopping
    return 0
  fi
  swaps=()
  for dev in ${LOOPS[$n]:-}; do [ -z "${SWAP_USED[$dev]:-}" ] || swaps+=("$dev"); done
  # A resize adds or takes off stripes, one by one: the swap works
  # meanwhile.  Its counters are read as an active one's.
  resizing_by "$n" RESIZING
  if [ -n "$RESIZING" ] && [ -n "${MNT[$n]:-}" ] && [ "$EUID" = 0 ]; then
    read_stats "${MNT[$n]}" || true
    STATE=resizing
    return 0
  fi
  if [ -n "${MNT[$n]:-}" ]; then
    if [ "$EUID" != 0 ]; then
      # Only the user who mounted (root) may open .stats.
      STATE=unknown
      STATS_ERR="only root may read $DIR/gpu$n/.stats"
    elif ! read_stats "${MNT[$n]}"; then
      stopping_by "$n" STOPPING
      if [ -n "$STOPPING" ]; then
        # A stop began after the first look, and may have unmounted it.
        STATE=stopping
      elif ! is_mounted "${MNT[$n]}"; then
        # Unmounted since scan: it is what is left of it.
        unset "MNT[$n]"
        check_instance "$n"
      elif [[ $STATS_ERR == *"not connected"* ]]; then
        STATE=dead
      else
        STATE=unresponsive
      fi
    elif [ "${STATS[state]:-serving}" = failed ]; then
      # No server could replace the dead one: vramfs answers every read
      # with an error and takes the swap off itself.
      STATE=failed
    elif [ "${#swaps[@]}" = 0 ]; then
      STATE=no-swap
    else
      STATE=active
      # Fewer stripes swap than start made or than are attached: one was
      # taken off (by hand: swapoff, losetup -d).
      stripes_of "$n" stripes
      [ "${#swaps[@]}" -ge "$stripes" ] || STATE=degraded
      # A resize that was killed half-way (advice says how to finish it).
      interrupted_resize "$n" left
      [ -z "$left" ] || STATE=degraded
      if [ "${STATS[failover]:-0}" = 1 ] && [ "${STATS[keeper_alive]:-1}" = 0 ]; then
        STATE=unprotected
      fi
      for dev in ${LOOPS[$n]}; do
        if [ "${DIO[$dev]}" != 1 ]; then STATE="active-no-dio"; fi
      done
    fi
  elif [ -n "${LOOPS[$n]:-}" ]; then
    if [ "${#swaps[@]}" != 0 ]; then STATE=no-mount; else STATE=stale-loop; fi
  else
    STATE=none
  fi
}

# stopped_note PID: what to say when PID is stopped; nothing otherwise.
stopped_note() {
  [ -n "$1" ] && stopped "$1" || return 0
  echo "; it is stopped (SIGSTOP?): kill -CONT $1 lets it go on"
}

# What to do about a broken state, for status.
advice() { # N STATE
  local n=$1 stop="run 'vramswap stop --gpu $1${FLAG[DIR]:+ --dir $DIR}'" loops server left
  loops=$(xargs <<<"${LOOPS[$n]:-}")
  case $2 in
    dead) echo "gpu$n: the vramfs daemon is gone ($STATS_ERR); pages swapped to it are lost and processes that touch them get SIGBUS, and its swap is still on at its priority, so pages swapped out to it now fail too; $stop at once to turn it off" ;;
    unresponsive)
      server=$(server_pid_by_cmdline "${MNT[$n]:-$DIR/gpu$n}")
      echo "gpu$n: the vramfs server${server:+ $server} does not answer ($STATS_ERR)$(stopped_note "$server"); check its log (journalctl -t vramfs); do not kill it while its swap is active"
      ;;
    no-swap) echo "gpu$n: mounted but not used as swap; $stop to unmount it, then 'vramswap start'" ;;
    stopping) echo "gpu$n: being stopped by vramswap $STOPPING" ;;
    resizing) echo "gpu$n: being resized to $(mib "${RESIZING#* }") MiB by vramswap ${RESIZING%% *}" ;;
    degraded)
      left=$(interrupted_resize "$n")
      if [ -n "$left" ]; then
        echo "gpu$n: a vramswap resize to $(mib "${left%% *}") MiB was interrupted (killed?) half-way; 'vramswap resize --gpu $n --size $(mib "${left%% *}")M${FLAG[DIR]:+ --dir $DIR}' finishes it (and so does the next resize)"
        return 0
      fi
      echo "gpu$n: only $(swap_devs_of "$n" | wc -l) of its $(stripes_of "$n") stripes are swap (taken off by hand?): it works, with less room; $stop and 'vramswap start' again to have them all" ;;
    no-mount) echo "gpu$n: swap on $loops but its vramfs mount is gone from the mount table (lazily unmounted?); $stop" ;;
    stale-loop) echo "gpu$n: loop device $loops still holds the data file but nothing is mounted or swapped; $stop" ;;
    active-no-dio) echo "gpu$n: a loop device runs without direct I/O; buffered loop I/O can OOM-kill swapped processes; $stop and start again" ;;
    unprotected) echo "gpu$n: the failover keeper${STATS[keeper_pid]:+ ${STATS[keeper_pid]}} is gone: the server still serves, but if it dies now the pages in its swap are lost; $stop and 'vramswap start' again when the machine has the RAM to take those pages back" ;;
    failed) echo "gpu$n: no vramfs server could be started after the last one died (.stats state failed): every read from its swap fails and the pages in it are lost (journalctl -t vramfs names the processes at risk); vramfs took the swap off; $stop, then find out why (nvidia-smi, dmesg) before 'vramswap start'" ;;
    unknown) echo "gpu$n: state unknown: $STATS_ERR; run as root" ;;
  esac
}

# --- one record per instance ------------------------------------------------

# What status found, one record per instance, in parallel arrays indexed
# by record: what the table, the JSON and the metrics are made of.  Sizes
# are bytes, '' where unknown; lists are separated by blanks.
R_GPU=() R_BACKEND=() R_MNT=() R_LOOPS=() R_DIOS=() R_SIZE=() R_USED=()
R_PRIOS=() R_HELD=() R_HITS=() R_MISSES=() R_ERRORS=() R_RESTARTS=()
R_FAILOVER=() R_STATE=() R_ADVICE=() R_STATS=()
# The configured size (the most it may grow to), the last resize ("TIME
# FROM TO REASON", DIR/.gpuN.resize) and the elastic watcher's record
# (DIR/.gpuN.elastic: "HEADROOM FREE TOTAL TIME NOTE"), '' where none.
R_MAX=() R_RESIZE=() R_ELASTIC=()
ACTIVE=0
#
# The size is that of the stripes that are swap (or attached, where none
# is; the data file's where none is attached): from sysfs, so that it is
# the same whether the daemon answers or not and whoever asks.  The backend
# is the one start recorded, else what .stats says.
collect_status() {
  local n dev size used held loops dios prios key stats bytes attached line
  for n in $(all_instances); do
    check_instance "$n"
    # Gone since scan.
    [ "$STATE" != none ] || continue
    loops=() dios=() prios=() used='' size='' attached=''
    for dev in ${LOOPS[$n]:-}; do
      loops+=("$dev")
      dios+=("${DIO[$dev]}")
      loop_bytes "$dev" bytes
      attached=$((${attached:-0} + bytes))
      [ -n "${SWAP_USED[$dev]:-}" ] || continue
      used=$((${used:-0} + SWAP_USED[$dev] * 1024))
      [[ " ${prios[*]} " == *" ${SWAP_PRIO[$dev]} "* ]] || prios+=("${SWAP_PRIO[$dev]}")
      size=$((${size:-0} + bytes))
    done
    [ -n "$size" ] || size=${attached:-${STATS[size_bytes]:-}}
    held=${STATS[held_bytes]:-${STATS[vram_bytes]:-}}
    stats=
    for key in "${!STATS[@]}"; do stats+="$key ${STATS[$key]}"$'\n'; done
    R_GPU+=("$n")
    R_BACKEND+=("${MADE_BACKEND[$n]:-${STATS[backend]:-}}")
    R_MNT+=("${MNT[$n]:-$DIR/gpu$n}")
    R_LOOPS+=("${loops[*]}")
    R_DIOS+=("${dios[*]}")
    R_SIZE+=("$size")
    R_USED+=("$used")
    R_PRIOS+=("${prios[*]}")
    R_HELD+=("$held")
    R_HITS+=("${STATS[cache_hits]:-}")
    R_MISSES+=("${STATS[cache_misses]:-}")
    R_ERRORS+=("${STATS[errors]:-}")
    R_FAILOVER+=("${STATS[failover]:-}")
    if [ "${STATS[failover]:-0}" = 1 ]; then R_RESTARTS+=("${STATS[restarts]:-}"); else R_RESTARTS+=(""); fi
    R_STATE+=("$STATE")
    R_STATS+=("$(sort <<<"$stats")")
    R_MAX+=("${STATS[max_size_bytes]:-}")
    read_line line "$DIR/.gpu$n.resize" || true
    R_RESIZE+=("$line")
    R_ELASTIC+=("$(elastic_summary "$n")")
    case $STATE in
      active) R_ADVICE+=("") ;;
      *) R_ADVICE+=("$(advice "$n" "$STATE")") ;;
    esac
    case $STATE in active | degraded | active-no-dio | unprotected | resizing) ACTIVE=$((ACTIVE + 1)) ;; esac
  done
}

# elastic_summary N: "HEADROOM FREE TOTAL TIME NOTE" from the elastic
# watcher's record of N while it runs; nothing otherwise.
elastic_summary() {
  local key value
  local -A e=()
  while read -r key value; do
    [ -z "$key" ] || e[$key]=$value
  done 2>/dev/null <"$DIR/.gpu$1.elastic"
  [[ ${e[pid]:-} =~ ^[0-9]+$ ]] && [ "$(process_start "${e[pid]}")" = "${e[start]:-}" ] || return 0
  echo "${e[headroom]:-0} ${e[free]:-0} ${e[total]:-0} ${e[time]:-0} ${e[note]:-}"
}

# stat_of R KEY [VAR]: the value of counter KEY in record R's R_STATS,
# printed or put in VAR; empty when it has none.
stat_of() {
  local key_ value_
  while read -r key_ value_; do
    [ "$key_" != "$2" ] || break
  done <<<"${R_STATS[$1]}"
  [ "$key_" = "$2" ] || value_=
  answer "${3:-}" "$value_"
}

# VRAM_LOOPS[DEV]: every loop device of a VRAM swap that collect_all saw,
# with the state of its instance.
declare -gA VRAM_LOOPS=()
collect_all() {
  local d r dev
  find_dirs
  for d in "${DIRS[@]}"; do
    DIR=$d
    scan
    collect_status
  done
  for r in "${!R_GPU[@]}"; do
    # shellcheck disable=SC2034 # doctor and sleep read it
    for dev in ${R_LOOPS[$r]}; do VRAM_LOOPS[$dev]=${R_STATE[$r]}; done
  done
}
