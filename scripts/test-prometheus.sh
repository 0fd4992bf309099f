#!/usr/bin/env bash
# Monitoring check with a real Prometheus:
#   1. the deploy files: `promtool check config` on deploy/prometheus.yml, `promtool check
#      rules` and `promtool test rules` on deploy/alerts.yml, the Grafana dashboard and
#      provisioning parse, and `docker compose config` (or docker-compose) accepts
#      docker-compose.yml;
#   2. a private `serve` and `worker` (debug build, scratch database, own Redis key prefix,
#      free ports) scraped every second by a Prometheus started here with the alert rules;
#      messages are sent, and `message_sent_total` is read back through Prometheus's HTTP
#      API and must equal what was sent. Both targets must be up, the rules must evaluate
#      without error, and every dashboard query must be accepted by Prometheus.
# Everything started is stopped and removed afterwards.
#
# Installs Debian's `prometheus` package (promtool too) when it is missing, and as root
# Debian's `docker-compose` client when no compose client is there.
# Environment: PG_HOST, PG_PORT, POSTGRES_USER, POSTGRES_PASSWORD, REDIS_URL,
# PROM_MESSAGES (default 6), KEEP_LOGS=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf '[prometheus] %s\n' "$*"; }
pass() { echo "PASS: $*"; }
die() { echo "FAIL: $*"; exit 1; }

PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_USER=${POSTGRES_USER:-messaging_user}
PG_PASSWORD=${POSTGRES_PASSWORD:-messaging_password}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
MESSAGES=${PROM_MESSAGES:-6}
DB=messaging_prom_test_$$
PREFIX="prom-test-$$:"
WORK_DIR=""
PIDS=()
DB_CREATED=""

install_prometheus() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return 0
  log "installing Debian's prometheus package (prometheus, promtool)"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  # The package's service is not wanted running: it is started here on a private port.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null 2>&1 ||
    { $sudo apt-get update >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >/dev/null; } ||
    die "cannot install the prometheus package (apt-get install prometheus)"
}

psql_admin() {
  PGPASSWORD=$PG_PASSWORD PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 \
    -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d postgres "$@"
}

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

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [ -n "$DB_CREATED" ]; then
    psql_admin -c "drop database if exists \"$DB\" with (force)" >/dev/null 2>&1 || log "could not drop $DB"
  fi
  if command -v redis-cli >/dev/null; then
    redis-cli -u "$REDIS_URL" --scan --pattern "${PREFIX}*" 2>/dev/null |
      while IFS= read -r key; do redis-cli -u "$REDIS_URL" del "$key" >/dev/null 2>&1; done
  fi
  if [ -n "$WORK_DIR" ]; then
    if [ "$rc" != 0 ] || [ "${KEEP_LOGS:-0}" = 1 ]; then log "logs kept in $WORK_DIR"; else rm -rf "$WORK_DIR"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ---------------------------------------------------------------------------------------
# 1. The deploy files
# ---------------------------------------------------------------------------------------
install_prometheus
promtool check config deploy/prometheus.yml >/dev/null || { promtool check config deploy/prometheus.yml; die "deploy/prometheus.yml"; }
pass "promtool check config deploy/prometheus.yml"
promtool check rules deploy/alerts.yml >/dev/null || { promtool check rules deploy/alerts.yml; die "deploy/alerts.yml"; }
pass "promtool check rules deploy/alerts.yml"
promtool test rules deploy/alerts_test.yml >/dev/null 2>&1 || { promtool test rules deploy/alerts_test.yml; die "alert rule tests"; }
pass "promtool test rules deploy/alerts_test.yml (alerts fire at their thresholds)"

python3 - <<'EOF' || die "Grafana files"
import json, pathlib, sys
root = pathlib.Path("deploy/grafana")
dash = json.loads((root / "dashboards/messaging-service.json").read_text())
assert dash["uid"] and dash["panels"], "dashboard has a uid and panels"
for prov in (root / "provisioning").rglob("*.yml"):
    text = prov.read_text()
    assert text.startswith("#") or "apiVersion: 1" in text, prov
    assert "apiVersion: 1" in text, f"{prov}: apiVersion"
EOF
pass "Grafana dashboard JSON and provisioning files"

if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null && [ "$(id -u)" = 0 ]; then
  # Only the client, to validate the file offline; no engine is needed for `config`.
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker-compose >/dev/null 2>&1 ||
    log "could not install docker-compose; docker-compose.yml is not validated"
fi
if docker compose version >/dev/null 2>&1; then
  docker compose -f docker-compose.yml config -q || die "docker compose config"
  pass "docker compose config"
elif command -v docker-compose >/dev/null; then
  docker-compose -f docker-compose.yml config -q || die "docker-compose config"
  pass "docker-compose config"
else
  log "no docker compose client here; docker-compose.yml not validated"
fi

# ---------------------------------------------------------------------------------------
# 2. A live scrape
# ---------------------------------------------------------------------------------------
command -v psql >/dev/null || die "psql is required"
log "building the debug binary (cargo build)"
cargo build --quiet || die "cargo build failed"
BIN=$ROOT/target/debug/messaging-service
WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/messaging-prom.XXXXXX")

psql_admin -c "create database \"$DB\" owner \"$PG_USER\"" || die "cannot create the scratch database (run scripts/services.sh)"
DB_CREATED=1

API_PORT=$(free_port)
WORKER_PORT=$(free_port)
PROM_PORT=$(free_port)
export DATABASE_URL="postgres://$PG_USER:$PG_PASSWORD@$PG_HOST:$PG_PORT/$DB"
export REDIS_URL QUEUE_KEY_PREFIX=$PREFIX HOST=127.0.0.1 PORT=$API_PORT WORKER_METRICS_PORT=$WORKER_PORT
export METRICS_SAMPLE_INTERVAL=1 MOCK_PROVIDER_LATENCY_MS=5 SYNC_MESSAGE_PROCESSING=false
export PROVIDER_ERROR_RATE=0 PROVIDER_429_RATE=0 PROVIDER_500_RATE=0
export LOG_FORMAT=json LOG_LEVEL=info NO_COLOR=1

"$BIN" migrate >"$WORK_DIR/migrate.log" 2>&1 || { cat "$WORK_DIR/migrate.log"; die "migrations"; }
"$BIN" serve >"$WORK_DIR/serve.log" 2>&1 </dev/null &
PIDS+=("$!")
"$BIN" worker >"$WORK_DIR/worker.log" 2>&1 </dev/null &
PIDS+=("$!")

cat >"$WORK_DIR/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $ROOT/deploy/alerts.yml
scrape_configs:
  - job_name: messaging-api
    static_configs:
      - targets: ["127.0.0.1:$API_PORT"]
  - job_name: messaging-worker
    static_configs:
      - targets: ["127.0.0.1:$WORKER_PORT"]
EOF
promtool check config "$WORK_DIR/prometheus.yml" >/dev/null || die "generated prometheus.yml"
prometheus --config.file="$WORK_DIR/prometheus.yml" --storage.tsdb.path="$WORK_DIR/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK_DIR/prometheus.log" 2>&1 </dev/null &
PIDS+=("$!")
PROM="http://127.0.0.1:$PROM_PORT"
API="http://127.0.0.1:$API_PORT"
log "serve :$API_PORT, worker metrics :$WORKER_PORT, prometheus :$PROM_PORT, logs in $WORK_DIR"

wait_for() { # what, url
  for _ in $(seq 1 120); do
    curl -fsS --max-time 2 "$2" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  for f in serve worker prometheus; do echo "--- $f.log"; tail -n 15 "$WORK_DIR/$f.log"; done
  die "$1 did not answer $2 within 60 s"
}
wait_for API "$API/health"
wait_for "worker metrics" "http://127.0.0.1:$WORKER_PORT/metrics"
wait_for Prometheus "$PROM/-/ready"
pass "serve, worker and Prometheus are up"

# promql EXPR: prints the single value of an instant query ('' if no result; exits 1 on an error).
promql() {
  curl -fsS --max-time 5 -G "$PROM/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
doc = json.load(sys.stdin)
if doc.get("status") != "success":
    sys.exit(1)
res = doc["data"]["result"]
print(res[0]["value"][1] if res else "")
'
}

# wait_query EXPR WANT: waits up to 30 s for the query to return WANT.
wait_query() {
  local got=""
  for _ in $(seq 1 60); do
    got=$(promql "$1" 2>/dev/null || true)
    [ "$got" = "$2" ] && return 0
    sleep 0.5
  done
  echo "  last value of $1: '${got}'"
  return 1
}

wait_query 'up{job="messaging-api"}' 1 || die "Prometheus does not see the API as up"
wait_query 'up{job="messaging-worker"}' 1 || die "Prometheus does not see the worker as up"
pass "Prometheus scrapes the API and the worker (up == 1)"

ids=()
for i in $(seq 1 "$MESSAGES"); do
  if [ $((i % 3)) = 0 ]; then
    body="{\"from\":\"prom@example.com\",\"to\":\"ops@example.com\",\"type\":\"email\",\"subject\":\"s\",\"body\":\"prometheus check $i\"}"
  else
    body="{\"from\":\"+15551234567\",\"to\":\"+15559876543\",\"type\":\"sms\",\"body\":\"prometheus check $i\"}"
  fi
  id=$(curl -fsS --max-time 10 -X POST "$API/api/v1/messages/send" -H 'Content-Type: application/json' -d "$body" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])') || die "send $i failed"
  ids+=("$id")
done
for id in "${ids[@]}"; do
  for _ in $(seq 1 60); do
    status=$(curl -fsS --max-time 5 "$API/api/v1/messages/$id" | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])')
    [ "$status" = sent ] && break
    sleep 0.5
  done
  [ "$status" = sent ] || die "message $id is $status, not sent"
done
pass "$MESSAGES messages sent by the worker"

emails=$((MESSAGES / 3))
wait_query 'sum(message_sent_total)' "$MESSAGES" || die "message_sent_total through Prometheus is not $MESSAGES"
wait_query 'sum(message_sent_total{type="email", provider="mock", job="messaging-worker"})' "$emails" ||
  die "message_sent_total{type=\"email\"} is not $emails"
pass "Prometheus reports message_sent_total = $MESSAGES ($emails email) from the worker"

wait_query 'sum(api_request_duration_seconds_count{job="messaging-api", method="POST", route="/api/v1/messages/send", status="201"})' "$MESSAGES" ||
  die "api_request_duration_seconds_count for the sends is not $MESSAGES"
wait_query 'count(queue_depth{job="messaging-worker"})' 3 || die "queue_depth is not sampled for the three streams"
wait_query 'rate_limit_hits_total{job="messaging-api"}' 0 || die "rate_limit_hits_total is not exported"
pass "request latency, queue depth and rate-limit series are scraped"

# The alert rules are loaded and evaluate cleanly against real series.
curl -fsS "$PROM/api/v1/rules" | python3 -c '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [(r["name"], r.get("lastError")) for r in rules if r.get("health") not in ("ok", "unknown")]
if not rules or bad:
    print("  rules:", len(rules), "unhealthy:", bad)
    sys.exit(1)
print("  %d alert rules loaded" % len(rules))
' || die "alert rules not loaded or failing"
sleep 2
curl -fsS "$PROM/api/v1/rules" | python3 -c '
import json, sys
rules = [r for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]]
bad = [(r["name"], r.get("lastError")) for r in rules if r.get("health") != "ok"]
sys.exit(1 if bad else 0)
' || die "alert rules do not evaluate cleanly"
pass "deploy/alerts.yml loaded by Prometheus; every rule evaluates without error"

# Every dashboard query parses and runs.
python3 - "$PROM" <<'EOF' || die "dashboard queries"
import json, sys, urllib.parse, urllib.request
prom = sys.argv[1]
dash = json.load(open("deploy/grafana/dashboards/messaging-service.json"))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
for e in exprs:
    q = e.replace("$__rate_interval", "1m")
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        doc = json.load(urllib.request.urlopen(url, timeout=5))
    except Exception as err:
        print("  query failed:", e, err)
        sys.exit(1)
    if doc.get("status") != "success":
        print("  query failed:", e, doc)
        sys.exit(1)
print("  %d dashboard queries accepted" % len(exprs))
EOF
pass "every Grafana dashboard query runs on Prometheus"

echo "Summary: Prometheus monitoring checks passed"
