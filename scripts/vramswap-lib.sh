# shellcheck shell=bash
# vramswap-lib.sh: shell functions shared by vramswap(8), the integration
# tests and bench/run: probes of mounts, loop devices, swap and the daemon,
# each with a deadline where it can wait; teardown in the safe order; and
# vramswap's settings, read from its configuration file.  Sourced, never
# run; needs bash.
#
# Three rules hold for every function here:
# - Whatever touches a vramfs mount runs under a deadline (bounded): a daemon
#   that stops answering (SIGSTOP, a hung GPU) must not hang its caller.  The
#   mount table, sysfs and /proc never wait on a daemon and need none.
# - A function meant to be called as $(function ...) fails loudly: a message
#   on stderr and a non-zero status, never an empty answer with status 0
#   (set -e does not reach inside a command substitution).
# - Teardown keeps one order: kill the memory-limited cgroup's processes,
#   swapoff, losetup -d, umount.  swapoff charges the pages it brings back to
#   their owner's cgroup, where a limit would OOM-kill; and a mount cannot go
#   while a loop device holds its file.

# Seconds a probe of a mount may take before it is given up.
: "${VRAMFS_PROBE_TIMEOUT:=5}"

# close_inherited: closes every descriptor above 2, in a subshell that runs
# a command that may outlive its caller (a hung probe, a daemon): it must
# hold no pipe whose reader waits for the end of it, and no lock.
close_inherited() {
  local f n
  for f in /proc/"$BASHPID"/fd/*; do
    n=${f##*/}
    if [[ $n =~ ^[0-9]+$ ]] && [ "$n" -gt 2 ]; then eval "exec $n>&-"; fi
  done
}

# bounded COMMAND...: COMMAND under a deadline of VRAMFS_PROBE_TIMEOUT
# seconds (see bounded_for).
bounded() { bounded_for "$VRAMFS_PROBE_TIMEOUT" "$@"; }

# bounded_for SECONDS COMMAND...: COMMAND, killed after SECONDS (status 137
# then).  SIGKILL, because a process waiting on a FUSE
# daemon answers to nothing else.  And the caller is back two seconds after
# the deadline whatever happens: a request that the daemon had taken before
# it hung is waited for uninterruptibly, SIGKILL or not; such a process is
# left behind holding none of the caller's descriptors.  Under
# LC_ALL=C, since callers read its messages ("not connected"), which
# another locale translates.  Standard input is /dev/null; the output comes
# once COMMAND has ended (one stream where the caller gave standard output
# and standard error the same file; standard output first otherwise) and
# must hold no NUL byte.
bounded_for() {
  local limit=$1 fd out='' rc=137 err='' mode=direct
  shift
  if [ /proc/self/fd/1 -ef /proc/self/fd/2 ]; then
    mode=merged
  elif [ -p /proc/self/fd/2 ] || [ -S /proc/self/fd/2 ]; then
    # A pipe: whoever reads it would wait for a process left behind.
    mode='file'
    err=$(mktemp "${TMPDIR:-/tmp}/vramfs-probe.XXXXXX") || return 1
  fi
  exec {fd}< <(
    close_inherited
    [ "$mode" = direct ] || exec 2>/dev/null
    status=0
    case $mode in
      merged) LC_ALL=C timeout -s KILL "$limit" "$@" </dev/null 2>&1 || status=$? ;;
      file) LC_ALL=C timeout -s KILL "$limit" "$@" </dev/null 2>"$err" || status=$? ;;
      *) LC_ALL=C timeout -s KILL "$limit" "$@" </dev/null || status=$? ;;
    esac
    printf '\0%d\n' "$status"
  )
  if IFS= read -r -d '' -t $((limit + 2)) -u "$fd" out; then
    IFS= read -r -t 1 -u "$fd" rc || rc=137
    printf '%s' "$out"
  fi
  exec {fd}<&-
  if [ -n "$err" ]; then
    [ "$rc" = 137 ] || cat "$err" >&2
    rm -f "$err"
  fi
  return "$rc"
}

# --- the mount table -----------------------------------------------------------

# mount_table: one mount a line, "MAJ:MIN<TAB>FSTYPE<TAB>SOURCE<TAB>
# MOUNTPOINT", from /proc/self/mountinfo (or the file MOUNTINFO names, for
# testing), with the kernel's octal
# escapes (\040 for a space, \134 for a backslash...) decoded.  A tab or a
# newline in a path cannot be told apart in this output: vramswap refuses
# such paths.
mount_table() {
  awk '
    function unescape(s,    out, i, c) {
      out = ""
      for (i = 1; i <= length(s); i++) {
        c = substr(s, i, 1)
        if (c == "\\" && substr(s, i + 1, 3) ~ /^[0-7][0-7][0-7]$/) {
          c = sprintf("%c", (substr(s, i + 1, 1) * 64) + (substr(s, i + 2, 1) * 8) + substr(s, i + 3, 1))
          i += 3
        }
        out = out c
      }
      return out
    }
    {
      for (sep = 7; sep <= NF && $sep != "-"; sep++);
      print $3 "\t" unescape($(sep + 1)) "\t" unescape($(sep + 2)) "\t" unescape($5)
    }' "${MOUNTINFO:-/proc/self/mountinfo}"
}

# is_mounted PATH: whether PATH is a mount point, from the mount table
# (mountpoint(1) needs stat(), which waits on a hung FUSE daemon and fails
# on a dead one).
is_mounted() {
  local _ _ _ mp
  while IFS=$'\t' read -r _ _ _ mp; do
    [ "$mp" != "$1" ] || return 0
  done < <(mount_table)
  return 1
}

# vramfs_mounts_under PATH: the fuse.vramfs mount points at or under PATH.
vramfs_mounts_under() {
  local _ fstype _ mp
  while IFS=$'\t' read -r _ fstype _ mp; do
    [ "$fstype" = fuse.vramfs ] || continue
    [ "$mp" = "$1" ] || [[ $mp == "$1/"* ]] || continue
    printf '%s\n' "$mp"
  done < <(mount_table)
}

# --- loop devices ----------------------------------------------------------------

# Each reader below prints its answer, or with a VAR after its arguments
# puts it there instead (their own locals end in _, so that they never hide
# the caller's VAR): a scan reads every loop device, and each $(...) is a
# fork, which on a small machine costs more than the read itself.

# read_line VAR FILE: FILE's first line into VAR, with no fork; fails,
# quietly, when FILE cannot be read.
# shellcheck disable=SC2034 # a reference to the caller's VAR
read_line() {
  local -n line_=$1
  line_=
  { IFS= read -r line_ <"$2"; } 2>/dev/null || [ -n "$line_" ]
}

# answer VAR VALUE: VALUE into VAR when VAR is given, printed when not.
answer() {
  if [ -n "$1" ]; then printf -v "$1" '%s' "$2"; else printf '%s\n' "$2"; fi
}

# loop_backing /dev/loopN [VAR]: the backing file, from sysfs; fails when
# the device holds none.  After a lazy unmount the path reads from the old
# mount's root (/swapfile).
loop_backing() {
  local file_
  read_line file_ "/sys/block/${1#/dev/}/loop/backing_file" || return 1
  answer "${2:-}" "${file_% (deleted)}"
}

# loop_devices: every loop device that holds a file, one a line.
loop_devices() {
  local sys dev
  for sys in /sys/block/loop*/loop/backing_file; do
    [ -e "$sys" ] || continue
    dev=${sys#/sys/block/}
    echo "/dev/${dev%%/*}"
  done
}

# loops_of FILE: the loop devices whose backing file is FILE.
loops_of() {
  local dev file
  for dev in $(loop_devices); do
    loop_backing "$dev" file || continue
    [ "$file" != "$1" ] || echo "$dev"
  done
  return 0
}

# loops_under PATH: the loop devices whose backing file lies under PATH/.
loops_under() {
  local dev file
  for dev in $(loop_devices); do
    loop_backing "$dev" file || continue
    [[ $file != "$1/"* ]] || echo "$dev"
  done
  return 0
}

# loop_bytes /dev/loopN [VAR]: the device's size in bytes (0 when it cannot be
# read): its slice of the file, from sysfs, whoever asks and whatever the
# daemon does.
loop_bytes() {
  local sectors_
  read_line sectors_ "/sys/block/${1#/dev/}/size" || true
  [[ $sectors_ =~ ^[0-9]+$ ]] || sectors_=0
  answer "${2:-}" $((sectors_ * 512))
}

# loop_dio /dev/loopN [VAR]: 1 when the device does direct I/O, 0 when not,
# '?' when it cannot be read.
loop_dio() {
  local dio_
  read_line dio_ "/sys/block/${1#/dev/}/loop/dio" || dio_='?'
  answer "${2:-}" "$dio_"
}

# loop_attach FILE [LOSETUP_OPTION...]: attaches a free loop device to FILE
# with direct I/O and prints it.  Fails with a message if losetup fails, says
# something unexpected, or direct I/O did not take (then the device is
# detached again): a buffered loop device charges its page cache to the
# faulting cgroup and can OOM-kill the very process being swapped.
loop_attach() {
  local file=$1 out dev dio
  shift
  if ! out=$(bounded losetup --find --show --direct-io=on "$@" -- "$file" 2>&1); then
    echo "losetup failed: $(tr '\n' ' ' <<<"$out" | sed 's/ *$//')" >&2
    return 1
  fi
  dev=$(tail -n 1 <<<"$out")
  if [[ $dev != /dev/loop* ]]; then
    echo "losetup printed no loop device: $(tr '\n' ' ' <<<"$out" | sed 's/ *$//')" >&2
    return 1
  fi
  dio=$(loop_dio "$dev")
  if [ "$dio" != 1 ]; then
    loop_detach "$dev" 2>/dev/null || true
    echo "$dev has dio=$dio, not 1: the kernel did not take --direct-io=on" >&2
    return 1
  fi
  echo "$dev"
}

# wait_detached /dev/loopN: a detach is asynchronous; waits up to 10 s.
wait_detached() {
  local i
  for ((i = 0; i < 100; i++)); do
    [ -e "/sys/block/${1#/dev/}/loop/backing_file" ] || return 0
    sleep 0.1
  done
  return 1
}

# loop_detach /dev/loopN: losetup -d, then waits until the file is let go.
loop_detach() {
  local out
  out=$(bounded losetup -d "$1" 2>&1) || { echo "losetup -d $1 failed: $out" >&2; return 1; }
  wait_detached "$1" || { echo "$1 did not let go of its file within 10 s" >&2; return 1; }
}

# --- swap --------------------------------------------------------------------------

# swap_active DEV: whether DEV is in /proc/swaps.
swap_active() { awk -v d="$1" 'NR > 1 && $1 == d { f = 1 } END { exit !f }' /proc/swaps; }

# swap_used_kib DEV: KiB of swap in use on DEV (nothing when it is not swap).
swap_used_kib() { awk -v d="$1" 'NR > 1 && $1 == d { print $4 }' /proc/swaps; }

# --- the daemon ----------------------------------------------------------------------

# read_stats MOUNTPOINT: the mount's .stats into the array STATS; on failure
# STATS_ERR says why ("Transport endpoint is not connected" when the daemon
# is gone, "no answer within N s" when it hangs).
#
# Under the deadline of bounded, but with no program run: a child of this
# shell reads the file (bash's $(<FILE)) and sends it back through a pipe,
# which this shell reads with read -t.  Status and tests poll .stats many
# times a second, and timeout and cat cost more forks than the read.  A
# child that misses the deadline is killed (SIGKILL; one stuck in a request
# the daemon had taken waits on regardless), holding none of this shell's
# descriptors but the pipe, which is closed here.
declare -A STATS=()
STATS_ERR=
read_stats() {
  local out='' rc=137 key value fd pid
  STATS=()
  STATS_ERR=
  exec {fd}< <(
    close_inherited
    exec </dev/null 2>/dev/null
    # Under set -e a $(<FILE) that cannot open FILE would end this child
    # before it says why.
    set +e
    LC_ALL=C
    status=0
    { text=$(<"$1/.stats"); } 2>&1 || status=1
    printf '%s\0%d\n' "${text:-}" "$status"
  )
  pid=$!
  if IFS= read -r -d '' -t "$VRAMFS_PROBE_TIMEOUT" -u "$fd" out; then
    IFS= read -r -t 1 -u "$fd" rc || rc=137
  else
    kill -KILL "$pid" 2>/dev/null || true
  fi
  exec {fd}<&-
  if [ "$rc" != 0 ]; then
    out=${out%$'\n'}
    STATS_ERR=${out##*: }
    [ "$rc" != 137 ] && [ -n "$STATS_ERR" ] || STATS_ERR="no answer within $VRAMFS_PROBE_TIMEOUT s"
    return 1
  fi
  while read -r key value; do
    [ -z "$key" ] || STATS[$key]=$value
  done <<<"$out"
  return 0
}

# stat_value MOUNTPOINT KEY: one value from .stats; fails when .stats does
# not answer or lacks KEY.
stat_value() {
  read_stats "$1" || { echo "$1/.stats: $STATS_ERR" >&2; return 1; }
  [ -n "${STATS[$2]:-}" ] || { echo "$1/.stats has no $2" >&2; return 1; }
  echo "${STATS[$2]}"
}

# alive PID: runs and is not a zombie (kill -0 succeeds for a zombie too).
alive() {
  local stat
  read_line stat "/proc/$1/stat" || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# process_start PID: when PID started (clock ticks after boot), which tells
# it from a later process with the same number; fails when none runs.
process_start() {
  local stat
  read_line stat "/proc/$1/stat" || return 1
  stat=${stat##*) }
  # Fields from the third on: the start time is the 22nd.
  awk '{ print $20 }' <<<"$stat"
}

# wait_exit PID SECONDS: whether PID ended within SECONDS.
wait_exit() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    alive "$1" || return 0
    sleep 0.1
  done
  ! alive "$1"
}

# stats_daemon_pid: from STATS (read_stats), the vramfs process that exits
# last when the mount goes, which is the one to wait for: the server ("pid
# N"), or with failover ("failover 1") the keeper ("keeper_pid N"), which
# holds the connection and outlives every server, unless it died
# ("keeper_alive 0").  Nothing when .stats names none.
stats_daemon_pid() {
  local pid=${STATS[pid]:-}
  if [ "${STATS[failover]:-0}" = 1 ] && [ "${STATS[keeper_alive]:-0}" = 1 ]; then
    pid=${STATS[keeper_pid]:-}
  fi
  [[ $pid =~ ^[0-9]+$ ]] && echo "$pid"
  return 0
}

# daemon_pid MOUNTPOINT: the pid of the vramfs daemon serving MOUNTPOINT
# (with failover, its keeper: see stats_daemon_pid); nothing when none runs.
# The daemon names itself in .stats; only when .stats does not answer (the
# mount is gone or hangs) is the daemon looked for by its command line,
# which can also match a daemon of an earlier mount at the same place that
# is still exiting (a keeper comes first: it is older than its server).
daemon_pid() {
  local pid
  if read_stats "$1"; then
    pid=$(stats_daemon_pid)
    if [ -n "$pid" ]; then
      alive "$pid" && echo "$pid"
      return 0
    fi
  fi
  daemon_pid_by_cmdline "$1"
}

# vramfs_processes MOUNTPOINT: "PID PARENT" for each live process named
# vramfs with MOUNTPOINT among its arguments, PARENT being 1 when the
# parent is another of them (a keeper's server), 0 when not.
vramfs_processes() {
  local proc comm arg pid ppid
  local -A found=()
  for proc in /proc/[0-9]*; do
    read_line comm "$proc/comm" || continue
    [ "$comm" = vramfs ] || continue
    while IFS= read -r -d '' arg; do
      if [ "$arg" = "$1" ]; then
        pid=${proc#/proc/}
        alive "$pid" && found[$pid]=1
        break
      fi
    done 2>/dev/null <"$proc/cmdline"
  done
  for pid in "${!found[@]}"; do
    ppid=$(awk '{ print $4 }' "/proc/$pid/stat" 2>/dev/null) || continue
    echo "$pid $([ -n "${found[$ppid]:-}" ] && echo 1 || echo 0)"
  done
}

# daemon_pid_by_cmdline MOUNTPOINT: a live process named vramfs with
# MOUNTPOINT among its arguments; of a keeper and its server (failover),
# the keeper, whose parent is no such process.
daemon_pid_by_cmdline() {
  vramfs_processes "$1" | awk '$2 == 0 { print $1; exit }'
}

# server_pid_by_cmdline MOUNTPOINT: the process that serves MOUNTPOINT's
# requests, found as daemon_pid_by_cmdline finds it: with failover the
# keeper's server, the one whose parent is the keeper; else the daemon.
server_pid_by_cmdline() {
  vramfs_processes "$1" | sort -k2,2nr | awk 'NR == 1 { print $1 }'
}

# stopped PID: whether PID is stopped (SIGSTOP, or a debugger).
stopped() {
  local stat
  read_line stat "/proc/$1/stat" || return 1
  stat=${stat##*) }
  [[ ${stat%% *} == [tT] ]]
}

# unmount MOUNTPOINT: umount under a deadline, retried for 5 s while it is
# busy (umount fails with EBUSY for a moment after a loop device lets go).
# Succeeds when the mount is gone; otherwise says why and fails.
unmount() {
  local i out
  for ((i = 0; i < 20; i++)); do
    is_mounted "$1" || return 0
    out=$(bounded umount "$1" 2>&1) && return 0
    [ -n "$out" ] || out="umount $1: no answer within $VRAMFS_PROBE_TIMEOUT s"
    sleep 0.25
  done
  is_mounted "$1" || return 0
  echo "$out" >&2
  return 1
}

# --- cgroups --------------------------------------------------------------------------

# cgroup_kill DIR: SIGKILL for every process in the cgroup DIR, until it is
# empty (10 s at most).
cgroup_kill() {
  local i pid procs
  [ -f "$1/cgroup.procs" ] || return 0
  for ((i = 0; i < 50; i++)); do
    # cgroup files have no size: read them.
    { procs=$(<"$1/cgroup.procs"); } 2>/dev/null || return 0
    [ -n "$procs" ] || return 0
    for pid in $procs; do kill -9 "$pid" 2>/dev/null || true; done
    sleep 0.1
  done
  echo "cgroup $1 still has processes: $(xargs <"$1/cgroup.procs")" >&2
  return 1
}

# cgroup_remove DIR: rmdir, retried for a second while the kernel lets go
# of processes that just died.
cgroup_remove() {
  local i
  for ((i = 0; i < 10; i++)); do
    [ -d "$1" ] || return 0
    rmdir "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# --- kernel log --------------------------------------------------------------------------

# kernel_log_mark: the stamp of the kernel log's last line (0 when it
# cannot be read), for kernel_log_since.  The log's own stamps, not
# /proc/uptime: the clock that stamps it stops while the machine sleeps.
kernel_log_mark() {
  dmesg 2>/dev/null | awk '/^\[ *[0-9]+\.[0-9]+\]/ { s = $0 } END {
    sub(/^\[ */, "", s); sub(/\].*/, "", s); print (s == "" ? 0 : s) }'
}

# kernel_log_since MARK: the kernel log lines stamped after MARK.  Fails
# when the log cannot be read (dmesg_restrict).
kernel_log_since() {
  local log
  log=$(dmesg 2>/dev/null) || return 1
  [ -n "$log" ] || return 1
  awk -v t="$1" '/^\[ *[0-9]+\.[0-9]+\]/ { s = $0; sub(/^\[ */, "", s); sub(/\].*/, "", s)
    if (s + 0 > t + 0) print }' <<<"$log"
}

# loop_read_errors /dev/loopN LOG: how many lines of LOG report a failed
# read of the swap on that loop device.
loop_read_errors() {
  local majmin
  read_line majmin "/sys/block/${1#/dev/}/dev" || majmin=x
  grep -cE "I/O error, dev ${1#/dev/}, .*READ|Read-error on swap-device \\($majmin:" <<<"$2" || true
}

# --- teardown ------------------------------------------------------------------------------

# teardown: reads "KIND ARGUMENT" lines on stdin and undoes them in the safe
# order, newest first within a kind:
#   kill DIR     SIGKILL for the processes of cgroup DIR
#   cgroup DIR   the same, and rmdir DIR at the end
#   swap DEV     swapoff DEV if it is swap
#   loop DEV     losetup -d DEV if it holds a file
#   mount PATH   unmount PATH if it is mounted (umount -l if that fails)
# Says what failed on stderr, goes on with the rest, and then fails.
teardown() {
  local kind arg rc=0 item
  local -a kills=() swaps=() loops=() mounts=() cgroups=()
  while read -r kind arg; do
    [ -n "$arg" ] || continue
    case $kind in
      kill) kills=("$arg" ${kills[@]+"${kills[@]}"}) ;;
      cgroup) kills=("$arg" ${kills[@]+"${kills[@]}"}); cgroups=("$arg" ${cgroups[@]+"${cgroups[@]}"}) ;;
      swap) swaps=("$arg" ${swaps[@]+"${swaps[@]}"}) ;;
      loop) loops=("$arg" ${loops[@]+"${loops[@]}"}) ;;
      mount) mounts=("$arg" ${mounts[@]+"${mounts[@]}"}) ;;
      *) echo "teardown: unknown kind $kind" >&2; rc=1 ;;
    esac
  done
  for item in ${kills[@]+"${kills[@]}"}; do cgroup_kill "$item" || rc=1; done
  for item in ${swaps[@]+"${swaps[@]}"}; do
    swap_active "$item" || continue
    swapoff "$item" || { echo "swapoff $item failed" >&2; rc=1; }
  done
  for item in ${loops[@]+"${loops[@]}"}; do
    [ -e "/sys/block/${item#/dev/}/loop/backing_file" ] || continue
    loop_detach "$item" || rc=1
  done
  for item in ${mounts[@]+"${mounts[@]}"}; do
    unmount "$item" 2>/dev/null && continue
    bounded umount -l "$item" || { echo "umount $item failed" >&2; rc=1; }
  done
  for item in ${cgroups[@]+"${cgroups[@]}"}; do
    cgroup_remove "$item" || { echo "rmdir $item failed" >&2; rc=1; }
  done
  return "$rc"
}

# --- vramswap's settings: built-in defaults < configuration file < options ---------

DEFAULT_DIR=/run/vramswap
# Four loop devices per GPU: on the H100 machine the one-thread swap
# workload gained 9-13% over one in both runs that compared them, and the
# 8-thread one moved within the noise (docs/performance.md).
DEFAULT_STRIPES=4 MAX_STRIPES=16
# Crash survival (vramfs -o failover) unless --no-failover or FAILOVER=no.
DEFAULT_FAILOVER=yes

# Each check prints what is wrong and fails; empty output means valid.

check_size() { # VALUE ALLOW_PERCENT
  if [[ $1 =~ ^[0-9]+%$ ]]; then
    [ "$2" = yes ] || { echo "a percentage is not allowed here"; return 1; }
    local pct=${1%\%}
    [[ $pct =~ ^0*([1-9][0-9]?|100)$ ]] || { echo "a percentage must be from 1% to 100%"; return 1; }
    return 0
  fi
  [[ $1 =~ ^[0-9]+([KkMmGgTtPp](B|iB)?)?$ ]] ||
    { echo "expected a size such as 4G, 512M or 50%"; return 1; }
  [[ $1 =~ ^0+([^0-9]|$) ]] && { echo "must be greater than 0"; return 1; }
  return 0
}

# check_number VALUE MIN MAX
check_number() {
  if [[ $1 =~ ^[0-9]+$ ]] && [ "${#1}" -le 6 ] && [ "$((10#$1))" -ge "$2" ] &&
    [ "$((10#$1))" -le "$3" ]; then
    return 0
  fi
  echo "expected a number from $2 to $3"
  return 1
}

check_gpu() {
  [ "$1" = all ] || [[ $1 =~ ^[0-9]{1,4}(,[0-9]{1,4})*$ ]] ||
    { echo "expected a GPU index, indexes separated by commas, or all"; return 1; }
}

check_either() { # VALUE A B
  [ "$1" = "$2" ] || [ "$1" = "$3" ] || { echo "expected $2 or $3"; return 1; }
}

check_dir() {
  [[ $1 == /* ]] || { echo "expected an absolute path"; return 1; }
  [[ $1 != *[$'\t\n']* ]] || { echo "a tab or a newline is not allowed in it"; return 1; }
}

CONFIG_KEYS="GPU SIZE PRIORITY DISCARD BACKEND CACHE STRIPES TRANSPORT QUEUE_DEPTH FAILOVER STANDBY DIR ELASTIC"
# FROM[KEY]: where a setting that is not the built-in default came from
# ("FILE:LINE" or "--option"), for messages about settings that clash.
declare -A SET=() FROM=()
# settings_defaults: SET holds the built-in defaults, FROM nothing.
settings_defaults() {
  SET=([GPU]=all [SIZE]="" [PRIORITY]=100 [DISCARD]=no [BACKEND]=cuda
       [CACHE]="" [DIR]=$DEFAULT_DIR [STRIPES]=$DEFAULT_STRIPES
       [TRANSPORT]="" [QUEUE_DEPTH]="" [FAILOVER]=$DEFAULT_FAILOVER [STANDBY]=yes
       [ELASTIC]="")
  FROM=()
}
settings_defaults

check_setting() { # KEY VALUE: prints the problem and fails
  case $1 in
    GPU) check_gpu "$2" ;;
    SIZE) check_size "$2" yes ;;
    CACHE) check_size "$2" no ;;
    PRIORITY) check_number "$2" 0 32767 ;;
    DISCARD) check_either "$2" yes no ;;
    BACKEND) check_either "$2" cuda host ;;
    STRIPES) check_number "$2" 1 "$MAX_STRIPES" ;;
    TRANSPORT) check_either "$2" dev uring ;;
    FAILOVER | STANDBY) check_either "$2" yes no ;;
    # vramfs's own range (queue_depth=): a value it would refuse is refused
    # here, before anything is made.
    QUEUE_DEPTH) check_number "$2" 1 128 ;;
    DIR) check_dir "$2" ;;
    # The VRAM to keep free for other programs (elastic mode).
    ELASTIC) check_size "$2" yes ;;
  esac
}

# read_config FILE: KEY=value lines into SET and FROM; blank lines and
# lines starting with # are ignored.  The file is parsed, never sourced: it
# is read by root at boot.  A line that is not right is skipped, the lines
# after it are still read, and read_config fails: CONFIG_ERRORS has one
# line per bad line of the file, naming it and saying why, CONFIG_ERROR the
# first.  start refuses such a file; stop and status must still work.
CONFIG_ERROR='' CONFIG_ERRORS=''
# shellcheck disable=SC2034 # SET, FROM and CONFIG_ERROR are vramswap's to read
read_config() {
  local file=$1 line key value n=0 problem error
  CONFIG_ERROR='' CONFIG_ERRORS=''
  # No file, or /dev/null: the built-in defaults.
  if [ ! -e "$file" ] || [ "$file" = /dev/null ]; then return 0; fi
  if [ ! -f "$file" ] || [ ! -r "$file" ]; then
    CONFIG_ERROR="cannot read $file" CONFIG_ERRORS="cannot read $file"
    return 1
  fi
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line=${line%$'\r'}
    line=${line#"${line%%[![:space:]]*}"}
    line=${line%"${line##*[![:space:]]}"}
    case $line in '' | '#'*) continue ;; esac
    error=''
    if [[ ! $line =~ ^([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=[[:space:]]*(.*)$ ]]; then
      error="expected KEY=value: $line"
    else
      key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
      if [[ $value =~ ^\"(.*)\"$ ]] || [[ $value =~ ^\'(.*)\'$ ]]; then
        value=${BASH_REMATCH[1]}
      fi
      if [[ " $CONFIG_KEYS " != *" $key "* ]]; then
        error="unknown key $key (known: $CONFIG_KEYS)"
      # An empty value means the built-in default.
      elif [ -n "$value" ] && ! problem=$(check_setting "$key" "$value"); then
        error="bad $key value '$value': $problem"
      elif [ -n "$value" ]; then
        SET[$key]=$value
        FROM[$key]=$file:$n
      fi
    fi
    [ -n "$error" ] || continue
    [ -n "$CONFIG_ERROR" ] || CONFIG_ERROR="$file:$n: $error"
    CONFIG_ERRORS+="$file:$n: $error"$'\n'
  done <"$file"
  [ -z "$CONFIG_ERROR" ]
}

# size_bytes SIZE: SIZE (a size that check_size takes) in bytes; nothing
# for a percentage, whose bytes only vramfs knows, or for no size.
size_bytes() {
  local n unit
  [[ $1 =~ ^([0-9]+)([KkMmGgTtPp]?)(B|iB)?$ ]] || return 0
  n=$((10#${BASH_REMATCH[1]})) unit=${BASH_REMATCH[2]^^}
  case $unit in
    K) n=$((n << 10)) ;; M) n=$((n << 20)) ;; G) n=$((n << 30)) ;;
    T) n=$((n << 40)) ;; P) n=$((n << 50)) ;;
  esac
  echo "$n"
}
