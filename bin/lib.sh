# Shared helpers for bin/start.sh, bin/stop.sh and bin/status.sh (sourced, not run).
#
# Processes are tracked only through PID files under run/. A PID file is trusted only
# while its process is alive and is a messaging-service process, so a stale file whose
# PID was reused by something else is never signalled.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${RUN_DIR:-$ROOT/run}
LOG_DIR=${LOG_DIR:-$ROOT/logs}
PORT=${PORT:-8080}
PROFILE=${PROFILE:-release}
BIN=${BIN:-$ROOT/target/$PROFILE/messaging-service}
APP_PID_FILE=$RUN_DIR/app.pid
WORKER_PID_FILE=$RUN_DIR/worker.pid

# cargo flags that build $PROFILE into target/$PROFILE.
cargo_profile_flags() {
  case "$PROFILE" in
    release) echo --release ;;
    debug | dev) ;;
    *) echo "--profile $PROFILE" ;;
  esac
}

# Exit status 0 if PID runs (a zombie counts as exited).
pid_running() {
  local pid=$1 state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state=$(ps -o stat= -p "$pid" 2>/dev/null | tr -d ' ')
  [ -n "$state" ] && [ "${state#Z}" = "$state" ]
}

# Exit status 0 if PID is a running messaging-service process.
pid_is_service() {
  pid_running "$1" && ps -o args= -p "$1" 2>/dev/null | grep -q 'messaging-service'
}

# Prints the PID stored in FILE (empty if none).
pid_from_file() {
  [ -f "$1" ] && tr -dc '0-9' <"$1" || true
}

# Prints the PID from FILE if that process is a running messaging-service; else nothing.
live_pid() {
  local pid
  pid=$(pid_from_file "$1")
  if [ -n "$pid" ] && pid_is_service "$pid"; then echo "$pid"; fi
}

# Exit status 0 if something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Describes what listens on PORT (best effort).
port_listeners() {
  if command -v ss >/dev/null; then
    ss -Hltnp "sport = :$1" 2>/dev/null
  elif command -v lsof >/dev/null; then
    lsof -nP -iTCP:"$1" -sTCP:LISTEN 2>/dev/null
  fi
}

# The URL our scripts poll to see whether the API is up: GET /live, which is never rate
# limited and asks no dependency, so polling it leaves every client's /health window whole
# (the operations guide's rate-limit check sends 110 requests to /health right after a start).
live_url() {
  local host
  case "${HOST:-0.0.0.0}" in 0.0.0.0 | :: | "[::]") host=127.0.0.1 ;; *) host=$HOST ;; esac
  echo "http://$host:$PORT/live"
}

# A setting from the environment, else from .env in the working directory (the service
# reads both; the environment wins).
setting() {
  local name=$1
  if [ -n "${!name+set}" ]; then
    echo "${!name}"
  elif [ -f .env ]; then
    sed -n "s/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}$name=//p" .env | tail -n 1 | sed -e 's/^["'\'']//' -e 's/["'\'']$//'
  fi
}

# cargo build of $PROFILE, announced first: a first build is long and, off a terminal,
# shows only Compiling lines.
build_service() {
  local flags
  flags=$(cargo_profile_flags)
  if [ -x "$BIN" ]; then
    echo "Building the service (cargo build${flags:+ $flags}); seconds when little has changed."
  else
    echo "Building the service for the first time (cargo build${flags:+ $flags}): this takes a few minutes on 2 cores."
  fi
  # shellcheck disable=SC2086
  cargo build $flags
}
