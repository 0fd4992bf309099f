#!/usr/bin/env bash
# Starts the messaging service.
#
#   bin/start.sh                 API (`serve`) in the foreground, like `make run`
#   bin/start.sh worker          the worker in the foreground, like `make worker`
#   bin/start.sh all             API and worker in one process, like `make dev`
#   bin/start.sh --bg [serve]    API in the background, like `make run-bg`: waits until
#                                GET /live answers (up to 60 s) and prints the URL
#
# Output is appended to logs/app.log (API, all) or logs/worker.log (worker); in the
# foreground it is shown as well. The process id goes to run/app.pid or run/worker.pid,
# which is what bin/stop.sh uses. Refuses to start a second copy tracked by the same PID file.
#
# Environment: PORT (default 8080), PROFILE (cargo profile, default release),
# SKIP_BUILD=1 (do not run cargo build first), plus everything the service itself reads
# (DATABASE_URL, REDIS_URL, QUEUE_KEY_PREFIX, LOG_FORMAT, LOG_LEVEL, ...; also from .env).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

background=0
mode=serve
for arg in "$@"; do
  case "$arg" in
    --bg | --background) background=1 ;;
    serve | worker | all) mode=$arg ;;
    -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: bin/start.sh [--bg] [serve|worker|all]" >&2; exit 2 ;;
  esac
done

if [ "$mode" = worker ]; then
  pid_file=$WORKER_PID_FILE; log_file=$LOG_DIR/worker.log; what=worker
else
  pid_file=$APP_PID_FILE; log_file=$LOG_DIR/app.log; what=API
  [ "$mode" = all ] && what="API + worker (all)"
fi

# Already running according to our PID file?
if pid=$(live_pid "$pid_file") && [ -n "$pid" ]; then
  echo "The $what is already running (PID $pid, from ${pid_file#"$ROOT"/})."
  if [ "$mode" = worker ]; then
    echo "Use 'make stop' first (it stops the API too, or: bin/stop.sh worker)."
  else
    echo "Use 'make stop' or 'make restart-app' first."
  fi
  [ "$background" = 1 ] && exit 0
  exit 1
fi
if [ -f "$pid_file" ]; then
  echo "Removing stale PID file ${pid_file#"$ROOT"/} (PID $(pid_from_file "$pid_file") is not running)."
  rm -f "$pid_file"
fi

if [ "$mode" != worker ] && port_in_use "$PORT"; then
  echo "Port $PORT is already in use by a process these scripts did not start:" >&2
  port_listeners "$PORT" >&2 || true
  echo "Stop it, or pick another port: PORT=8081 make run" >&2
  exit 1
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  build_service
fi
if [ ! -x "$BIN" ]; then
  echo "Binary $BIN not found; build it with: cargo build $(cargo_profile_flags)" >&2
  exit 1
fi

mkdir -p "$RUN_DIR" "$LOG_DIR"
export PORT
# Plain text in the log files so they can be grepped (set NO_COLOR= to keep colours).
export NO_COLOR=${NO_COLOR-1}

if [ "$background" = 0 ]; then
  if [ "$mode" = worker ]; then
    metrics_port=$(setting WORKER_METRICS_PORT)
    where="no API port; its metrics on port ${metrics_port:-9091}"
  else
    where="port $PORT"
  fi
  echo "Starting the $what in the foreground ($where; output also appended to ${log_file#"$ROOT"/}); Ctrl+C stops it."
  # The subshell writes its own PID and then becomes the service (exec), so the PID file
  # names the service itself. tee -i keeps logging through Ctrl+C until the service exits.
  set +e
  (
    echo "$BASHPID" >"$pid_file"
    exec "$BIN" "$mode"
  ) </dev/null 2>&1 | tee -ia "$log_file"
  status=${PIPESTATUS[0]}
  set -e
  # Clean up our PID file unless another start has replaced it meanwhile.
  if [ -f "$pid_file" ] && ! pid_running "$(pid_from_file "$pid_file")"; then rm -f "$pid_file"; fi
  exit "$status"
fi

# Background.
nohup "$BIN" "$mode" >>"$log_file" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pid_file"

if [ "$mode" = worker ]; then
  sleep 1
  if ! pid_running "$pid"; then
    rm -f "$pid_file"
    echo "The worker exited during start-up; last lines of ${log_file#"$ROOT"/}:" >&2
    tail -n 20 "$log_file" >&2
    exit 1
  fi
  echo "Worker running in the background (PID $pid); logs: ${log_file#"$ROOT"/}"
  exit 0
fi

live=$(live_url)
echo "Started the $what in the background (PID $pid); waiting for $live ..."
for _ in $(seq 1 120); do
  if ! pid_running "$pid"; then
    rm -f "$pid_file"
    echo "The $what exited during start-up; last lines of ${log_file#"$ROOT"/}:" >&2
    tail -n 20 "$log_file" >&2
    exit 1
  fi
  if curl -fsS --max-time 2 "$live" >/dev/null 2>&1; then
    echo "API is up: http://localhost:$PORT (PID $pid, logs: ${log_file#"$ROOT"/})"
    if [ "$mode" = serve ]; then
      if worker_pid=$(live_pid "$WORKER_PID_FILE") && [ -n "$worker_pid" ]; then
        echo "The worker (PID $worker_pid) is running and carries on; no need to start it again."
      elif [ "$(setting SYNC_MESSAGE_PROCESSING)" = true ]; then
        echo "SYNC_MESSAGE_PROCESSING=true: the API delivers inside each request (debugging only); no worker is needed."
      else
        echo "Start the worker too (required for delivery): make worker &"
      fi
    fi
    exit 0
  fi
  sleep 0.5
done
echo "The $what (PID $pid) did not answer $live within 60 s; it is still running." >&2
echo "Check ${log_file#"$ROOT"/}, and 'make stop' to stop it." >&2
exit 1
