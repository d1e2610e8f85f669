# shellcheck shell=bash
# Small helpers shared by scripts/test and scripts/lib/*.sh. Source, don't run.

# Is this a CI run? (CI=true / CI=1, as set by most CI systems.)
is_ci() {
  [[ ${CI:-} == true || ${CI:-} == 1 ]]
}

info() {
  printf '%s\n' "$*"
}

warn() {
  printf 'warning: %s\n' "$*" >&2
}

die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# A warning that is hard to miss in a long log.
loud_warning() {
  {
    printf '\n'
    printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n'
    printf '!!! WARNING: %s\n' "$@"
    printf '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n'
    printf '\n'
  } >&2
}

# Current time in microseconds (falls back to whole seconds on bash < 5).
now_us() {
  if [[ -n ${EPOCHREALTIME:-} ]]; then
    # Strip the decimal separator, whatever the locale makes it.
    local t=${EPOCHREALTIME//[!0-9]/}
    printf '%s\n' "$((10#$t))"
  else
    printf '%s\n' "$((SECONDS * 1000000))"
  fi
}

# fmt_duration START_US -> "1.234s" (elapsed since START_US)
fmt_duration() {
  local us=$(($(now_us) - $1))
  ((us < 0)) && us=0
  printf '%d.%03ds' "$((us / 1000000))" "$(((us / 1000) % 1000))"
}

PHASE_NAME=""
PHASE_T0=0

phase_begin() {
  PHASE_NAME=$1
  PHASE_T0=$(now_us)
  printf '\n== %s\n' "$PHASE_NAME"
}

phase_end() {
  printf -- '-- %s took %s\n' "$PHASE_NAME" "$(fmt_duration "$PHASE_T0")"
  PHASE_NAME=""
}

# For the exit trap: name the phase that was cut short, if any.
phase_abort() {
  local rc=$1
  [[ -n $PHASE_NAME ]] || return 0
  printf -- '-- %s FAILED (exit %s) after %s\n' "$PHASE_NAME" "$rc" "$(fmt_duration "$PHASE_T0")" >&2
  PHASE_NAME=""
}

# command -v that also looks in the sbin directories (not always on a
# non-root PATH).
find_cmd() {
  local name=$1 dir
  if command -v "$name" 2>/dev/null; then
    return 0
  fi
  for dir in /usr/local/sbin /usr/sbin /sbin; do
    if [[ -x $dir/$name ]]; then
      printf '%s\n' "$dir/$name"
      return 0
    fi
  done
  return 1
}

have_cmds() {
  local c
  for c in "$@"; do
    find_cmd "$c" >/dev/null || return 1
  done
}

# Directory holding the newest PostgreSQL server binaries (initdb, pg_ctl).
pg_bindir() {
  local d best=""
  if [[ -n ${HALLPASS_PG_BINDIR:-} ]]; then
    printf '%s\n' "$HALLPASS_PG_BINDIR"
    return 0
  fi
  for d in /usr/lib/postgresql/*/bin; do
    if [[ -x $d/initdb && -x $d/pg_ctl ]]; then
      # Version directories are plain integers on Debian (15, 16, ...).
      if [[ -z $best ]] || (($(basename "$(dirname "$d")") > $(basename "$(dirname "$best")"))); then
        best=$d
      fi
    fi
  done
  [[ -n $best ]] || return 1
  printf '%s\n' "$best"
}

# Print "N" free TCP ports on 127.0.0.1, space separated. The sockets are held
# open until all are bound, so the ports are distinct.
pick_free_ports() {
  local n=$1 py=""
  if [[ -x /usr/bin/python3 ]]; then
    py=/usr/bin/python3
  elif command -v python3 >/dev/null 2>&1; then
    py=$(command -v python3)
  fi
  if [[ -n $py ]]; then
    "$py" - "$n" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
    return
  fi
  # Fallback without python: random high ports that nothing answers on.
  local ports=() p tries=0
  while ((${#ports[@]} < n)); do
    ((tries++ < 1000)) || return 1
    p=$((20000 + RANDOM % 30000))
    [[ " ${ports[*]} " == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      ports+=("$p")
    fi
  done
  printf '%s\n' "${ports[*]}"
}

# wait_until TIMEOUT_SECONDS PID_OR_EMPTY CMD... : retry CMD every 0.1s until it
# succeeds. Gives up early when PID (if given) is no longer alive.
wait_until() {
  local timeout=$1 pid=$2 deadline
  shift 2
  deadline=$(($(now_us) + timeout * 1000000))
  while true; do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    if [[ -n $pid ]] && ! pid_alive "$pid"; then
      warn "process $pid exited while waiting for: $*"
      return 1
    fi
    if (($(now_us) > deadline)); then
      warn "timed out after ${timeout}s waiting for: $*"
      return 1
    fi
    sleep 0.1
  done
}

# Is PID running? A zombie (exited, not yet reaped by its parent) is not.
pid_alive() {
  local stat
  kill -0 "$1" 2>/dev/null || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# stop_pid PID [GRACE_SECONDS]: SIGTERM, wait, then SIGKILL.
stop_pid() {
  local pid=$1 grace=${2:-10} i
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < grace * 20; i++)); do
    pid_alive "$pid" || return 0
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# proc_descendants PID...: print every descendant of the given processes.
proc_descendants() {
  local -A kids=()
  local pid ppid queue=("$@") c
  while read -r pid ppid; do
    kids[$ppid]+=" $pid"
  done < <(ps -e -o pid= -o ppid= 2>/dev/null)
  while ((${#queue[@]} > 0)); do
    pid=${queue[0]}
    queue=("${queue[@]:1}")
    for c in ${kids[$pid]:-}; do
      printf '%s\n' "$c"
      queue+=("$c")
    done
  done
}

# kill_wait PID...: SIGKILL the processes and wait (up to ~5s) until gone.
kill_wait() {
  local pid i
  (($# > 0)) || return 0
  kill -KILL "$@" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    for pid in "$@"; do
      pid_alive "$pid" && break
      pid=""
    done
    [[ -z ${pid:-} ]] && return 0
    sleep 0.05
  done
}

# First line of a pid file, if it looks like a pid.
read_pidfile() {
  local f=$1 pid=""
  [[ -r $f ]] || return 1
  read -r pid <"$f" || true
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  printf '%s\n' "$pid"
}
