#!/usr/bin/env bash
# Benchmarks the messaging service: starts the API (`serve`) and a worker as two processes
# against a scratch database, runs the load client (examples/bench.rs) and cleans up.
#
#   scripts/bench.sh [--external | --embedded] [bench options]
#
#   --external       benchmark an already-running service at --url; start nothing
#   --embedded       the single-process mode instead: API and worker in one process on a
#                    scratch SQLite file with the in-process queue (no PostgreSQL, no Redis)
#   bench options    passed to the load client: --concurrency N, --duration SECS,
#                    --mix sms|mixed, --drain-timeout SECS, --url URL (with --external),
#                    --scheduled N (first store N messages scheduled 30 days ahead)
#
#   BENCH_PORT                port of the scratch API (default 18088)
#   MOCK_PROVIDER_LATENCY_MS  simulated provider latency (default 20)
#   POSTGRES_PASSWORD         password of messaging_user (default messaging_password)
#   REDIS_HOST / REDIS_PORT   Redis holding the scratch queue (default 127.0.0.1:6379)
set -euo pipefail

cd "$(dirname "$0")/.."

PORT=${BENCH_PORT:-18088}
DB=messaging_bench_$$
DB_USER=${POSTGRES_USER:-messaging_user}
DB_PASSWORD=${POSTGRES_PASSWORD:-messaging_password}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
PREFIX="bench-$$:"

external=0
embedded=0
client_args=()
for arg in "$@"; do
  case $arg in
    --external) external=1 ;;
    --embedded) embedded=1 ;;
    *) client_args+=("$arg") ;;
  esac
done

say() { printf '[bench] %s\n' "$*"; }

machine() {
  local mem cpu
  mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || true)
  cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
  if [ -z "$cpu" ] && command -v lscpu >/dev/null; then
    cpu=$(lscpu | awk -F': *' '/^Model name/ { print $2; exit }')
  fi
  echo "== machine =="
  echo "cpus             $(nproc)"
  echo "memory           ${mem:-unknown}"
  echo "cpu model        ${cpu:-unknown}"
  echo
}

machine

if [ "$external" = 1 ]; then
  cargo build --release --example bench
  exec target/release/examples/bench "${client_args[@]}"
fi

cargo build --release --bin messaging-service --example bench
[ "$embedded" = 1 ] || scripts/services.sh

export PGPASSWORD=$DB_PASSWORD
psql_app() { PGOPTIONS="-c client_min_messages=warning" psql -v ON_ERROR_STOP=1 -qtA -h 127.0.0.1 -U "$DB_USER" -d postgres "$@"; }
redis() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" "$@"; }

run_dir=$(mktemp -d)
serve_pid=
worker_pid=

stop() { # pid, name
  local pid=$1 name=$2
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  say "$name (pid $pid) did not stop in 10 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop "$serve_pid" serve
  stop "$worker_pid" worker
  if [ "$embedded" = 0 ]; then
    redis --scan --pattern "${PREFIX}*" | xargs -r redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" del >/dev/null || true
    psql_app -c "drop database if exists $DB with (force)" >/dev/null || say "could not drop database $DB"
  fi
  if [ "$status" != 0 ]; then
    for log in "$run_dir"/*.log; do
      [ -s "$log" ] || continue
      say "last lines of $(basename "$log"):"
      tail -n 20 "$log"
    done
  fi
  rm -rf "$run_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health" 2>/dev/null; then
  say "something already answers on port $PORT; set BENCH_PORT or use --external"; exit 1
fi

export LOG_LEVEL=warn
# One load client is one address: rate limiting would measure itself, not the service.
export RATE_LIMIT_ENABLED=false
export MOCK_PROVIDER_LATENCY_MS=${MOCK_PROVIDER_LATENCY_MS:-20}
export HOST=127.0.0.1
export PORT
export SHUTDOWN_GRACE=${SHUTDOWN_GRACE:-5}

if [ "$embedded" = 1 ]; then
  # No REDIS_URL: the single-process mode uses its in-process queue.
  unset REDIS_URL REDIS_HOST REDIS_PORT REDIS_PASSWORD REDIS_DB
  export DATABASE_URL="sqlite://$run_dir/messaging.db"
  say "starting API + worker in one process on port $PORT: SQLite $run_dir/messaging.db, in-process queue (mock provider latency ${MOCK_PROVIDER_LATENCY_MS} ms)"
  target/release/messaging-service >"$run_dir/serve.log" 2>&1 &
  serve_pid=$!
else
  say "creating scratch database $DB"
  psql_app -c "drop database if exists $DB with (force)" -c "create database $DB owner \"$DB_USER\""

  export DATABASE_URL="postgres://$DB_USER:$DB_PASSWORD@127.0.0.1:5432/$DB"
  export REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT/0"
  export QUEUE_KEY_PREFIX=$PREFIX

  say "starting worker and API on port $PORT (mock provider latency ${MOCK_PROVIDER_LATENCY_MS} ms)"
  target/release/messaging-service worker >"$run_dir/worker.log" 2>&1 &
  worker_pid=$!
  target/release/messaging-service serve >"$run_dir/serve.log" 2>&1 &
  serve_pid=$!
fi

for _ in $(seq 1 120); do
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health" 2>/dev/null && break
  kill -0 "$serve_pid" 2>/dev/null || { say "the API exited during start-up"; exit 1; }
  sleep 0.5
done
curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health" || { say "the API did not become healthy in 60 s"; exit 1; }
[ "$embedded" = 1 ] || kill -0 "$worker_pid" 2>/dev/null || { say "the worker exited during start-up"; exit 1; }
say "API healthy; running the load client"
echo

# The scratch service's URL goes last so it wins over any --url given.
target/release/examples/bench "${client_args[@]}" --url "http://127.0.0.1:$PORT"
