#!/usr/bin/env bash
# The API contract, checked against a running service on each backend:
#   1. `GET /openapi.json` validates with openapi-spec-validator (OpenAPI 3.1);
#   2. schemathesis runs every operation of that live document with the checks
#      not_a_server_error, status_code_conformance, content_type_conformance,
#      response_headers_conformance and response_schema_conformance, a fixed seed and a
#      bounded number of examples per operation. Zero failures or the script fails.
#
#   scripts/test-contract.sh                     both backends: PostgreSQL + Redis, then embedded
#   scripts/test-contract.sh --backend embedded  one of them (postgres or embedded)
#
# Each backend gets a scratch service (debug build, API keys required, the mock provider, a
# scratch database and Redis key prefix or a temporary SQLite file) on a free port, stopped
# and removed afterwards. openapi-spec-validator and schemathesis are installed into a
# virtualenv under target/contract-venv (pip) when missing.
# Environment: TEST_DATABASE_URL (an admin URL on the PostgreSQL server, default
# postgres://messaging_user:messaging_password@127.0.0.1:5432/postgres), TEST_REDIS_URL
# (default redis://127.0.0.1:6379/0), CONTRACT_EXAMPLES (examples per operation, default 25),
# CONTRACT_SEED (default 20261202), CONTRACT_PORT (default: a free port), KEEP_LOGS=1 keeps
# the service logs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BACKENDS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) BACKENDS+=("${2:?--backend needs postgres or embedded}"); shift 2 ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: scripts/test-contract.sh [--backend postgres|embedded]..." >&2; exit 2 ;;
  esac
done
[ ${#BACKENDS[@]} -gt 0 ] || BACKENDS=(postgres embedded)

log() { printf '[contract] %s\n' "$*"; }
die() {
  printf '\nFAIL: %s\n\n' "$*" >&2
  exit 1
}

ADMIN_URL=${TEST_DATABASE_URL:-postgres://messaging_user:messaging_password@127.0.0.1:5432/postgres}
REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/0}
EXAMPLES=${CONTRACT_EXAMPLES:-25}
SEED=${CONTRACT_SEED:-20261202}
BIN=$ROOT/target/debug/messaging-service

VENV=$ROOT/target/contract-venv
PY=$VENV/bin/python
if ! "$PY" -c 'import openapi_spec_validator, schemathesis' 2>/dev/null; then
  log "installing openapi-spec-validator and schemathesis into $VENV"
  command -v python3 >/dev/null || die "python3 is required"
  python3 -m venv "$VENV" || die "could not create a virtualenv at $VENV (is python3-venv installed?)"
  "$PY" -m pip install --quiet --disable-pip-version-check openapi-spec-validator schemathesis ||
    die "could not install openapi-spec-validator and schemathesis from PyPI"
fi
log "$("$VENV/bin/schemathesis" --version)"

log "building the debug binary (cargo build)"
cargo build --quiet || die "cargo build failed"

WORK=""
PIDS=()
DB=""
PREFIX=""

stop_pid() { # pid: SIGTERM, up to 30 s, then SIGKILL
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
}

psql_admin() {
  PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 "$ADMIN_URL" "$@"
}

teardown() {
  local keep=$1
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  PIDS=()
  if [ -n "$DB" ]; then
    psql_admin -c "drop database if exists \"$DB\" with (force)" >/dev/null 2>&1 || log "could not drop $DB"
    DB=""
  fi
  if [ -n "$PREFIX" ] && command -v redis-cli >/dev/null; then
    redis-cli -u "$REDIS_URL" --scan --pattern "${PREFIX}*" 2>/dev/null |
      while IFS= read -r key; do redis-cli -u "$REDIS_URL" del "$key" >/dev/null 2>&1; done
    PREFIX=""
  fi
  if [ -n "$WORK" ]; then
    if [ "$keep" = 1 ] || [ "${KEEP_LOGS:-0}" = 1 ]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
    WORK=""
  fi
}
trap 'rc=$?; trap - EXIT; teardown "$([ $rc = 0 ] && echo 0 || echo 1)"; exit $rc' EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

run_backend() {
  local backend=$1 started=$SECONDS
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/messaging-contract-$backend-XXXXXX")
  local port=${CONTRACT_PORT:-}
  [ -n "$port" ] || port=$(free_port)
  local base="http://127.0.0.1:$port"
  # Only what this run sets: nothing of the caller's service configuration leaks in.
  local -a envs=(
    env -i "PATH=$PATH" "HOME=${HOME:-/tmp}"
    HOST=127.0.0.1 "PORT=$port" ENVIRONMENT=development LOG_LEVEL=warn LOG_FORMAT=text NO_COLOR=1
    REQUIRE_API_KEYS=true API_KEY_CACHE_TTL=0 API_DOCS_ENABLED=true
    RATE_LIMIT_REQUESTS=1000000 WORKER_METRICS_PORT=0 MOCK_PROVIDER_LATENCY_MS=0
  )
  local -a roles
  if [ "$backend" = postgres ]; then
    DB="messaging_contract_$$_$RANDOM"
    PREFIX="contract-$$-$RANDOM:"
    psql_admin -c "create database \"$DB\"" >/dev/null || die "cannot create the scratch database on $ADMIN_URL"
    local db_url
    db_url=$(python3 -c 'import sys; from urllib.parse import urlsplit; u = urlsplit(sys.argv[1]); print(u._replace(path="/" + sys.argv[2]).geturl())' "$ADMIN_URL" "$DB")
    envs+=("DATABASE_URL=$db_url" "REDIS_URL=$REDIS_URL" "QUEUE_KEY_PREFIX=$PREFIX" QUEUE_BACKEND=redis)
    roles=(serve worker)
  else
    envs+=("DATABASE_URL=sqlite://$WORK/messaging.db" QUEUE_BACKEND=in-process)
    roles=(all)
  fi
  (cd "$WORK" && "${envs[@]}" "$BIN" migrate >/dev/null) || die "$backend: migrate failed"
  local key
  key=$(cd "$WORK" && "${envs[@]}" "$BIN" keys create --name "contract test" | grep -o 'msk_[A-Za-z0-9_-]*' | head -n 1)
  [ -n "$key" ] || die "$backend: keys create printed no key"
  for role in "${roles[@]}"; do
    (cd "$WORK" && exec "${envs[@]}" "$BIN" "$role" >>"$WORK/$role.log" 2>&1 </dev/null) &
    PIDS+=($!)
  done
  local ready=""
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$base/ready" 2>/dev/null; then ready=1; break; fi
    sleep 0.3
  done
  [ -n "$ready" ] || die "$backend: the service did not become ready: $(tail -n 15 "$WORK/${roles[0]}.log")"
  log "$backend: service on $base ($WORK)"

  curl -fsS "$base/openapi.json" -o "$WORK/openapi.json" || die "$backend: GET /openapi.json failed"
  "$PY" -m openapi_spec_validator "$WORK/openapi.json" || die "$backend: /openapi.json is not a valid OpenAPI document"
  echo "PASS: $backend: /openapi.json validates (openapi-spec-validator)"

  local report="$WORK/schemathesis.txt"
  if ! (cd "$WORK" && "$VENV/bin/schemathesis" run "$base/openapi.json" \
    --url "$base" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --seed "$SEED" --max-examples "$EXAMPLES" \
    --header "Authorization: Bearer $key" \
    --no-color) >"$report" 2>&1; then
    cat "$report"
    die "$backend: schemathesis found failures (report above)"
  fi
  grep -E "generated|Seed:" "$report" | sed 's/^ */  /'
  echo "PASS: $backend: schemathesis over every operation, 0 failures ($((SECONDS - started))s)"
  teardown 0
}

for backend in "${BACKENDS[@]}"; do
  case "$backend" in
    postgres | embedded) run_backend "$backend" ;;
    *) die "unknown backend $backend (postgres or embedded)" ;;
  esac
done
echo "Contract: OK on ${BACKENDS[*]}"
