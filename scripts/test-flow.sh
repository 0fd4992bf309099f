#!/usr/bin/env bash
# End-to-end flow check: for each of sms, mms and email a message is sent through the API,
# must come back 201 "pending", must reach the queue, and must be delivered by the worker
# ("sent" with sent_at) within SENT_TIMEOUT seconds (default 15).
#
#   scripts/test-flow.sh            check the service at API_URL (default http://localhost:8080);
#                                   the API and a worker must be running (make run-bg; make worker &)
#   scripts/test-flow.sh --start    build the debug binary and check a private instance:
#                                   scratch database messaging_flow_test, its own Redis key
#                                   prefix, `serve` and `worker` as separate processes on a
#                                   free port; after the flow checks, bin/test.sh replays the
#                                   original API calls against it; everything is stopped and
#                                   removed afterwards
#
# "Queued" is shown by either the message's entry in the Redis stream
# <QUEUE_KEY_PREFIX>message_queue:<type> (if the worker has not consumed it yet) or the
# message's events recording the pending -> sending transition (the worker took it).
#
# Prints one PASS:/FAIL: line per check and a summary; exits 1 if any check failed.
# Environment: API_URL, REDIS_URL (default redis://localhost:6379/0), QUEUE_KEY_PREFIX
# (default empty; both also read from .env), SENT_TIMEOUT.
# With --start also: FLOW_PORT (default 18089, another free port if taken), FLOW_DB,
# PG_HOST, PG_PORT, POSTGRES_USER, POSTGRES_PASSWORD, KEEP_LOGS=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

START=0
for arg in "$@"; do
  case "$arg" in
    --start) START=1 ;;
    -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: scripts/test-flow.sh [--start]" >&2; exit 2 ;;
  esac
done

for tool in curl python3; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is required"; exit 1; }
done

# A value from .env, for the few settings this script must agree on with the service.
dotenv() {
  [ -f .env ] || return 0
  sed -n "s/^[[:space:]]*\(export[[:space:]]\{1,\}\)\{0,1\}$1=//p" .env | tail -n 1 | sed -e 's/^["'\'']//' -e 's/["'\'']$//'
}

SENT_TIMEOUT=${SENT_TIMEOUT:-15}
QUEUED_TIMEOUT=5
REDIS_URL=${REDIS_URL:-$(dotenv REDIS_URL)}
REDIS_URL=${REDIS_URL:-redis://localhost:6379/0}
if [ -z "${QUEUE_KEY_PREFIX+set}" ]; then QUEUE_KEY_PREFIX=$(dotenv QUEUE_KEY_PREFIX); fi

log() { printf '[flow] %s\n' "$*"; }

# ---------------------------------------------------------------------------------------
# --start: a private service instance
# ---------------------------------------------------------------------------------------
WORK_DIR=""
SERVE_PID=""
WORKER_PID=""
FLOW_DB=${FLOW_DB:-messaging_flow_test_$$}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${POSTGRES_USER:-messaging_user}
PG_PASSWORD=${POSTGRES_PASSWORD:-messaging_password}
FAILED=0
PASSED=0

psql_admin() {
  PGPASSWORD=$PG_PASSWORD PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres "$@"
}

stop_pid() { # name, pid: SIGTERM, up to 30 s, then SIGKILL
  local name=$1 pid=$2
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (PID $pid) ignored SIGTERM for 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ "$START" = 1 ]; then
    stop_pid serve "$SERVE_PID"
    stop_pid worker "$WORKER_PID"
    if [ -n "${DB_CREATED:-}" ]; then
      psql_admin -c "drop database if exists \"$FLOW_DB\" with (force)" >/dev/null 2>&1 ||
        log "could not drop the scratch database $FLOW_DB"
    fi
    if [ -n "$QUEUE_KEY_PREFIX" ] && command -v redis-cli >/dev/null; then
      redis-cli -u "$REDIS_URL" --scan --pattern "${QUEUE_KEY_PREFIX}*" 2>/dev/null |
        while IFS= read -r key; do redis-cli -u "$REDIS_URL" del "$key" >/dev/null 2>&1; done
    fi
    if [ -n "$WORK_DIR" ]; then
      if [ "$rc" != 0 ] || [ "${KEEP_LOGS:-0}" = 1 ]; then
        log "service logs kept in $WORK_DIR"
      else
        rm -rf "$WORK_DIR"
      fi
    fi
  fi
  exit "$rc"
}

free_port() {
  python3 - "$1" <<'EOF'
import socket, sys
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        s.close()
want = int(sys.argv[1])
if free(want):
    print(want)
else:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
EOF
}

start_instance() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  command -v psql >/dev/null || { echo "FAIL: psql is required for --start"; exit 1; }

  log "building the debug binary (cargo build)"
  if ! cargo build; then
    echo "FAIL: cargo build failed"
    exit 1
  fi
  local bin=$ROOT/target/debug/messaging-service

  QUEUE_KEY_PREFIX="flow-test-$$:"
  local port
  port=$(free_port "${FLOW_PORT:-18089}")
  WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/messaging-flow.XXXXXX")

  log "creating scratch database $FLOW_DB on $PG_HOST:$PG_PORT"
  if ! psql_admin -c "drop database if exists \"$FLOW_DB\" with (force)" ||
    ! psql_admin -c "create database \"$FLOW_DB\" owner \"$PG_USER\""; then
    echo "FAIL: cannot create the scratch database (is PostgreSQL up? run scripts/services.sh)"
    exit 1
  fi
  DB_CREATED=1

  export DATABASE_URL="postgres://$PG_USER:$PG_PASSWORD@$PG_HOST:$PG_PORT/$FLOW_DB"
  export REDIS_URL QUEUE_KEY_PREFIX
  export PORT=$port HOST=127.0.0.1
  export MOCK_PROVIDER_LATENCY_MS=20 SYNC_MESSAGE_PROCESSING=false
  export PROVIDER_ERROR_RATE=0 PROVIDER_429_RATE=0 PROVIDER_500_RATE=0
  export NO_COLOR=1 LOG_FORMAT=text LOG_LEVEL=${FLOW_LOG_LEVEL:-info}

  if ! "$bin" migrate >"$WORK_DIR/migrate.log" 2>&1; then
    echo "FAIL: migrations on the scratch database failed:"
    sed 's/^/  /' "$WORK_DIR/migrate.log"
    exit 1
  fi

  "$bin" serve >"$WORK_DIR/serve.log" 2>&1 </dev/null &
  SERVE_PID=$!
  "$bin" worker >"$WORK_DIR/worker.log" 2>&1 </dev/null &
  WORKER_PID=$!
  log "started serve (PID $SERVE_PID) and worker (PID $WORKER_PID) on port $port, key prefix $QUEUE_KEY_PREFIX, logs in $WORK_DIR"

  API_URL="http://127.0.0.1:$port"
  for _ in $(seq 1 120); do
    for p in "$SERVE_PID:serve" "$WORKER_PID:worker"; do
      if ! kill -0 "${p%%:*}" 2>/dev/null; then
        echo "FAIL: ${p#*:} exited during start-up; last lines of its log:"
        tail -n 20 "$WORK_DIR/${p#*:}.log" | sed 's/^/  /'
        exit 1
      fi
    done
    if curl -fsS --max-time 2 "$API_URL/live" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "FAIL: the API did not answer $API_URL/live within 60 s; last lines of its log:"
  tail -n 20 "$WORK_DIR/serve.log" | sed 's/^/  /'
  exit 1
}

# ---------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------
pass() { echo "PASS: $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL: $*"; FAILED=$((FAILED + 1)); }

# json FIELD.PATH < document: prints the value ('' for null/missing; lists and objects as JSON).
json() {
  python3 -c '
import json, sys
try:
    v = json.load(sys.stdin)
except Exception:
    sys.exit(0)
for part in sys.argv[1].split("."):
    v = v.get(part) if isinstance(v, dict) else None
if v is None:
    pass
elif isinstance(v, (dict, list)):
    print(json.dumps(v))
else:
    print(v)
' "$1"
}

# Prints "from->to" for each status change in an events document.
transitions() {
  python3 -c '
import json, sys
try:
    doc = json.load(sys.stdin)
except Exception:
    sys.exit(0)
events = doc.get("events", []) if isinstance(doc, dict) else doc
for e in events or []:
    if isinstance(e, dict) and e.get("to_status"):
        print("%s->%s" % (e.get("from_status") or "", e["to_status"]))
'
}

# Exit status 0 if the message id is still an entry of the type's stream.
in_stream() { # type, id
  command -v redis-cli >/dev/null || return 1
  local stream="${QUEUE_KEY_PREFIX}message_queue:$1"
  [ "$(redis-cli -u "$REDIS_URL" --no-auth-warning xlen "$stream" 2>/dev/null || echo 0)" -gt 0 ] 2>/dev/null || return 1
  redis-cli -u "$REDIS_URL" --no-auth-warning xrevrange "$stream" + - COUNT 10000 2>/dev/null | grep -qx "$2"
}

check_type() { # type, request JSON
  local type=$1 payload=$2 resp code body id status
  resp=$(mktemp)
  code=$(curl -sS --max-time 10 -o "$resp" -w '%{http_code}' -X POST "$API_URL/api/v1/messages/send" \
    -H 'Content-Type: application/json' -d "$payload" 2>&1) || code="curl error: $code"
  body=$(cat "$resp"); rm -f "$resp"
  id=$(json id <<<"$body")
  status=$(json status <<<"$body")
  if [ "$code" != 201 ] || [ -z "$id" ]; then
    fail "$type: send returned HTTP $code (expected 201): $(head -c 300 <<<"$body")"
    return
  fi
  if [ "$status" != pending ]; then
    local hint=""
    [ "$status" = sent ] && hint=" (is SYNC_MESSAGE_PROCESSING=true? the flow check needs async mode)"
    fail "$type: send returned 201 but status \"$status\", expected \"pending\"$hint (id $id)"
    return
  fi
  pass "$type: send -> 201, status pending (id $id)"

  # Queued: still in the stream, or already taken by the worker (events show sending).
  local queued="" events deadline=$((SECONDS + QUEUED_TIMEOUT))
  while :; do
    if in_stream "$type" "$id"; then
      queued="entry in Redis stream ${QUEUE_KEY_PREFIX}message_queue:$type"
      break
    fi
    events=$(curl -sS --max-time 5 "$API_URL/api/v1/messages/$id/events" 2>/dev/null || true)
    if transitions <<<"$events" | grep -q -- '->sending$'; then
      queued="events show the worker took it: $(transitions <<<"$events" | paste -sd ' ' -)"
      break
    fi
    [ $SECONDS -ge $deadline ] && break
    sleep 0.2
  done
  if [ -n "$queued" ]; then
    pass "$type: queued ($queued)"
  else
    fail "$type: not in ${QUEUE_KEY_PREFIX}message_queue:$type and no pending->sending event within ${QUEUED_TIMEOUT}s (events: $(transitions <<<"${events:-}" | paste -sd ' ' -))"
  fi

  # Delivered by the worker.
  local msg sent_at started=$SECONDS
  deadline=$((SECONDS + SENT_TIMEOUT))
  while :; do
    msg=$(curl -sS --max-time 5 "$API_URL/api/v1/messages/$id" 2>/dev/null || true)
    status=$(json status <<<"$msg")
    sent_at=$(json sent_at <<<"$msg")
    [ "$status" = sent ] && [ -n "$sent_at" ] && break
    case "$status" in failed | delivered) break ;; esac
    [ $SECONDS -ge $deadline ] && break
    sleep 0.25
  done
  if [ "$status" = sent ] && [ -n "$sent_at" ]; then
    pass "$type: sent by the worker within $((SECONDS - started))s (sent_at $sent_at)"
  else
    local err
    err=$(json error <<<"$msg")
    fail "$type: status \"${status:-?}\"${sent_at:+ sent_at $sent_at}${err:+ error $err} after ${SENT_TIMEOUT}s, expected \"sent\" with sent_at (is a worker running? make worker &)"
  fi
}

if [ "$START" = 1 ]; then
  start_instance
fi
API_URL=${API_URL:-http://localhost:8080}
API_URL=${API_URL%/}

log "checking $API_URL (Redis $(sed -E 's#(://[^@/]*:)[^@/]*@#\1***@#' <<<"$REDIS_URL"), key prefix \"$QUEUE_KEY_PREFIX\")"
# /live, not /health: it is never rate limited, so the check leaves the caller's /health
# window (which the operations guide's rate-limit loop uses) whole.
if ! live=$(curl -fsS --max-time 5 "$API_URL/live" 2>&1); then
  fail "GET $API_URL/live: $live (is the API running? make run-bg)"
  echo "Summary: 0 passed, 1 failed"
  exit 1
fi
pass "GET /live: $live"

run_id=$(date +%s)-$$
check_type sms "{\"from\":\"+15551234567\",\"to\":\"+15559876543\",\"type\":\"sms\",\"body\":\"flow check sms $run_id\"}"
check_type mms "{\"from\":\"+15551234567\",\"to\":\"+15559876543\",\"type\":\"mms\",\"body\":\"flow check mms $run_id\",\"attachments\":[\"https://example.com/images/flow-check.png\"]}"
check_type email "{\"from\":\"flow-check@example.com\",\"to\":\"recipient@example.com\",\"type\":\"email\",\"subject\":\"Flow check $run_id\",\"body\":\"<p>flow check email $run_id</p>\"}"

# The private instance also answers the original API's calls (make test runs this mode).
if [ "$START" = 1 ]; then
  log "replaying the original API calls (bin/test.sh)"
  if API_URL=$API_URL "$ROOT/bin/test.sh" | sed 's/^/  /'; then
    pass "bin/test.sh: the original API calls answer the expected status codes"
  else
    fail "bin/test.sh: some original API calls answered unexpected status codes (see above)"
  fi
fi

echo "Summary: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
