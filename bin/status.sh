#!/usr/bin/env bash
# Shows what is running: the PIDs from run/app.pid and run/worker.pid and whether each
# process is alive, what listens on the API port, the GET /live answer and each
# dependency's state (GET /dependencies). It never calls /health, so it leaves the
# caller's /health rate-limit window alone.
# Environment: PORT (default 8080).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

show() { # name, pid file
  local name=$1 file=$2 rel=${2#"$ROOT"/} pid
  if [ ! -f "$file" ]; then
    printf '%-7s not running (no %s)\n' "$name:" "$rel"
    return
  fi
  pid=$(pid_from_file "$file")
  if [ -n "$pid" ] && pid_is_service "$pid"; then
    printf '%-7s running, PID %s (%s)\n' "$name:" "$pid" "$rel"
    ps -o pid=,etime=,rss=,args= -p "$pid" | awk '{printf "         up %s, %d MB RSS:", $2, $3/1024; for (i = 4; i <= NF; i++) printf " %s", $i; print ""}'
  elif [ -n "$pid" ] && pid_running "$pid"; then
    printf '%-7s stale %s: PID %s is alive but is not messaging-service\n' "$name:" "$rel" "$pid"
  else
    printf '%-7s not running (stale %s for PID %s; make stop removes it)\n' "$name:" "$rel" "${pid:-?}"
  fi
}

show API "$APP_PID_FILE"
show Worker "$WORKER_PID_FILE"

echo "Port $PORT:"
listeners=$(port_listeners "$PORT" || true)
if [ -n "$listeners" ]; then
  echo "$listeners" | sed 's/^/  /'
elif port_in_use "$PORT"; then
  echo "  in use (install ss or lsof to see by whom)"
else
  echo "  nothing listening"
fi

url=$(live_url)
if body=$(curl -sS --max-time 3 -w ' (HTTP %{http_code})' "$url" 2>&1); then
  echo "Live: $body"
  if deps=$(curl -sS --max-time 5 "${url%/live}/dependencies" 2>/dev/null); then
    echo "Dependencies: $deps"
  fi
else
  echo "Live: no answer from $url ($body)"
fi
exit 0
