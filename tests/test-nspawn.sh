#!/bin/bash
# tests/test-nspawn.sh [BUILD_DIR]
#
# The Debian package's units under a real systemd: a minimal Debian booted
# with systemd-nspawn --boot, the vramfs package built from this tree
# (BUILD_DIR/vramfs_*.deb, from "make deb") installed in it with dpkg while
# its systemd runs, and /etc/vramswap.conf set to BACKEND=host, SIZE=256M.
# It checks that installing started and enabled nothing but the sleep
# units; that systemctl start, status, stop and restart of vramswap.service
# turn VRAM swap (here RAM) on and off and leave nothing behind; that the
# order systemd loaded for each unit is what its unit file says; and, once
# enabled, that it comes up at boot after the GPU's units and before
# multi-user.target, and goes down at shutdown before them.  A stand-in
# nvidia-persistenced.service records whether any vramfs mount exists when
# it starts and stops.
#
# The tree comes from debootstrap (about a minute, network needed once) and
# is kept in BUILD_DIR/nspawn-SUITE, made again when the package's
# dependencies change; each run boots a copy of it.  The container shares
# the host's loop devices: this test runs under the integration tests'
# machine-wide lock.  It skips, saying why, without root, systemd-nspawn
# (systemd-container), debootstrap or the network for a first debootstrap,
# /dev/fuse or free loop devices; make check does not run it (it needs the
# package), .ci/run does, after "make deb".
#
# What a container needs, and why (systemd-nspawn(1)):
# - --register=no --keep-unit: without them nspawn asks systemd-machined and
#   the host's systemd, over D-Bus, for a scope of its own; where the host
#   does not run systemd that fails ("Failed to open system bus").  Here the
#   container goes into a cgroup this test makes (or, on a host with
#   systemd, a transient scope), which teardown removes.
# - --bind=/dev/fuse, /dev/loop-control and every /dev/loopN: the loop
#   devices are the host's (not namespaced); losetup --find must find a
#   free one whose node is there.  Without registration nspawn sets no
#   device cgroup policy, so no DeviceAllow= is needed.
# - --system-call-filter=@swap: nspawn's seccomp filter knowingly leaves
#   out swapon and swapoff and fails them with EPERM (no kernel message),
#   whatever the capabilities: "swapon: /dev/loop0: swapon failed:
#   Operation not permitted".  With @swap allowed, CAP_SYS_ADMIN (kept by
#   default) is enough.
# - --capability=CAP_IPC_LOCK: not in nspawn's default set, and without it
#   the same filter fails mlock and mlockall (@memlock) with EPERM whatever
#   LimitMEMLOCK= says: "vramfs: cannot lock memory: Operation not
#   permitted".  Root on a real machine has it.
: "${TESTS_DIR:=$(cd "$(dirname "$0")" && pwd)}"
# shellcheck source=tests/functions.sh
. "$TESTS_DIR/functions.sh"

started=$SECONDS
build=${1:-${TOP_BUILDDIR:-}}
[ -n "$build" ] || skip_optional "needs the package: make deb, then tests/test-nspawn.sh BUILD_DIR"
build=$(cd "$build" && pwd)
requires_root
command -v systemd-nspawn >/dev/null || skip "no systemd-nspawn (apt-get install systemd-container)"
command -v nsenter >/dev/null || skip "no nsenter (util-linux)"
requires_fuse
requires_loop
requires_swap
arch=$(dpkg --print-architecture 2>/dev/null) || skip "no dpkg: the package and the container are Debian's"
deb=$(find "$build" -maxdepth 1 -name "vramfs_*_$arch.deb" -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d ' ' -f 2-)
[ -n "$deb" ] || skip "no $build/vramfs_*_$arch.deb: run make deb there first"

# The host's Debian release, so that the package built here installs there.
suite=${VRAMFS_NSPAWN_SUITE:-$(. /etc/os-release && [ "${ID:-}" = debian ] && echo "${VERSION_CODENAME:-}")}
suite=${suite:-bookworm}
mirror=${VRAMFS_NSPAWN_MIRROR:-http://deb.debian.org/debian}
cache=$build/nspawn-$suite
# The tree: minbase with systemd as init, procps (pgrep), and what the
# package depends on (the first of each alternative), so that dpkg -i needs
# no network.
include=$({
  echo systemd-sysv procps | tr ' ' '\n'
  dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/ //g; /^$/d'
} | sort -u | paste -sd, -)
stamp="$suite $mirror $include"

# Loop devices: the container gets every node; vramswap needs 4 free ones
# (4 stripes).
free_loops=()
for node in /dev/loop[0-9]*; do
  [ -b "$node" ] && [ ! -e "/sys/block/${node#/dev/}/loop/backing_file" ] && free_loops+=("$node")
done
[ "${#free_loops[@]}" -ge 4 ] || skip "needs 4 free loop devices, has ${#free_loops[@]} (${free_loops[*]})"

# --- the tree ---------------------------------------------------------------

# make_tree: debootstraps the cached tree, unless it is there for this stamp.
make_tree() {
  [ "$(cat "$cache/.vramfs-stamp" 2>/dev/null)" != "$stamp" ] || return 0
  command -v debootstrap >/dev/null || skip "no debootstrap (apt-get install debootstrap)"
  wget -q -T 20 -t 1 -O /dev/null "$mirror/dists/$suite/Release" ||
    skip "cannot reach $mirror for debootstrap (set VRAMFS_NSPAWN_MIRROR; once made, the tree is kept in $cache)"
  local new=$cache.new t=$SECONDS
  rm -rf "$new" "$cache"
  # debootstrap mounts /proc and /sys in the tree while it works: should it
  # be stopped there, cleanup_first unmounts them before the folder goes.
  NEW_TREE=$new
  info "debootstrap $suite into $cache ($include)"
  debootstrap --variant=minbase --include="$include" "$suite" "$new" "$mirror" >"$new.log" 2>&1 || {
    tail -n 30 "$new.log"
    fail "debootstrap failed (the whole log: $new.log)"
  }
  echo "$stamp" >"$new/.vramfs-stamp"
  mv "$new" "$cache"
  rm -f "$new.log"
  NEW_TREE=
  info "debootstrap took $((SECONDS - t)) s"
}

# A stand-in for NVIDIA's persistence daemon, which vramswap.service is
# ordered after: it writes how many vramfs mounts there are when it starts
# and when it stops (both must be 0: vramswap starts after it and stops
# before it).  $$ is systemd's escape for $.
stand_in() {
  cat <<'EOF'
[Unit]
Description=Stand-in for nvidia-persistenced (vramfs test)

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'echo "start $$(grep -c " - fuse.vramfs " /proc/self/mountinfo)" >>/var/lib/vramfs-test.log'
ExecStop=/bin/sh -c 'echo "stop $$(grep -c " - fuse.vramfs " /proc/self/mountinfo)" >>/var/lib/vramfs-test.log'

[Install]
WantedBy=multi-user.target
EOF
}

# prepare_root: this run's copy of the tree, with the package to install
# and the stand-in, enabled.
prepare_root() {
  root=$(make_tempdir)/root
  mkdir "$root"
  cp -a "$cache/." "$root/"
  # A machine id of its own: the journal is kept across the two boots.
  tr -d - </proc/sys/kernel/random/uuid >"$root/etc/machine-id"
  cp "$deb" "$root/root/"
  stand_in >"$root/etc/systemd/system/nvidia-persistenced.service"
  mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
  ln -s ../nvidia-persistenced.service "$root/etc/systemd/system/multi-user.target.wants/"
}

# --- the container ----------------------------------------------------------

machine=vramfs-test-$$
# nspawn's runtime folders on the host, removed again (when empty) where
# this test made them.
made_run_dirs=()
for dir in /run/systemd/nspawn/propagate /run/systemd/nspawn/locks /run/systemd/nspawn /run/systemd; do
  [ -e "$dir" ] || made_run_dirs+=("$dir")
done
root=
NSPAWN_PID=
LEADER=
CGROUPS=()
SCOPE=
NEW_TREE=

# in_container COMMAND...: COMMAND in the container's namespaces (its files,
# its processes, its systemd), with a clean environment, killed after
# IN_TIMEOUT seconds (default 300).
in_container() {
  timeout "${IN_TIMEOUT:-300}" nsenter --target "$LEADER" --mount --uts --ipc --pid --cgroup -- \
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 SYSTEMD_COLORS=0 SYSTEMD_PAGER= "$@"
}

# make_cgroups: where the host does not run systemd, a cgroup of this test's
# under the one it is in, in each hierarchy nspawn uses (systemd's named one
# and cgroup2); nspawn puts itself and the container below.
make_cgroups() {
  local v1 v2 dir
  v1=$(sed -n 's/^[0-9]*:name=systemd://p' /proc/self/cgroup)
  v2=$(sed -n 's/^0:://p' /proc/self/cgroup)
  [ -z "$v1" ] || CGROUPS+=("/sys/fs/cgroup/systemd${v1%/}/$machine")
  for dir in /sys/fs/cgroup/unified /sys/fs/cgroup; do
    if [ -f "$dir/cgroup.controllers" ]; then CGROUPS+=("$dir${v2%/}/$machine"); break; fi
  done
  for dir in ${CGROUPS[@]+"${CGROUPS[@]}"}; do mkdir "$dir"; done
}

# boot_container LOG: boots the container, its console output and nspawn's messages
# in LOG, and waits until its systemd has finished booting.
boot_container() {
  local log=$1 i state t=$SECONDS node
  local -a args=(--quiet --boot --register=no --keep-unit --directory="$root" --machine="$machine"
    --console=passive --bind=/dev/fuse --bind=/dev/loop-control
    --capability=CAP_IPC_LOCK --system-call-filter=@swap)
  for node in /dev/loop[0-9]*; do args+=(--bind="$node"); done
  if [ -d /run/systemd/system ]; then
    SCOPE=$machine.scope
    setsid systemd-run --quiet --scope --unit="$machine" --property=Delegate=yes \
      systemd-nspawn "${args[@]}" >"$log" 2>&1 </dev/null &
  else
    [ "${#CGROUPS[@]}" -gt 0 ] || make_cgroups
    (
      for i in "${CGROUPS[@]}"; do echo "$BASHPID" >"$i/cgroup.procs"; done
      exec setsid systemd-nspawn "${args[@]}"
    ) >"$log" 2>&1 </dev/null &
  fi
  NSPAWN_PID=$!
  LEADER=
  for ((i = 0; i < 600; i++)); do
    alive "$NSPAWN_PID" || { cat "$log"; fail "systemd-nspawn exited"; }
    # nspawn's first child may be a helper that is gone a moment later:
    # the leader is the child that lives on as the container's systemd.
    if [ -n "$LEADER" ] && ! alive "$LEADER"; then LEADER=; fi
    [ -n "$LEADER" ] || LEADER=$(pgrep -P "$NSPAWN_PID" | head -n 1 || true)
    [ -z "$LEADER" ] || [ ! -S "/proc/$LEADER/root/run/systemd/private" ] || break
    sleep 0.1
  done
  if [ -z "$LEADER" ] || [ ! -S "/proc/$LEADER/root/run/systemd/private" ]; then
    cat "$log"
    fail "the container's systemd did not start within 60 s"
  fi
  state=$(IN_TIMEOUT=120 in_container systemctl is-system-running --wait) || true
  info "booted in $((SECONDS - t)) s: $state"
  if [ "$state" != running ]; then
    in_container systemctl --no-pager --failed || true
    in_container journalctl --no-pager -b -p warning || true
    fail "the container's systemd is $state, not running"
  fi
}

# shutdown_container: shuts the container down from inside, as an admin would, and
# waits for nspawn to exit.
shutdown_container() {
  local t=$SECONDS rc=0
  in_container systemctl --no-block poweroff
  wait_exit "$NSPAWN_PID" 120 || fail "the container did not power off within 120 s"
  wait "$NSPAWN_PID" || rc=$?
  [ "$rc" = 0 ] || fail "systemd-nspawn exited $rc"
  NSPAWN_PID=
  info "powered off in $((SECONDS - t)) s"
}

# take_off_swap: swapoff and losetup -d, from the host, of every bound loop
# device attached to a vramswap data file (free when this test began: under
# the lock, ours).  Done while the container's daemons still run, they
# serve the pages back.  Once the container's mount namespace is gone,
# /proc/swaps names such a device "/": swapoff is tried whatever it says.
take_off_swap() {
  local dev
  for dev in "${free_loops[@]}"; do
    [[ $(loop_backing "$dev") == */swapfile ]] || continue
    echo "--- teardown: swapoff and losetup -d $dev ($(loop_backing "$dev"))"
    swapoff "$dev" 2>/dev/null
    loop_detach "$dev"
  done
}

# Teardown, before the registered folders: vramswap stopped by systemd in
# the container, and where that fails, its swap taken off from the host;
# then the container shut down (killed when it does not), its cgroups
# removed, and an unfinished tree's mounts and files removed.
cleanup_first() {
  local dir
  if [ -n "$NSPAWN_PID" ] && alive "$NSPAWN_PID"; then
    echo "--- teardown: systemctl stop vramswap in $machine"
    IN_TIMEOUT=120 in_container systemctl stop vramswap.service
    take_off_swap
    echo "--- teardown: shutdown of $machine"
    kill -TERM "$NSPAWN_PID"
    if ! wait_exit "$NSPAWN_PID" 120; then
      echo "--- teardown: $machine did not shut down within 120 s; killing it"
      kill -KILL "$LEADER" "$NSPAWN_PID"
      wait_exit "$NSPAWN_PID" 10
    fi
    wait "$NSPAWN_PID" 2>/dev/null
  fi
  if [ -n "$SCOPE" ] && systemctl -q is-active "$SCOPE" 2>/dev/null; then systemctl stop "$SCOPE"; fi
  for dir in ${CGROUPS[@]+"${CGROUPS[@]}"}; do
    while read -r dir; do
      cgroup_kill "$dir"
      cgroup_remove "$dir" || echo "cannot remove the cgroup $dir" >&2
    done < <(find "$dir" -depth -type d 2>/dev/null)
  done
  # A container that died by itself.
  take_off_swap
  # What nspawn removes itself when it exits, not when it is killed: its
  # propagation folder, and its lock on the tree.
  if [ -n "$root" ] && [ -d "$root" ]; then
    rm -f "/run/systemd/nspawn/locks/inode-$(stat -c %d:%i "$root")"
  fi
  awk -v t="/run/systemd/nspawn/propagate/$machine" '$5 == t || index($5, t "/") == 1 { f = 1 } END { exit f }' \
    /proc/self/mountinfo && rm -rf "/run/systemd/nspawn/propagate/$machine"
  for dir in ${made_run_dirs[@]+"${made_run_dirs[@]}"}; do rmdir "$dir" 2>/dev/null; done
  if [ -n "$NEW_TREE" ]; then
    awk -v t="$NEW_TREE/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | sort -r | xargs -r -n 1 umount -l
    rm -rf "$NEW_TREE" "$NEW_TREE.log"
  fi
}

# --- checks -----------------------------------------------------------------

vramfs_pids() { in_container pgrep -x vramfs | xargs; }
vramfs_mounts() { in_container grep -c ' - fuse\.vramfs ' /proc/self/mountinfo || true; }
# Our swap: the bound loop devices that are swap now.
our_swaps() {
  local dev
  for dev in "${free_loops[@]}"; do swap_active "$dev" && echo "$dev"; done
  return 0
}
show() { in_container systemctl show -p "$2" --value "$1"; }

# unit_key UNIT KEY: the values of KEY in UNIT's installed file, one a line.
unit_key() {
  sed -n "s/^$2=//p" "$root/lib/systemd/system/$1" | tr ' ' '\n' | sed '/^$/d'
}

# in_list WORD LIST...: whether WORD is one of the words of LIST.
in_list() { [[ " $(echo "${*:2}" | xargs) " == *" $1 "* ]]; }

# expect_order UNIT KEY [PROPERTY]: every unit that UNIT's file names in KEY
# is in systemd's PROPERTY (default KEY) of UNIT.
expect_order() {
  local unit=$1 key=$2 prop=${3:-$2} values name
  values=$(show "$unit" "$prop")
  while read -r name; do
    in_list "$name" "$values" || fail "$unit: its file says $key=$name, systemd has $prop=$values"
  done < <(unit_key "$unit" "$key")
  echo "ok: $unit $prop=$values"
}

# expect_gone WHEN: none of the bound loop devices is swap or attached.
expect_gone() {
  local dev
  [ -z "$(our_swaps)" ] || fail "$1: swap left on $(our_swaps | xargs)"
  for dev in "${free_loops[@]}"; do
    [ -z "$(loop_backing "$dev" 2>/dev/null)" ] || fail "$1: $dev is attached to $(loop_backing "$dev")"
  done
}

# expect_off WHEN: no vramswap anywhere: unit inactive (not failed), no
# daemon, mount, swap or attached loop device.
expect_off() {
  local state
  state=$(show vramswap.service ActiveState)
  [ "$state" = inactive ] || fail "$1: vramswap.service is $state"
  [ -z "$(vramfs_pids)" ] || fail "$1: vramfs runs: $(vramfs_pids)"
  [ "$(vramfs_mounts)" = 0 ] || fail "$1: vramfs mounts: $(in_container grep fuse.vramfs /proc/self/mountinfo)"
  ! in_container test -e /run/vramswap || fail "$1: /run/vramswap is left"
  expect_gone "$1"
  echo "ok: $1: nothing left"
}

# expect_on WHEN: vramswap.service active, with its daemons in its cgroup,
# and its swap on what vramswap status shows.
expect_on() {
  local out pid loops
  [ "$(show vramswap.service ActiveState)" = active ] || fail "$1: vramswap.service is $(show vramswap.service ActiveState)"
  out=$(in_container systemctl --no-pager --full status vramswap.service) || fail "$1: systemctl status exited $?: $out"
  echo "$out"
  grep -q 'Active: active (exited)' <<<"$out" || fail "$1: systemctl status does not show it active"
  grep -q 'vramfs vramswap /run/vramswap/gpu0' <<<"$out" || fail "$1: systemctl status shows no vramfs daemon"
  [ -n "$(vramfs_pids)" ] || fail "$1: no vramfs process"
  for pid in $(vramfs_pids); do
    in_container grep -q '/system.slice/vramswap.service$' "/proc/$pid/cgroup" ||
      fail "$1: vramfs $pid is not in vramswap.service's cgroup: $(in_container cat "/proc/$pid/cgroup")"
  done
  out=$(in_container vramswap status) || fail "$1: vramswap status exited $?: $out"
  echo "$out"
  loops=$(awk '$1 == 0 && $2 == "host" && $6 == "256M" && $NF == "active" { print $4 }' <<<"$out")
  [ -n "$loops" ] || fail "$1: vramswap status shows no active 256M host swap"
  [ "$(echo "${loops//,/ }" | xargs -n 1 | sort | xargs)" = "$(our_swaps | sort | xargs)" ] ||
    fail "$1: vramswap status shows $loops, the swap is on $(our_swaps | xargs)"
  echo "ok: $1: active, swap on $loops"
}

# unit VERB: systemctl VERB vramswap.service; when it fails, the unit's
# journal says why.
unit() {
  in_container systemctl "$1" vramswap.service && return 0
  in_container journalctl --no-pager -q -u vramswap.service | tail -n 30
  fail "systemctl $1 vramswap.service failed"
}

# Timestamps in microseconds since boot.
usec() { show "$1" "$2TimestampMonotonic"; }

# --- the test ---------------------------------------------------------------

make_tree
prepare_root
info "boot $suite with systemd-nspawn"
boot_container "${root%/root}/boot1.log"

info "dpkg -i $(basename "$deb"), its systemd running"
in_container dpkg -i "/root/$(basename "$deb")"
# shellcheck disable=SC2016 # dpkg-query's format, not the shell's
[ "$(in_container dpkg-query -W -f '${Status}' vramfs)" = "install ok installed" ] || fail "vramfs is not installed"
[ "$(in_container systemctl is-enabled vramswap.service)" = disabled ] ||
  fail "installing enabled vramswap.service: $(in_container systemctl is-enabled vramswap.service)"
[ -z "$(in_container journalctl -q -o cat -u vramswap.service)" ] ||
  fail "installing started vramswap.service: $(in_container journalctl -q -u vramswap.service)"
expect_off "after installing"
for unit in vramswap-suspend.service vramswap-hibernate.service; do
  [ "$(in_container systemctl is-enabled "$unit")" = enabled ] || fail "installing did not enable $unit"
  [ "$(show "$unit" ActiveState)" = inactive ] || fail "installing started $unit"
done
echo "ok: installed; vramswap.service disabled and never started, the sleep units enabled and not started"

info "the order systemd loaded"
for unit in vramswap.service vramswap-suspend.service vramswap-hibernate.service; do
  expect_order "$unit" After
  expect_order "$unit" Before
done
for unit in vramswap-suspend.service vramswap-hibernate.service; do
  expect_order "$unit" RequiredBy
  for sleep_unit in $(unit_key "$unit" RequiredBy); do
    in_list "$unit" "$(show "$sleep_unit" Requires)" || fail "$sleep_unit does not require $unit"
    in_list "$unit" "$(show "$sleep_unit" After)" || fail "$sleep_unit is not ordered after $unit"
  done
done

info "BACKEND=host, SIZE=256M in /etc/vramswap.conf"
in_container sh -c 'printf "BACKEND=host\nSIZE=256M\n" >>/etc/vramswap.conf'

info "systemctl start vramswap"
unit start
expect_on "after start"

info "systemctl stop vramswap"
unit stop
expect_off "after stop"

info "systemctl restart vramswap"
unit start
before=$(vramfs_pids)
unit restart
expect_on "after restart"
[ "$(vramfs_pids)" != "$before" ] || fail "restart kept the same daemons ($before)"
in_container journalctl --no-pager -q -o cat -u vramswap.service | tail -n 5

info "systemctl enable vramswap; power off with its swap on"
unit enable
expect_order vramswap.service WantedBy
in_list vramswap.service "$(show multi-user.target Wants)" || fail "multi-user.target does not want vramswap.service"
shutdown_container
expect_gone "after the shutdown"

info "boot again: vramswap at boot"
boot_container "${root%/root}/boot2.log"
expect_on "after boot"
[ "$(usec nvidia-persistenced.service ActiveEnter)" -le "$(usec vramswap.service InactiveExit)" ] ||
  fail "vramswap.service started before nvidia-persistenced.service was up"
[ "$(usec vramswap.service ActiveEnter)" -le "$(usec multi-user.target ActiveEnter)" ] ||
  fail "multi-user.target was reached before vramswap.service was up"
echo "ok: nvidia-persistenced, then vramswap, then multi-user.target"
shutdown_container
expect_gone "after the second shutdown"

# What the stand-in saw: no vramfs mount when it started or stopped, in
# both boots.
log=$(xargs <"$root/var/lib/vramfs-test.log")
echo "nvidia-persistenced saw: $log"
[ "$log" = "start 0 stop 0 start 0 stop 0" ] || fail "vramswap was up while nvidia-persistenced was not: $log"
# Both shutdowns stopped vramswap.service cleanly.
journal=$(journalctl --no-pager -q -D "$root/var/log/journal" -o short-monotonic -u vramswap.service)
[ "$(grep -c 'Stopped vramswap.service' <<<"$journal")" = 4 ] || {
  echo "$journal"
  fail "the journal does not show 4 stops of vramswap.service (stop, restart, two shutdowns)"
}
! grep -qi 'failed' <<<"$journal" || { echo "$journal"; fail "the journal shows a failure of vramswap.service"; }

echo "PASS ($((SECONDS - started)) s)"
