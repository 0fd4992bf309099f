#!/usr/bin/env bash
# Stops the API and the worker started by `make run`, `make run-bg`, `make worker`,
# `make dev` or bin/start.sh.
#
#   bin/stop.sh            stop API and worker
#   bin/stop.sh api        stop the API only (run/app.pid)
#   bin/stop.sh worker     stop the worker only (run/worker.pid)
#
# Works only from the PID files in run/; it never looks processes up by name and never
# kills whatever else happens to listen on the port. Each process gets SIGTERM (graceful
# shutdown: in-flight requests and deliveries finish), then up to STOP_TIMEOUT seconds
# (default 30) to exit, then SIGKILL. Stale PID files are removed. Exits 0 when nothing
# was running.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STOP_TIMEOUT=${STOP_TIMEOUT:-30}
targets=()
for arg in "${@:-all}"; do
  case "$arg" in
    all) targets+=(API worker) ;;
    api | app | API) targets+=(API) ;;
    worker) targets+=(worker) ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: bin/stop.sh [api|worker|all]" >&2; exit 2 ;;
  esac
done

# Mentions anything still listening on the API port (it is not ours, so it is left alone).
port_note() {
  if [[ " ${targets[*]} " == *" API "* ]] && port_in_use "$PORT"; then
    echo "Note: port $PORT is still in use by a process these scripts did not start (left alone):"
    port_listeners "$PORT" || true
  fi
}

pid_file_of() { if [ "$1" = worker ]; then echo "$WORKER_PID_FILE"; else echo "$APP_PID_FILE"; fi; }

signalled=() # "name pid" pairs we sent SIGTERM to
for name in "${targets[@]}"; do
  file=$(pid_file_of "$name")
  rel=${file#"$ROOT"/}
  if [ ! -f "$file" ]; then
    echo "$name: not running (no $rel)"
    continue
  fi
  pid=$(pid_from_file "$file")
  if [ -z "$pid" ] || ! pid_running "$pid"; then
    echo "$name: not running (removed stale $rel${pid:+ for PID $pid})"
    rm -f "$file"
    continue
  fi
  if ! pid_is_service "$pid"; then
    echo "$name: PID $pid from $rel is not a messaging-service process; not touching it (removed stale $rel)"
    rm -f "$file"
    continue
  fi
  echo "$name: sending SIGTERM to PID $pid"
  kill -TERM "$pid" 2>/dev/null || true
  signalled+=("$name $pid")
done

if [ ${#signalled[@]} -eq 0 ]; then
  echo "Nothing to stop."
  port_note
  exit 0
fi

# Wait for all of them together.
deadline=$((SECONDS + STOP_TIMEOUT))
while [ $SECONDS -lt $deadline ]; do
  alive=0
  for entry in "${signalled[@]}"; do
    if pid_running "${entry#* }"; then alive=1; fi
  done
  [ $alive = 0 ] && break
  sleep 0.2
done

for entry in "${signalled[@]}"; do
  name=${entry% *}
  pid=${entry#* }
  file=$(pid_file_of "$name")
  if pid_running "$pid"; then
    echo "$name: PID $pid did not exit within ${STOP_TIMEOUT}s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 25); do pid_running "$pid" || break; sleep 0.2; done
  else
    echo "$name: stopped (PID $pid)"
  fi
  # Remove the PID file unless it now names another process (a restart raced us).
  if [ "$(pid_from_file "$file")" = "$pid" ]; then rm -f "$file"; fi
done

port_note
exit 0
