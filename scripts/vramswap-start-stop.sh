# shellcheck shell=bash
# vramswap-start-stop.sh: "vramswap start" and "vramswap stop".  Sourced by
# vramswap after vramswap-lib.sh and vramswap-state.sh; sleep takes swaps
# off with stop's steps.
#
# start sets up each chosen GPU in steps (folders, mount, loop devices on
# slices of the data file, mkswap, swapon), each undone on failure or
# interruption (rollback).  stop takes instances down in the only safe
# order: swapoff, losetup -d, umount, then it waits for the daemon; it
# refuses first where a memory-limited cgroup could not take its pages
# back, and leaves everything running where a step fails.

readonly DATA_NAME=swapfile
# How long stop waits for a daemon to exit once its mount is gone.
readonly DAEMON_EXIT_TIMEOUT=30
# Every stripe is a whole number of vramfs blocks (64K by default), so that
# no block is shared by two loop devices, and at least MIN_STRIPE long.
readonly STRIPE_ALIGN=$((64 << 10)) MIN_STRIPE=$((16 << 20))

# --- stripes ---------------------------------------------------------------

# stripe_bytes SIZE K: the length of each of K stripes of a SIZE-byte file.
stripe_bytes() { echo $(($1 / $2 / STRIPE_ALIGN * STRIPE_ALIGN)); }

check_stripes_fit() { # SIZE K
  local each
  each=$(stripe_bytes "$1" "$2")
  [ "$each" -ge "$MIN_STRIPE" ] && return 0
  echo "each stripe would be $(mib "$each") MiB, less than the $(mib "$MIN_STRIPE") MiB minimum; use fewer stripes or a larger size"
  return 1
}

# stripes_for SIZE: how many stripes a SIZE-byte file gets.  The count the
# user asked for stands (check_stripes_fit refuses it if it does not fit);
# the default gives way to as many as fit, down to one, so that a small
# swap still starts.
stripes_for() {
  local k=$((10#${SET[STRIPES]}))
  if [ -z "${FROM[STRIPES]:-}" ]; then
    while [ "$k" -gt 1 ] && [ "$(stripe_bytes "$1" "$k")" -lt "$MIN_STRIPE" ]; do k=$((k - 1)); done
  fi
  echo "$k"
}

# --- start -----------------------------------------------------------------

# What this start did, undone in reverse on failure.  Each entry is pushed
# before its step, so that a signal between the step and the push cannot
# leave something behind: undoing a step that did not happen is harmless.
UNDO=()
# The write end of a pipe to the guardian (start_guard), or empty.
GUARD=
# Fields are joined with a unit separator: paths may hold spaces.
undo_push() {
  local IFS=$'\x1f'
  UNDO+=("$*")
  [ -z "$GUARD" ] || echo "$*" >&"$GUARD" || true
}

# The signals that can end start, other than SIGKILL (see start_guard).
readonly START_SIGNALS="HUP INT QUIT PIPE TERM ALRM USR1 USR2"

# rollback: undoes UNDO, newest first.  Whatever fails is said and left;
# the rest is still undone.
rollback() {
  local i
  # shellcheck disable=SC2086 # a list of signals
  trap '' $START_SIGNALS
  for ((i = ${#UNDO[@]} - 1; i >= 0; i--)); do undo_one "${UNDO[$i]}"; done
  UNDO=()
  # Nothing is left for the guardian to undo.
  if [ -n "$GUARD" ]; then echo 'done' >&"$GUARD" || true; fi
}

undo_one() { # ENTRY
  local action pid dev
  IFS=$'\x1f' read -r -a action <<<"$1"
  case ${action[0]} in
    swapoff)
      swap_active "${action[1]}" || return 0
      say "rolling back: swapoff ${action[1]}"
      swapoff "${action[1]}" || say "swapoff ${action[1]} failed; undo it by hand"
      ;;
    detach)
      for dev in $(loops_of "${action[1]}"); do
        say "rolling back: losetup -d $dev"
        loop_detach "$dev" || say "losetup -d $dev failed; undo it by hand"
      done
      ;;
    umount)
      is_mounted "${action[1]}" || return 0
      say "rolling back: umount ${action[1]}"
      pid=$(daemon_pid "${action[1]}")
      unmount "${action[1]}" || say "umount ${action[1]} failed; undo it by hand"
      [ -z "$pid" ] || wait_exit "$pid" "$DAEMON_EXIT_TIMEOUT" ||
        say "the vramfs daemon $pid did not exit"
      ;;
    rmdir)
      [ -d "${action[1]}" ] || return 0
      say "rolling back: rmdir ${action[1]}"
      if made_here "${action[1]}"; then unmake "${action[1]}"; else rmdir "${action[1]}" 2>/dev/null || true; fi
      ;;
    prune)
      say "rolling back: rmdir ${action[*]:1}"
      prune "${action[@]:1}"
      ;;
    rm) rm -f "${action[1]}" ;;
  esac
  return 0
}

# start_guard: from here until start_done, however start ends, what it made
# is undone.  A caught signal (a closed pipe too: SIGPIPE) or an exit (set
# -e, die) rolls back at once; and a guardian process, to which undo_push
# sends every entry, undoes them if start dies of SIGKILL.  The guardian
# holds the lock until it is done (it shares start's descriptor 9).
start_guard() {
  local sig
  for sig in $START_SIGNALS; do
    # shellcheck disable=SC2064 # the signal's name, now
    trap "start_interrupted $sig" "$sig"
  done
  trap 'start_exited' EXIT
  exec {GUARD}> >(guardian)
}

start_interrupted() { # SIGNAL
  # From now on, a closed pipe only fails a write.
  # shellcheck disable=SC2086 # a list of signals
  trap '' $START_SIGNALS
  say "interrupted (SIG$1)"
  rollback
  exit $((128 + $(kill -l "$1")))
}

start_exited() {
  [ "${#UNDO[@]}" = 0 ] || rollback
}

# start_done: start is done; nothing it made is undone from now on.
start_done() {
  if [ -n "$GUARD" ]; then
    echo 'done' >&"$GUARD" || true
    exec {GUARD}>&-
    GUARD=
  fi
  UNDO=()
  # shellcheck disable=SC2086 # a list of signals
  trap - $START_SIGNALS EXIT
}

# guardian: reads undo entries on standard input until "done"; at the end
# of its input without it (start is gone, SIGKILL), undoes them.
guardian() {
  local line
  local -a entries=()
  set +e
  # shellcheck disable=SC2086 # a list of signals
  trap '' $START_SIGNALS
  while IFS= read -r line; do
    [ "$line" != 'done' ] || exit 0
    entries+=("$line")
  done
  [ "${#entries[@]}" -gt 0 ] || exit 0
  GUARD=
  UNDO=("${entries[@]}")
  say "start ended before it was done (killed?): undoing what it made"
  rollback
}

# Fails the start: says which step failed and why, then rolls back.
step_failed() { # N STEP REASON
  say "gpu$1: $2 failed: $3"
  rollback
  exit "$EX_FAIL"
}

# GPU_UUID[index] for every GPU nvidia-smi sees.  vramfs gets the UUID, not
# the index: nvidia-smi numbers GPUs in PCI bus order, CUDA by default
# fastest first, and the two differ on machines with mixed GPUs.
declare -gA GPU_UUID=()
list_gpus() {
  local out index uuid rc=0
  command -v nvidia-smi >/dev/null ||
    die "nvidia-smi not found: is the NVIDIA driver installed? (--backend host puts the swap in RAM)"
  out=$(bounded_for "$GPU_TIMEOUT" nvidia-smi --query-gpu=index,uuid --format=csv,noheader 2>&1) || rc=$?
  [ "$rc" != 137 ] ||
    die "nvidia-smi did not answer within $GPU_TIMEOUT s (a GPU or its driver hangs?); nothing started"
  [ "$rc" = 0 ] || die "nvidia-smi cannot list the GPUs: $(one_line "$out")"
  while IFS=', ' read -r index uuid; do
    [[ $index =~ ^[0-9]+$ ]] || continue
    GPU_UUID[$index]=${uuid:-$index}
  done <<<"$out"
  [ "${#GPU_UUID[@]}" -gt 0 ] || die "nvidia-smi lists no GPU: $(one_line "$out")"
}

# INSTANCES: the instance numbers start works on, in order.
INSTANCES=()
choose_instances() {
  local want=${SET[GPU]} n
  if [ "${SET[BACKEND]}" = host ]; then
    # No GPUs to find: all is the single instance gpu0.
    [ "$want" = all ] && want=0
  else
    list_gpus
    if [ "$want" = all ]; then
      want=$(printf '%s\n' "${!GPU_UUID[@]}" | sort -n | tr '\n' ',')
      want=${want%,}
    fi
    for n in ${want//,/ }; do
      [ -n "${GPU_UUID[$((10#$n))]:-}" ] ||
        die "GPU $((10#$n)) does not exist (GPUs here: $(printf '%s\n' "${!GPU_UUID[@]}" | sort -n | tr '\n' ' ' | sed 's/ $//'))"
    done
  fi
  mapfile -t INSTANCES < <(tr ',' '\n' <<<"$want" | sed 's/^0*\([0-9]\)/\1/' | sort -n -u)
}

# failover_clash: why -o failover cannot be had with the other settings
# and this kernel; nothing when it can.  Which options failover takes is
# vramfs's rule, asked of it (vramfs --check-options, which mounts
# nothing), not restated here; the settings behind its answer are named
# with where they came from.  The kernel's version is this machine's fact,
# which only a mount would otherwise find.
failover_clash() {
  local out key given=''
  if out=$("$VRAMFS" --check-options "$MOUNT_SOURCE" / -o "$(vramfs_options "${INSTANCES[0]:-0}")" 2>&1); then
    out=
  fi
  out=$(one_line "${out#vramfs: }")
  if [[ $out == failover:* ]]; then
    out=${out#failover: }
    # The settings that vramfs's answer names (by its option names), with
    # where each was given.
    for key in BACKEND:backend DISCARD:lazy TRANSPORT:transport; do
      if [[ $out == *"${key#*:}"* ]] && [ -n "${FROM[${key%%:*}]:-}" ]; then
        given+="${given:+, }${FROM[${key%%:*}]}"
      fi
    done
    echo "is refused by vramfs with these settings${given:+ (from $given)}: $out"
  elif ! kernel_at_least "$FAILOVER_KERNEL"; then
    echo "needs Linux $FAILOVER_KERNEL or newer (FUSE_NOTIFY_RESEND), and this kernel is $(kernel_release)"
  fi
}

# The built-in default gives way to a setting that failover cannot have,
# saying so; a failover that was asked for (--failover, FAILOVER=yes) is
# refused with what it clashes with, before anything is created.
resolve_failover() {
  local clash
  [ "${SET[FAILOVER]}" = yes ] || return 0
  clash=$(failover_clash)
  [ -n "$clash" ] || return 0
  case ${FROM[FAILOVER]:-} in
    --failover) usage_error "--failover $clash; give one or the other" ;;
    ?*) usage_error "${FROM[FAILOVER]}: FAILOVER=yes $clash; give one or the other" ;;
  esac
  # An old kernel is a surprise, worth a line; --transport uring and
  # --discard with --backend host are choices that imply no failover.
  if [ -z "${FROM[TRANSPORT]:-}" ] && [ -z "${FROM[DISCARD]:-}" ]; then
    say "starting without failover: it $clash (--no-failover keeps this quiet)"
  fi
  SET[FAILOVER]=no
}

# A queue depth is for FUSE over io_uring's queues: with the classic
# transport it is dropped, saying so (vramfs would only warn about it).
ignore_queue_depth() {
  [ -n "${SET[QUEUE_DEPTH]}" ] && [ "${SET[TRANSPORT]}" != uring ] || return 0
  case ${FROM[QUEUE_DEPTH]:-} in
    --*) say "--queue-depth applies to --transport uring only; ignored" ;;
    *) say "${FROM[QUEUE_DEPTH]:-the settings}: QUEUE_DEPTH applies to TRANSPORT=uring only; ignored" ;;
  esac
  SET[QUEUE_DEPTH]=
}

# settings_differ N: the settings that were given (on the command line or
# in the configuration file) and that running instance N has otherwise,
# "size 64M where --size asks for 128M", joined by ", "; nothing when none.
# Needs check_instance N (STATS).  A percentage is not compared: only
# vramfs knows its bytes.
settings_differ() {
  local n=$1 key want have prio out=()
  for key in BACKEND SIZE CACHE STRIPES PRIORITY DISCARD TRANSPORT FAILOVER; do
    if [ -z "${FROM[$key]:-}" ] || [ -z "${SET[$key]}" ]; then continue; fi
    want=${SET[$key]}
    case $key in
      BACKEND) have=${STATS[backend]:-} ;;
      SIZE | CACHE)
        [ -n "$(size_bytes "$want")" ] || continue
        have=${STATS[${key,,}_bytes]:-}
        [ "$have" != "$(size_bytes "$want")" ] || continue
        have=$(iec "$have")
        ;;
      STRIPES) want=$((10#$want)) have=$(stripes_of "$n") ;;
      PRIORITY)
        want=$((10#$want)) have=
        for prio in $(swap_devs_of "$n"); do have=${SWAP_PRIO[$prio]}; done
        ;;
      DISCARD) have=$([ "${STATS[lazy]:-}" = 1 ] && echo yes || echo no) ;;
      TRANSPORT) have=${STATS[transport]:-} ;;
      FAILOVER) have=$([ "${STATS[failover]:-}" = 1 ] && echo yes || echo no) ;;
    esac
    if [ -z "$have" ] || [ "$have" = "$want" ]; then continue; fi
    case $key in
      STRIPES) out+=("$have stripe$([ "$have" = 1 ] || echo s) where ${FROM[$key]} asks for $want") ;;
      *) out+=("${key,,} $have where ${FROM[$key]} asks for $want") ;;
    esac
  done
  [ "${#out[@]}" = 0 ] || joined_by ', ' "${out[@]}"
}

# FUSE over io_uring is off in the fuse module until enable_uring is Y.  It
# is turned on only for --transport uring, and left on: it only allows
# io_uring, the mounts made without it do not change.
enable_uring() {
  local value
  [ "${SET[TRANSPORT]}" = uring ] || return 0
  [ -e "$URING_PARAM" ] ||
    die "--transport uring: this kernel's fuse module has no $URING_PARAM (FUSE over io_uring needs Linux 6.14 or newer); nothing started"
  read -r value 2>/dev/null <"$URING_PARAM" ||
    die "--transport uring: cannot read $URING_PARAM; nothing started"
  [ "$value" != Y ] || return 0
  if ! { echo Y >"$URING_PARAM"; } 2>/dev/null ||
    ! read -r value 2>/dev/null <"$URING_PARAM" || [ "$value" != Y ]; then
    die "--transport uring: cannot turn on FUSE over io_uring (writing Y to $URING_PARAM failed); nothing started"
  fi
}

# The steps of starting instance N; each fails the whole start.

# DIR/.vramswap.made: the folders that start made (DIR, those above it that
# did not exist, DIR/gpuN), one a line, the outermost first.  stop removes
# those, once empty, and never a folder that was there before.
readonly MADE=.vramswap.made

# made_add PATH...: DIR's record says that start made PATH.
made_add() { printf '%s\n' "$@" >>"$DIR/$MADE"; }

# made_here PATH: whether DIR's record says that start made PATH.
made_here() { [ -f "$DIR/$MADE" ] && grep -qxF -- "$1" "$DIR/$MADE"; }

# unmake PATH: removes the folder PATH, if start made it and it is empty,
# and its line from DIR's record.
unmake() {
  local rest
  made_here "$1" || return 0
  rmdir -- "$1" 2>/dev/null || return 0
  rest=$(grep -vxF -- "$1" "$DIR/$MADE") || true
  printf '%s\n' "$rest" | sed '/^$/d' >"$DIR/$MADE"
}

# prune [PATH...]: once DIR holds nothing but its record, removes the
# record and the folders that start made of DIR and above it, the
# innermost first, while they are empty.  PATH... are those folders where
# the record may not have been written yet (a start interrupted).
prune() {
  local -a made=("$@")
  local i left
  if [ -d "$DIR" ]; then
    left=$(ls -A -- "$DIR" 2>/dev/null) || return 0
    [ -z "$left" ] || [ "$left" = "$MADE" ] || return 0
    if [ -f "$DIR/$MADE" ]; then
      mapfile -t made <"$DIR/$MADE"
      rm -f -- "${DIR:?}/$MADE"
    fi
  fi
  for ((i = ${#made[@]} - 1; i >= 0; i--)); do
    case ${made[$i]} in "$DIR"/*) continue ;; esac
    [ -d "${made[$i]}" ] || continue
    rmdir -- "${made[$i]}" 2>/dev/null || return 0
  done
}

make_dirs() { # N: DIR and DIR/gpuN, recorded where start made them
  local n=$1 mnt=$DIR/gpu$1 d=$DIR missing=() out
  while [ ! -e "$d" ] && [ "$d" != / ]; do
    missing=("$d" ${missing[@]+"${missing[@]}"})
    d=$(dirname -- "$d")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    undo_push prune "${missing[@]}"
    out=$(mkdir -p -- "$DIR" 2>&1) || step_failed "$n" "creating $DIR" "$(one_line "$out")"
    made_add "${missing[@]}"
  fi
  if [ ! -d "$mnt" ]; then
    undo_push rmdir "$mnt"
    out=$(mkdir -- "$mnt" 2>&1) || step_failed "$n" "creating $mnt" "$(one_line "$out")"
    made_add "$mnt"
  elif [ -n "$(ls -A -- "$mnt" 2>/dev/null)" ]; then
    step_failed "$n" "mount" "$mnt is not empty"
  fi
}

# vramfs_options N: the -o options of instance N's mount, from SET.
vramfs_options() {
  local n=$1 opts
  opts=backend=${SET[BACKEND]}
  # A GPU only for the cuda backend: vramfs warns about a device= it ignores.
  [ "${SET[BACKEND]}" != cuda ] || opts+=,device=${GPU_UUID[$n]:-$n}
  [ -z "${SET[SIZE]}" ] || opts+=,size=${SET[SIZE]}
  [ -z "${SET[CACHE]}" ] || opts+=,cache=${SET[CACHE]}
  [ "${SET[DISCARD]}" = no ] || opts+=,lazy
  [ -z "${SET[TRANSPORT]}" ] || opts+=,transport=${SET[TRANSPORT]}
  [ -z "${SET[QUEUE_DEPTH]}" ] || opts+=,queue_depth=$((10#${SET[QUEUE_DEPTH]}))
  [ "${SET[FAILOVER]}" = no ] || opts+=,failover
  [ "${SET[FAILOVER]}" = no ] || [ "${SET[STANDBY]}" = yes ] || opts+=,standby=0
  echo "$opts"
}

mount_instance() { # N
  local n=$1 mnt=$DIR/gpu$1 opts out
  opts=$(vramfs_options "$n")
  undo_push umount "$mnt"
  out=$(run_vramfs "$n" "$mnt" "$opts") ||
    step_failed "$n" "mount ($VRAMFS $MOUNT_SOURCE $mnt -o $opts)" "$(one_line "$out")"
  # Warnings from a successful mount (no IO_FLUSHER, say) matter: pass them on.
  [ -z "$out" ] || echo "$out" >&2
  is_mounted "$mnt" ||
    step_failed "$n" "mount" "$VRAMFS returned success but $mnt is not mounted"
}

# run_vramfs N MOUNTPOINT OPTIONS: mounts, and prints what vramfs said.
# vramfs returns once the memory is reserved and the mount is usable, which
# takes seconds on a large GPU: after PROGRESS_INTERVAL it says what it is
# waiting for (on a terminal with the seconds so far, redrawn), and at the
# end how long it took.
run_vramfs() {
  local n=$1 mnt=$2 opts=$3 pid rc=0 tmp start waited='' what result
  tmp=$(mktemp) || { echo "cannot create a temporary file"; return 1; }
  start=$(now_us)
  # The daemon must not inherit the lock or the guardian's pipe: it would
  # hold them for ever.
  (close_inherited && exec "$VRAMFS" "$MOUNT_SOURCE" "$mnt" -o "$opts") >"$tmp" 2>&1 &
  pid=$!
  what="gpu$n: vramfs is reserving ${SET[SIZE]:-the free memory} of $([ "${SET[BACKEND]}" = host ] && echo RAM || echo "the GPU")"
  while still_running "$pid"; do
    if [ -t 2 ]; then
      printf '\r\033[K%s' "$what ($(seconds_of $(($(now_us) - start))) s so far)" >&2
    elif [ -z "$waited" ]; then
      echo "$what..." >&2
    fi
    waited=1
  done
  wait "$pid" || rc=$?
  cat "$tmp"
  rm -f "$tmp"
  if [ -n "$waited" ]; then
    [ ! -t 2 ] || printf '\r\033[K' >&2
    result=failed
    [ "$rc" != 0 ] || result=ready
    echo "$what: $result in $(seconds_of $(($(now_us) - start))) s" >&2
  fi
  return "$rc"
}

# attach_stripes N: sets STRIPE_DEVS to K loop devices over K disjoint
# slices of the data file, recorded in DIR/.gpuN.loop for status and stop.
STRIPE_DEVS=()
attach_stripes() {
  local n=$1 file=$DIR/gpu$1/$DATA_NAME k size each s out id
  STRIPE_DEVS=()
  size=$(stat_value "$DIR/gpu$n" size_bytes 2>&1) ||
    step_failed "$n" "reading the size from $DIR/gpu$n/.stats" "$(one_line "$size")"
  k=$(stripes_for "$size")
  out=$(check_stripes_fit "$size" "$k") ||
    step_failed "$n" "splitting its $(mib "$size") MiB into $k stripes" "$out"
  each=$(stripe_bytes "$size" "$k")
  id=$(bounded stat -c '%Hd:%Ld %i' "$file" 2>&1) ||
    step_failed "$n" "stat $file" "$(one_line "$id")"
  undo_push detach "$file"
  undo_push rm "$DIR/.gpu$n.loop"
  # The backend too: status labels the instance with it, daemon or not.
  # And the stripes' length and count: resize adds and takes off stripes
  # at the same offsets.
  { printf '# backend %s\n# stripe_bytes %s\n# stripes %s\n' "${SET[BACKEND]}" "$each" "$k" \
      >"$DIR/.gpu$n.loop"; } 2>/dev/null ||
    step_failed "$n" "recording the loop devices in $DIR/.gpu$n.loop" "cannot write it"
  for ((s = 0; s < k; s++)); do
    if [ "$k" = 1 ]; then
      out=$(loop_attach "$file" 2>&1) ||
        step_failed "$n" "attaching a loop device (losetup)" "$(one_line "$out")"
    else
      out=$(loop_attach "$file" --offset $((s * each)) --sizelimit "$each" 2>&1) ||
        step_failed "$n" "stripe $s of $k: attaching a loop device (losetup)" "$(one_line "$out")"
    fi
    STRIPE_DEVS+=("$out")
    echo "$out $id" >>"$DIR/.gpu$n.loop"
  done
}

enable_stripes() { # N: mkswap and swapon on every stripe
  local n=$1 k=${#STRIPE_DEVS[@]} s dev label out swapon_args
  swapon_args=(--priority "$((10#${SET[PRIORITY]}))")
  [ "${SET[DISCARD]}" = no ] || swapon_args+=(--discard)
  for ((s = 0; s < k; s++)); do
    dev=${STRIPE_DEVS[$s]}
    label=vramswap-gpu$n
    [ "$k" = 1 ] || label+=-$s
    out=$(mkswap -L "$label" "$dev" 2>&1) ||
      step_failed "$n" "mkswap $dev" "$(one_line "$out")"
  done
  for dev in "${STRIPE_DEVS[@]}"; do
    undo_push swapoff "$dev"
    out=$(swapon "${swapon_args[@]}" "$dev" 2>&1) ||
      step_failed "$n" "swapon ${swapon_args[*]} $dev" "$(one_line "$out")"
    swap_active "$dev" ||
      step_failed "$n" "swapon $dev" "swapon succeeded but $dev is not in /proc/swaps"
  done
}

start_one() { # N
  local n=$1 what
  make_dirs "$n"
  mount_instance "$n"
  attach_stripes "$n"
  enable_stripes "$n"
  what="${SET[BACKEND]}, $DIR/gpu$n, priority $((10#${SET[PRIORITY]}))"
  [ "${#STRIPE_DEVS[@]}" = 1 ] || what+=", ${#STRIPE_DEVS[@]} stripes"
  [ "${SET[FAILOVER]}" = no ] || what+=", failover"
  echo "gpu$n: swap on ${STRIPE_DEVS[*]} ($what)"
}

cmd_start() {
  local n todo=() dev tool bytes problem differ active=() refused=()
  [ "${SET[BACKEND]}" = cuda ] || [ -n "${SET[SIZE]}" ] ||
    usage_error "--backend host needs --size (or SIZE= in $CONF)"
  command -v "$VRAMFS" >/dev/null || die "vramfs not found: $VRAMFS"
  for tool in losetup mkswap swapon swapoff umount timeout; do
    command -v "$tool" >/dev/null || die "$tool not found (util-linux, coreutils)"
  done
  # A size in bytes is known now: refuse stripes that would be too small
  # before anything is created.  (A percentage or the default is checked
  # once the mount says how large it is.)
  bytes=$(size_bytes "${SET[SIZE]}")
  if [ -n "$bytes" ]; then
    problem=$(check_stripes_fit "$bytes" "$(stripes_for "$bytes")") ||
      usage_error "--size ${SET[SIZE]} with --stripes $((10#${SET[STRIPES]})): $problem"
  fi
  resolve_failover
  ignore_queue_depth
  [ "$(id -u)" = 0 ] || die "start needs root (mount, losetup, swapon)"
  lock
  choose_instances
  scan
  # Decide for every instance before changing anything.
  for n in "${INSTANCES[@]}"; do
    if [ -n "${OTHER_MNT[$n]:-}" ]; then
      die "gpu$n: $DIR/gpu$n is already a ${OTHER_MNT[$n]} mount, not vramfs"
    fi
    check_instance "$n"
    # shellcheck disable=SC2153 # check_instance sets STATE
    case $STATE in
      none) todo+=("$n") ;;
      active | active-no-dio)
        dev=$(swap_devs_of "$n" | xargs)
        differ=$(settings_differ "$n")
        if [ -n "$differ" ]; then
          refused+=("gpu$n: already active (swap on $dev, $DIR/gpu$n), but with $differ; nothing changed: 'vramswap stop --gpu $n' first, to start it so")
        else
          active+=("gpu$n: already active (swap on $dev, $DIR/gpu$n); nothing changed")
        fi
        ;;
      *) die "gpu$n: partly set up ($STATE); run 'vramswap stop --gpu $n' first" ;;
    esac
  done
  if [ "${#refused[@]}" -gt 0 ]; then
    for n in "${!refused[@]}"; do say "${refused[$n]}"; done
    exit "$EX_FAIL"
  fi
  # Elastic mode needs free VRAM readings, and a headroom the GPU has.
  if [ -n "${SET[ELASTIC]}" ]; then
    for n in "${INSTANCES[@]}"; do check_elastic "$n"; done
  fi
  [ "${#active[@]}" = 0 ] || printf '%s\n' "${active[@]}"
  if [ "${#todo[@]}" -gt 0 ]; then
    enable_uring
    start_guard
    for n in "${todo[@]}"; do start_one "$n"; done
    start_done
  fi
  # The watchers, once everything is up (a watcher of an instance that was
  # already active too).
  for n in "${INSTANCES[@]}"; do start_watcher "$n"; done
}

# --- stop ------------------------------------------------------------------

# cgroups_at_risk KIB [ROOM_KIB]: "CGROUP SWAP HEADROOM" (bytes) for each
# memory cgroup with a limit whose pages in swap (at most KIB, what is
# turned off) would not fit once swapoff brings them back: swapoff charges
# them to the owner's cgroup, and over its limit the OOM killer acts.
# Headroom is the limit less the usage, plus the page cache the cgroup can
# drop to make room, plus ROOM_KIB: free swap that stays on (a resize that
# takes some stripes off), where the cgroup's reclaim puts other pages of
# its own to make room under its limit.
cgroups_at_risk() {
  local max_swap=$(($1 * 1024)) extra=$((${2:-0} * 1024)) root file dir limit usage swap key value cache
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    root=/sys/fs/cgroup
    while IFS= read -r file; do
      dir=${file%/memory.max}
      read -r limit 2>/dev/null <"$file" || continue
      [[ $limit =~ ^[0-9]+$ ]] || continue
      read -r swap 2>/dev/null <"$dir/memory.swap.current" || continue
      read -r usage 2>/dev/null <"$dir/memory.current" || continue
      cache=0
      while read -r key value; do
        case $key in active_file | inactive_file) cache=$((cache + value)) ;; esac
      done 2>/dev/null <"$dir/memory.stat" || continue
      at_risk "${dir#"$root"}" "$swap" "$limit" "$usage" "$cache"
    done < <(find "$root" -mindepth 2 -name memory.max 2>/dev/null)
  elif [ -d /sys/fs/cgroup/memory ]; then
    root=/sys/fs/cgroup/memory
    while IFS= read -r file; do
      dir=${file%/memory.limit_in_bytes}
      read -r limit 2>/dev/null <"$file" || continue
      # "No limit" is the largest page-aligned number.
      [ "${#limit}" -lt 19 ] || continue
      read -r usage 2>/dev/null <"$dir/memory.usage_in_bytes" || continue
      # total_swap (with the children) where the kernel accounts swap per
      # cgroup (memory.memsw.*); without it nothing can be told.
      swap='' cache=0
      while read -r key value; do
        case $key in
          total_swap) swap=$value ;;
          total_active_file | total_inactive_file) cache=$((cache + value)) ;;
        esac
      done 2>/dev/null <"$dir/memory.stat" || continue
      [ -n "$swap" ] || continue
      at_risk "${dir#"$root"}" "$swap" "$limit" "$usage" "$cache"
    done < <(find "$root" -mindepth 2 -name memory.limit_in_bytes 2>/dev/null)
  fi
}

at_risk() { # CGROUP SWAP LIMIT USAGE CACHE (max_swap and extra from the caller)
  local swap=$2 headroom=$(($3 - $4 + $5 + extra))
  [ "$swap" -gt 0 ] || return 0
  # A cgroup without processes has nobody to OOM-kill: what it still holds
  # is swap cache that its exited processes left, which swapoff frees.
  has_processes "$root$1" || return 0
  [ "$swap" -le "$max_swap" ] || swap=$max_swap
  [ "$headroom" -ge 0 ] || headroom=0
  [ "$swap" -gt "$headroom" ] || return 0
  echo "$1 $swap $headroom"
}

# has_processes DIR: whether the cgroup DIR or one below it has a process.
has_processes() {
  local procs pid
  # cgroupfs files have no size: read them.
  while IFS= read -r procs; do
    read -r pid 2>/dev/null <"$procs" && return 0
  done < <(find "$1" -name cgroup.procs 2>/dev/null)
  return 1
}

# swapoff_cause DEV KIB: why swapoff of DEV (KIB in use) failed, where the
# kernel or the numbers say; nothing when only swapoff's message knows.
swapoff_cause() {
  local log oom avail=0 key value
  if log=$(kernel_log_since "$STOP_SINCE"); then
    oom=$(grep -Ei 'out of memory|oom-kill|oom_reaper' <<<"$log" | tail -n 1 | sed 's/^\[[^]]*\] *//')
    if [ -n "$oom" ]; then
      echo "the kernel's OOM killer acted meanwhile ($oom)"
      return 0
    fi
  fi
  while read -r key value _; do
    case $key in MemAvailable: | SwapFree:) avail=$((avail + value)) ;; esac
  done </proc/meminfo
  # SwapFree counts DEV's own free space, which cannot take its pages.
  avail=$((avail - (${SWAP_SIZE[$1]:-0} - $2)))
  if [ "$2" -gt "$avail" ]; then
    echo "its $(($2 / 1024)) MiB do not fit in the $((avail / 1024)) MiB of RAM available and free in other swap"
  fi
}

# now_us: the time in microseconds.
now_us() { echo "${EPOCHREALTIME/./}"; }

# seconds_of US: microseconds as seconds with one decimal.
seconds_of() { printf '%d.%d' $(($1 / 1000000)) $(($1 / 100000 % 10)); }

# still_running PID: whether PID runs PROGRESS_INTERVAL seconds from now;
# returns as soon as it ends.
still_running() {
  local until=$(($(now_us) + $(interval_us)))
  while alive "$1"; do
    [ "$(now_us)" -lt "$until" ] || return 0
    sleep 0.02
  done
  return 1
}

# interval_us: PROGRESS_INTERVAL in microseconds.
interval_us() {
  local whole=${PROGRESS_INTERVAL%%.*} part=0
  [[ $PROGRESS_INTERVAL != *.* ]] || part=${PROGRESS_INTERVAL#*.}000000
  echo $((10#${whole:-0} * 1000000 + 10#${part:0:6}))
}

# swapoff_watched N DEV: swapoff DEV, its output in SWAPOFF_OUT (under
# LC_ALL=C: swap_off reads it).  On a
# terminal (standard error) it says how much is still in the swap, the
# rate and an estimate of the time left, redrawn every PROGRESS_INTERVAL
# seconds while swapoff brings the pages back, and how long it took at the
# end; elsewhere it says nothing.
SWAPOFF_OUT=
swapoff_watched() {
  local n=$1 dev=$2 total=${SWAP_USED[$2]:-0} pid rc=0 tmp start elapsed left done_kib rate eta
  if [ ! -t 2 ] || [ "$total" = 0 ]; then
    SWAPOFF_OUT=$(LC_ALL=C swapoff "$dev" 2>&1) || return 1
    return 0
  fi
  tmp=$(mktemp) || return 1
  start=$(now_us)
  printf '%s' "gpu$n: swapoff $dev: $(iec $((total * 1024))) to bring back into RAM" >&2
  LC_ALL=C swapoff "$dev" >"$tmp" 2>&1 &
  pid=$!
  while still_running "$pid"; do
    left=$(swap_used_kib "$dev")
    [ -n "$left" ] || continue
    elapsed=$(($(now_us) - start))
    done_kib=$((total - left))
    [ "$done_kib" -ge 0 ] || done_kib=0
    # KiB per second; the estimate only once something moved.
    rate=$((done_kib * 1000000 / (elapsed > 0 ? elapsed : 1)))
    eta=
    [ "$rate" = 0 ] || eta=", about $(((left + rate - 1) / rate)) s left"
    printf '\r\033[K%s' "gpu$n: swapoff $dev: $(iec $((left * 1024))) of $(iec $((total * 1024))) left, $(iec $((rate * 1024)))/s$eta" >&2
  done
  wait "$pid" || rc=$?
  SWAPOFF_OUT=$(cat "$tmp")
  rm -f "$tmp"
  elapsed=$(($(now_us) - start))
  if [ "$rc" = 0 ]; then
    printf '\r\033[K%s\n' "gpu$n: swapoff $dev: $(iec $((total * 1024))) back in RAM in $(seconds_of "$elapsed") s" >&2
  else
    printf '\r\033[K' >&2
  fi
  return "$rc"
}

# Instance N's swap off; fails, saying why, with everything left running.
# swapoff can fail with ENOMEM while RAM is plentiful and no OOM killer
# acts: a page it brings back could not be charged or allocated at that
# moment.  The kernel then turns the swap back on with what is still in it
# (what came back stays in RAM), so trying again goes on from there; after
# SWAPOFF_TRIES tries it gives up.  With --force it tries again also when
# the OOM killer acted, or RAM looked short: the kills that --force
# accepted free memory for the next try.
SWAPOFF_TRIES=3
swap_off() { # N
  local n=$1 dev
  for dev in $(swap_devs_of "$n"); do swap_off_device "$n" "$dev" || return 1; done
}

# swap_off_device N DEV: one loop device of instance N (resize takes
# stripes off with it).
swap_off_device() {
  local n=$1 dev=$2 cause try=1
  until swapoff_watched "$n" "$dev"; do
    cause=$(swapoff_cause "$dev" "${SWAP_USED[$dev]}")
    if [ "$try" -lt "$SWAPOFF_TRIES" ] && [[ $SWAPOFF_OUT == *"Cannot allocate memory"* ]] &&
      { [ -z "$cause" ] || [ "${FLAG[FORCE]:-}" = yes ]; }; then
      if [ -z "$cause" ]; then
        say "gpu$n: swapoff $dev: $(one_line "$SWAPOFF_OUT"), with RAM to spare; trying again"
      else
        say "gpu$n: swapoff $dev: $(one_line "$SWAPOFF_OUT"); $cause; --force: trying again"
      fi
      try=$((try + 1))
      sleep 1
      continue
    fi
    say "gpu$n: swapoff $dev failed: $(one_line "$SWAPOFF_OUT")${cause:+; $cause}; left running"
    return 1
  done
}

# LOST: what says that pages of instance N were lost, or nothing.  swapoff
# succeeds even when pages cannot be read back: the kernel marks them
# poisoned and their owners get SIGBUS on the next touch.  Loss is reported
# only where it is known: the kernel logged failed reads from one of N's
# loop devices since stop began; the daemon counted I/O errors meanwhile;
# in failed mode (where vramfs took the swap off itself), it counted any;
# or the daemon was dead with pages in its swap and the kernel log cannot
# be read.  A swap that held nothing, or whose pages nobody owned any more
# (nothing had to be read back), lost nothing, dead daemon or not.
LOST=
find_loss() { # N STATE ERRORS_BEFORE USED_KIB
  local n=$1 state=$2 errors=$3 used=$4 dev log count
  LOST=
  if log=$(kernel_log_since "$STOP_SINCE"); then
    for dev in ${LOOPS[$n]:-}; do
      count=$(loop_read_errors "$dev" "$log")
      [ "$count" = 0 ] || LOST="${LOST:+$LOST; }the kernel logged failed reads from $dev"
    done
  elif [ "$state" = dead ] && [ "$used" != 0 ]; then
    LOST="the vramfs daemon was dead ($STATS_ERR) before swapoff, with $(iec $((used * 1024))) in its swap"
  fi
  if [ "$state" = dead ]; then
    [ -z "$LOST" ] || [[ $LOST == "the vramfs daemon"* ]] ||
      LOST="the vramfs daemon was dead ($STATS_ERR) before swapoff, and $LOST"
  elif [ "$state" = failed ]; then
    [ "${STATS[errors]:-0}" = 0 ] ||
      LOST="no vramfs server could be started after the last one died (.stats state failed), and ${STATS[errors]} of its reads failed${LOST:+; $LOST}"
  elif [ -n "${MNT[$n]:-}" ] && read_stats "${MNT[$n]}" && [ "${STATS[errors]:-0}" -gt "$errors" ]; then
    LOST="vramfs counted $((STATS[errors] - errors)) I/O error(s) during swapoff${LOST:+; $LOST}"
  fi
}

# The steps of stopping instance N (after check_instance); each says what
# went wrong and fails, leaving the rest as it is.

# A daemon that does not answer: swapoff would wait on it, for ever if it
# is stuck, and so would umount.  Everything is left running.
refuse_unresponsive() { # N KIB_USED
  local n=$1 pid
  # The server: with failover, the keeper only holds what it serves.
  pid=$(server_pid_by_cmdline "$DIR/gpu$n")
  if [ -n "$(swap_devs_of "$n")" ]; then
    say "gpu$n: the vramfs server${pid:+ $pid} does not answer ($STATS_ERR)$(stopped_note "$pid"); swapoff would wait on it for the $(iec $(($2 * 1024))) in its swap, so everything is left running; check its log (journalctl -t vramfs) and run stop again once it answers"
  else
    say "gpu$n: the vramfs server${pid:+ $pid} does not answer ($STATS_ERR)$(stopped_note "$pid"); left running; nothing is swapped to it, so killing it (kill -9${pid:+ $pid}) loses nothing, then run stop again"
  fi
}

detach_loops() { # N
  local n=$1 dev out
  for dev in ${LOOPS[$n]:-}; do
    if ! out=$(loop_detach "$dev" 2>&1); then
      say "gpu$n: $(one_line "$out"); swap is off, mount left in place"
      return 1
    fi
  done
}

unmount_instance() { # N STATE
  local n=$1 mnt=$DIR/gpu$1 out
  [ -n "${MNT[$n]:-}" ] || return 0
  out=$(unmount "$mnt" 2>&1) && return 0
  if [ "$2" = dead ]; then
    # Nothing is left to lose on a dead mount: detach it.
    out=$(bounded umount -l "$mnt" 2>&1) && return 0
    say "gpu$n: umount $mnt failed: $(one_line "$out")"
  else
    say "gpu$n: umount $mnt failed: $(one_line "$out"); swap is off and the loop devices detached"
  fi
  return 1
}

wait_daemon() { # N PID
  local n=$1 pid=$2
  [ -n "$pid" ] || return 0
  wait_exit "$pid" "$DAEMON_EXIT_TIMEOUT" && return 0
  # Swap is off and the file closed: SIGTERM cannot lose data now.
  say "gpu$n: vramfs daemon $pid still runs ${DAEMON_EXIT_TIMEOUT} s after unmount; sending SIGTERM"
  kill -TERM "$pid" 2>/dev/null || true
  wait_exit "$pid" 5 && return 0
  say "gpu$n: vramfs daemon $pid does not exit"
  return 1
}

# stop_one N: stops instance N, saying so in DIR/.gpuN.stopping meanwhile
# (status shows it as stopping), then removes the folders start made.
stop_one() {
  local rc=0
  echo "$$ $(process_start $$)" 2>/dev/null >"$DIR/.gpu$1.stopping" || true
  stop_steps "$1" || rc=$?
  rm -f "$DIR/.gpu$1.stopping"
  prune
  return "$rc"
}

stop_steps() { # N
  local n=$1 pid state errors used
  stop_watcher "$n"
  check_instance "$n"
  state=$STATE errors=${STATS[errors]:-0} pid=$(stats_daemon_pid)
  used=$(swap_used_of "$n")
  if [ "$state" = unresponsive ]; then
    refuse_unresponsive "$n" "$used"
    return 1
  fi
  swap_off "$n" || return 1
  LOST=
  if [ "$used" != 0 ] || [ "$state" = failed ]; then find_loss "$n" "$state" "$errors" "$used"; fi
  detach_loops "$n" || return 1
  [ -n "$pid" ] || pid=$(daemon_pid "$DIR/gpu$n")
  unmount_instance "$n" "$state" || return 1
  wait_daemon "$n" "$pid" || return 1
  rm -f "$DIR/.gpu$n.loop" "$DIR/.gpu$n.resize" "$DIR/.gpu$n.resizing" \
    "$DIR/.gpu$n.elastic" "$DIR/.gpu$n.elastic.tmp" "$DIR/.gpu$n.elastic.log"
  # The folders that start made, and only those (prune: DIR's, once empty).
  unmake "$DIR/gpu$n"
  if [ -n "$LOST" ]; then
    local what="the pages that were in its swap"
    [ "$used" = 0 ] || what="some of the $(iec $((used * 1024))) that were in its swap"
    say "gpu$n: stopped, but $LOST: $what could not be read back; processes that owned those pages get SIGBUS when they touch them (see journalctl -t vramfs and dmesg)"
    return 1
  fi
  case $state in
    dead) echo "gpu$n: stopped (its vramfs daemon was dead, but no page had to be read back from its swap: nothing was lost)" ;;
    failed) echo "gpu$n: stopped (no vramfs server could be started after the last one died, but no read from its swap failed: nothing was lost)" ;;
    *) echo "gpu$n: stopped" ;;
  esac
}

# WANTED[DIR]: the instances stop works on under each of DIRS.
declare -gA WANTED=()
choose_to_stop() {
  local d n found all=""
  for d in "${DIRS[@]}"; do
    DIR=$d
    scan
    found=$(all_instances | xargs)
    all+=" $found"
    if [ -z "${FLAG[GPU]:-}" ] || [ "${FLAG[GPU]}" = all ]; then
      [ -z "$found" ] || WANTED[$d]=$found
      continue
    fi
    for n in ${FLAG[GPU]//,/ }; do
      n=$((10#$n))
      [[ " $found " != *" $n "* ]] || WANTED[$d]="${WANTED[$d]:-}${WANTED[$d]:+ }$n"
    done
  done
  if [ -n "${FLAG[GPU]:-}" ] && [ "${FLAG[GPU]}" != all ]; then
    for n in ${FLAG[GPU]//,/ }; do
      n=$((10#$n))
      [[ "$all " == *" $n "* ]] || echo "gpu$n: not running under ${DIRS[*]}; nothing to stop"
    done
  fi
}

# Refuses the stop when a memory-limited cgroup could not take back its
# pages; --force goes on.
check_cgroups() {
  local d n kib=0 cgroup swap headroom risky=0
  for d in "${!WANTED[@]}"; do
    DIR=$d
    scan
    for n in ${WANTED[$d]}; do kib=$((kib + $(swap_used_of "$n"))); done
  done
  [ "$kib" -gt 0 ] || return 0
  while read -r cgroup swap headroom; do
    [ -n "$cgroup" ] || continue
    risky=1
    if [ "${FLAG[FORCE]:-}" = yes ]; then
      say "cgroup $cgroup holds $(mib "$swap") MiB in swap and has $(mib "$headroom") MiB of headroom; --force: its processes may be OOM-killed"
    else
      say "cgroup $cgroup holds $(mib "$swap") MiB in swap and has $(mib "$headroom") MiB of headroom; its processes would be OOM-killed; raise its limit or stop them first (or stop --force)"
    fi
  done < <(cgroups_at_risk "$kib")
  [ "$risky" = 0 ] || [ "${FLAG[FORCE]:-}" = yes ] || exit "$EX_FAIL"
}

# The kernel log's last stamp when stop began: what it logs later is new.
STOP_SINCE=0
cmd_stop() {
  local d n rc=0
  [ "$(id -u)" = 0 ] || die "stop needs root (swapoff, losetup, umount)"
  # The elastic watchers first: one may be resizing, holding the lock.
  find_dirs
  stop_watchers
  lock
  STOP_SINCE=$(kernel_log_mark)
  find_dirs
  choose_to_stop
  if [ "${#WANTED[@]}" -eq 0 ]; then
    [ -n "${FLAG[GPU]:-}" ] && [ "${FLAG[GPU]}" != all ] ||
      echo "no VRAM swap is running under ${DIRS[*]}; nothing to stop"
    return 0
  fi
  check_cgroups
  for d in "${DIRS[@]}"; do
    [ -n "${WANTED[$d]:-}" ] || continue
    DIR=$d
    scan
    for n in ${WANTED[$d]}; do stop_one "$n" || rc=$EX_FAIL; done
  done
  return "$rc"
}
