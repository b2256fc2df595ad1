# shellcheck shell=bash
# vramswap-status.sh: "vramswap status", "status --json" and "metrics": the
# records of vramswap-state.sh as a table, as one JSON object, and in the
# Prometheus text format.  Sourced by vramswap after vramswap-lib.sh and
# vramswap-state.sh.

# joined SEPARATOR LIST [VAR]: the blank-separated words of LIST joined by
# SEPARATOR, or '-'.
joined() {
  local words_
  read -r -a words_ <<<"$2"
  local IFS=$1
  if [ "${#words_[@]}" -eq 0 ]; then answer "${3:-}" -; else answer "${3:-}" "${words_[*]}"; fi
}

# hit_rate R [VAR]: the cache's hit rate of record R as a percentage, or
# nothing.
hit_rate() {
  local hits_=${R_HITS[$1]} misses_=${R_MISSES[$1]}
  if [ -n "$hits_" ] && [ -n "$misses_" ] && [ $((hits_ + misses_)) -gt 0 ]; then
    answer "${2:-}" "$((hits_ * 100 / (hits_ + misses_)))"
  elif [ -n "${2:-}" ]; then
    printf -v "$2" ''
  fi
}

# A row is built in variables, not with $(...): each of those is a fork.
status_table() {
  local r f row wm=10 wl=10 rows=() dio dios rate loops prios size max used held notes
  local -A seen
  for r in "${!R_GPU[@]}"; do
    # One DIO value when every stripe agrees.
    dios=${R_DIOS[$r]}
    seen=()
    for dio in ${R_DIOS[$r]}; do seen[$dio]=1; done
    [ "${#seen[@]}" != 1 ] || dios=${!seen[*]}
    hit_rate "$r" rate
    joined , "${R_LOOPS[$r]}" loops
    joined , "$dios" dios
    joined , "${R_PRIOS[$r]}" prios
    iec "${R_SIZE[$r]:--}" size
    iec "${R_MAX[$r]:--}" max
    iec "${R_USED[$r]:--}" used
    iec "${R_HELD[$r]:--}" held
    rows+=("${R_GPU[$r]}|${R_BACKEND[$r]:--}|${R_MNT[$r]}|$loops|$dios|$size|$max|$used|$prios|$held|${rate:--}${rate:+%}|${R_ERRORS[$r]:--}|${R_RESTARTS[$r]:--}|${R_STATE[$r]}")
  done
  for row in "${rows[@]}"; do
    IFS='|' read -r -a f <<<"$row"
    [ "${#f[2]}" -le "$wm" ] || wm=${#f[2]}
    [ "${#f[3]}" -le "$wl" ] || wl=${#f[3]}
  done
  local fmt="%-4s %-8s %-${wm}s %-${wl}s %-3s %6s %6s %6s %5s %6s %5s %6s %8s %s\n"
  # shellcheck disable=SC2059 # the format is built above
  printf "$fmt" GPU BACKEND MOUNTPOINT LOOP DIO SIZE MAX USED PRIO HELD HITS ERRORS RESTARTS STATE
  for row in "${rows[@]}"; do
    IFS='|' read -r -a f <<<"$row"
    # shellcheck disable=SC2059
    printf "$fmt" "${f[@]}"
  done
  printf -v notes '%s' "${R_ADVICE[@]}" "${R_RESIZE[@]}" "${R_ELASTIC[@]}"
  if [ -n "$notes" ]; then
    echo
    for r in "${!R_ADVICE[@]}"; do
      [ -z "${R_ADVICE[$r]}" ] || echo "${R_ADVICE[$r]}"
      [ -z "${R_RESIZE[$r]}" ] || echo "gpu${R_GPU[$r]}: $(resize_text "${R_RESIZE[$r]}")"
      [ -z "${R_ELASTIC[$r]}" ] || echo "gpu${R_GPU[$r]}: $(elastic_text "${R_ELASTIC[$r]}")"
    done
  fi
  standby_notes
}

# standby_notes: a line for each failover swap whose standby server is not
# ready (still starting after a takeover, or impossible on its GPU); one
# turned off on purpose needs no word.
standby_notes() {
  local r standby
  for r in "${!R_GPU[@]}"; do
    [ "${R_FAILOVER[$r]}" = 1 ] || continue
    stat_of "$r" standby standby
    case $standby in
      starting) echo "gpu${R_GPU[$r]}: the standby server is starting: until it is ready a takeover pauses the swap about 0.3 s" ;;
      unavailable) echo "gpu${R_GPU[$r]}: no standby server can run (the GPU admits one process at a time): a takeover pauses the swap about 0.3 s" ;;
    esac
  done
}

# resize_text "TIME FROM TO REASON": the last resize in words.
resize_text() {
  local time from to reason
  read -r time from to reason <<<"$1"
  echo "last resized $(date -d "@$time" '+%F %T' 2>/dev/null || echo "at $time"), from $(mib "$from") MiB to $(mib "$to") MiB: $reason"
}

# elastic_text "HEADROOM FREE TOTAL TIME NOTE": the watcher in words.
elastic_text() {
  local headroom free total time note
  read -r headroom free total time note <<<"$1"
  echo "elastic: keeps $(mib "$headroom") MiB of VRAM free; $(mib "$free") of $(mib "$total") MiB free at $(date -d "@$time" '+%T' 2>/dev/null || echo "$time"); $note"
}

# --- JSON ---

# The writers print to standard output and are never called in a $(...):
# a command substitution forks, and a status of a few stripes made hundreds
# of them (a second or more of status --json and metrics).

# json_str TEXT: TEXT as a JSON string.
json_str() {
  local s=$1 out='' c i code
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  s=${s//$'\r'/\\r}
  # Any other control character, as \u00XX.
  if [[ $s == *[$'\x01'-$'\x1f']* ]]; then
    for ((i = 0; i < ${#s}; i++)); do
      c=${s:i:1}
      if [[ $c == [$'\x01'-$'\x1f'] ]]; then
        printf -v code '\\u%04x' "'$c"
        out+=$code
      else
        out+=$c
      fi
    done
    s=$out
  fi
  printf '"%s"' "$s"
}

# json_value TEXT: a number as a JSON number, nothing as null, else a string.
json_value() {
  if [ -z "$1" ]; then
    printf null
  elif [[ $1 =~ ^-?(0|[1-9][0-9]*)$ ]]; then
    printf '%s' "$1"
  else
    json_str "$1"
  fi
}

# json_list LIST: the blank-separated words of LIST as a JSON array.
json_list() {
  local sep='' w words
  read -r -a words <<<"$1"
  printf '['
  for w in ${words[@]+"${words[@]}"}; do printf '%s' "$sep"; json_value "$w"; sep=', '; done
  printf ']'
}

# json_bool 1|0|OTHER: true, false or null.
json_bool() {
  case $1 in 1) printf true ;; 0) printf false ;; *) printf null ;; esac
}

# member KEY WRITER ARGS...: ', "KEY": ' and the value WRITER ARGS prints.
member() {
  printf ', "%s": ' "$1"
  "${@:2}"
}

# status_json [ERROR]: every record as one JSON object; ERROR (a sentence)
# says what kept status from seeing everything.
status_json() {
  local r sep='' key value ssep
  printf '{"version": 1, "vramswap": '
  json_str "$VERSION"
  printf ', "active": %s' "$ACTIVE"
  member error json_value "${1:-}"
  printf ', "swaps": ['
  for r in "${!R_GPU[@]}"; do
    printf '%s\n  {"gpu": %s' "$sep" "${R_GPU[$r]}"
    member backend json_value "${R_BACKEND[$r]}"
    member mountpoint json_str "${R_MNT[$r]}"
    member loops json_list "${R_LOOPS[$r]}"
    member dio json_list "${R_DIOS[$r]}"
    member size_bytes json_value "${R_SIZE[$r]}"
    member used_bytes json_value "${R_USED[$r]}"
    member priority json_list "${R_PRIOS[$r]}"
    member held_bytes json_value "${R_HELD[$r]}"
    member hit_rate_percent json_value "$(hit_rate "$r")"
    member errors json_value "${R_ERRORS[$r]}"
    member failover json_bool "${R_FAILOVER[$r]}"
    member restarts json_value "${R_RESTARTS[$r]}"
    member state json_str "${R_STATE[$r]}"
    member advice json_value "${R_ADVICE[$r]}"
    member max_size_bytes json_value "${R_MAX[$r]}"
    member last_resize resize_json "${R_RESIZE[$r]}"
    member elastic elastic_json "${R_ELASTIC[$r]}"
    printf ', "stats": {'
    ssep=''
    while read -r key value; do
      [ -n "$key" ] || continue
      printf '%s' "$ssep"
      json_str "$key"
      printf ': '
      json_value "$value"
      ssep=', '
    done <<<"${R_STATS[$r]}"
    printf '}}'
    sep=,
  done
  [ -z "$sep" ] || echo
  printf ']}\n'
}

# resize_json "TIME FROM TO REASON": the last resize as an object, or null.
resize_json() {
  local time from to reason
  [ -n "$1" ] || { printf null; return 0; }
  read -r time from to reason <<<"$1"
  printf '{"time": '
  json_value "$time"
  member from_bytes json_value "$from"
  member to_bytes json_value "$to"
  member reason json_str "$reason"
  printf '}'
}

# elastic_json "HEADROOM FREE TOTAL TIME NOTE": the watcher as an object,
# or null.
elastic_json() {
  local headroom free total time note
  [ -n "$1" ] || { printf null; return 0; }
  read -r headroom free total time note <<<"$1"
  printf '{"headroom_bytes": '
  json_value "$headroom"
  member free_bytes json_value "$free"
  member total_bytes json_value "$total"
  member time json_value "$time"
  member note json_str "$note"
  printf '}'
}

# --- the Prometheus text format (node_exporter's textfile collector) ---

# prom_label VAR TEXT: TEXT escaped for a label value, into VAR.
prom_label() {
  local s=${2//\\/\\\\}
  s=${s//\"/\\\"}
  printf -v "$1" '%s' "${s//$'\n'/\\n}"
}

# metric NAME TYPE HELP FIELD: one family, a sample for each record whose
# FIELD (an R_ array, a .stats key as stats:KEY, or the Nth word of the last
# resize or of the watcher's reading as resize:N, elastic:N) is known.
# metrics_text fills LABELS and STAT first.
metric() {
  local name=$1 type=$2 help=$3 field=$4 r value ref words
  printf '# HELP %s %s\n# TYPE %s %s\n' "$name" "$help" "$name" "$type"
  for r in "${!R_GPU[@]}"; do
    case $field in
      stats:*) value=${STAT[$r ${field#stats:}]:-} ;;
      standby_ready)
        value=
        [ -z "${STAT[$r standby]:-}" ] || { [ "${STAT[$r standby]}" = ready ] && value=1 || value=0; }
        ;;
      hit_ratio) value=$(hit_ratio "$r") ;;
      resize:*) read -r -a words <<<"${R_RESIZE[$r]}"; value=${words[${field#resize:} - 1]:-} ;;
      elastic:*) read -r -a words <<<"${R_ELASTIC[$r]}"; value=${words[${field#elastic:} - 1]:-} ;;
      *) ref="${field}[$r]"; value=${!ref} ;;
    esac
    [[ $value =~ ^[0-9]+(\.[0-9]+)?$ ]] || continue
    printf '%s{%s} %s\n' "$name" "${LABELS[$r]}" "$value"
  done
}

# hit_ratio R: hits over hits and misses, to 4 places, or nothing.
hit_ratio() {
  [ -z "$(hit_rate "$1")" ] ||
    awk -v h="${R_HITS[$1]}" -v m="${R_MISSES[$1]}" 'BEGIN { printf "%.4f", h / (h + m) }'
}

# metrics_text UP: every family; UP is 1 when every instance could be read.
metrics_text() {
  local r state key value backend mnt
  # Each record's labels, and its .stats as STAT["R KEY"], once.
  declare -gA LABELS=() STAT=()
  for r in "${!R_GPU[@]}"; do
    prom_label backend "${R_BACKEND[$r]:-unknown}"
    prom_label mnt "${R_MNT[$r]}"
    LABELS[$r]="gpu=\"${R_GPU[$r]}\",backend=\"$backend\",mountpoint=\"$mnt\""
    while read -r key value; do
      [ -z "$key" ] || [ -n "${STAT[$r $key]+set}" ] || STAT[$r $key]=$value
    done <<<"${R_STATS[$r]}"
  done
  printf '# HELP vramswap_up Whether vramswap could read every VRAM swap (0: see its error, such as not being root).\n'
  printf '# TYPE vramswap_up gauge\nvramswap_up %s\n' "$1"
  printf '# HELP vramswap_active Number of VRAM swaps that take pages.\n'
  printf '# TYPE vramswap_active gauge\nvramswap_active %s\n' "$ACTIVE"
  metric vramswap_size_bytes gauge "Size of the swap: of its stripes that are swap." R_SIZE
  metric vramswap_max_size_bytes gauge "The size it started with: the most it may grow to." R_MAX
  metric vramswap_used_bytes gauge "Bytes in the swap now." R_USED
  metric vramswap_held_bytes gauge "Device memory the daemon holds (VRAM, or RAM with the host backend)." R_HELD
  metric vramswap_reads_total counter "Read requests served." stats:reads
  metric vramswap_writes_total counter "Write requests served." stats:writes
  metric vramswap_read_bytes_total counter "Bytes read." stats:read_bytes
  metric vramswap_write_bytes_total counter "Bytes written." stats:write_bytes
  metric vramswap_errors_total counter "Requests answered with an I/O error." stats:errors
  metric vramswap_cache_hits_total counter "Cache hits, per block." stats:cache_hits
  metric vramswap_cache_misses_total counter "Cache misses, per block." stats:cache_misses
  metric vramswap_cache_hit_ratio gauge "Cache hits over hits and misses since the mount." hit_ratio
  metric vramswap_failover gauge "1 when a keeper replaces a server that dies (vramfs -o failover)." stats:failover
  metric vramswap_keeper_alive gauge "1 while the failover keeper runs." stats:keeper_alive
  metric vramswap_restarts_total counter "Servers started to replace a dead one." stats:restarts
  metric vramswap_last_takeover_milliseconds gauge "How long the last takeover took." stats:last_takeover_ms
  metric vramswap_standby_ready gauge "1 while a standby server waits, ready to take over at once." standby_ready
  metric vramswap_resizes_total counter "Times the swap grew or shrank (vramswap resize, elastic mode)." stats:resizes
  metric vramswap_last_resize_timestamp_seconds gauge "When vramswap last resized the swap." resize:1
  metric vramswap_elastic_headroom_bytes gauge "Elastic mode: the VRAM it keeps free for other programs." elastic:1
  metric vramswap_elastic_free_bytes gauge "Elastic mode: free VRAM at the watcher's last reading." elastic:2
  printf '# HELP vramswap_state The state of each VRAM swap: 1 for the state it is in (see vramswap(8)).\n'
  printf '# TYPE vramswap_state gauge\n'
  for r in "${!R_GPU[@]}"; do
    for state in $STATES; do
      value=0
      [ "$state" != "${R_STATE[$r]}" ] || value=1
      printf 'vramswap_state{%s,state="%s"} %s\n' "${LABELS[$r]}" "$state" "$value"
    done
  done
}

cmd_status() {
  local error=
  # The daemons' counters, and with them whether a daemon answers, are
  # readable by root only (the mounts are not allow_other).
  if [ "$(id -u)" != 0 ]; then
    error="not root: each daemon's .stats, which says whether it answers, is readable by root only (/proc/swaps shows the swap itself)"
    [ "${FLAG[JSON]:-}" = yes ] || die "status needs root: ${error#not root: }"
  fi
  collect_all
  if [ "${FLAG[JSON]:-}" = yes ]; then
    status_json "$error"
    [ -z "$error" ] || die "status: $error"
  elif [ "${#R_GPU[@]}" -eq 0 ]; then
    echo "no VRAM swap under ${DIRS[*]}"
    return "$EX_NONE"
  else
    status_table
  fi
  [ "$ACTIVE" -gt 0 ] || return "$EX_NONE"
  return 0
}

# metrics_target FILE: where --output FILE is written: FILE, or the target
# of the symbolic link FILE (which stays a link); a folder is refused.
metrics_target() {
  local target=$1
  [ ! -L "$target" ] || target=$(readlink -m -- "$target")
  [ ! -d "$target" ] || die "metrics: $1 is a folder; --output names a file"
  echo "$target"
}

# write_metrics FILE UP: the metrics into FILE (from metrics_target).  A
# regular file, or none yet, is written beside it and renamed over it, so
# that the collector never reads half a file; anything else (a device, a
# FIFO) is written in place: renaming over it would replace it.
write_metrics() {
  local file=$1 tmp
  if [ -e "$file" ] && [ ! -f "$file" ]; then
    metrics_text "$2" >"$file" || die "metrics: cannot write $file"
    return 0
  fi
  tmp=$(mktemp "$file.XXXXXX" 2>/dev/null) || die "metrics: cannot write beside $file"
  if ! metrics_text "$2" >"$tmp" || ! chmod 644 "$tmp" || ! mv -f "$tmp" "$file"; then
    rm -f "$tmp"
    die "metrics: cannot write $file"
  fi
}

cmd_metrics() {
  local error='' up=1 out=${FLAG[OUTPUT]:-}
  [ -z "$out" ] || out=$(metrics_target "$out")
  if [ "$(id -u)" != 0 ]; then
    error="not root: each daemon's .stats is readable by root only; vramswap_up is 0"
    up=0
  fi
  collect_all
  if [ -z "$out" ]; then
    metrics_text "$up"
  else
    write_metrics "$out" "$up"
  fi
  [ -z "$error" ] || die "metrics: $error"
  return 0
}
