#!/usr/bin/env bash
# Benchmarks the messaging service on scratch databases and prints one table.
#
#   scripts/bench.sh [options]
#
# Phases (`--phases a,b,...`; default accept,rate,drain,mixed,embedded):
#   accept     `serve` alone (no worker): closed-loop load at c=16 and at c=64
#   rate       `serve` alone: open-loop load at half the c=64 accepted rate (p99 at half load)
#   drain      a backlog of --drain-messages each time (what the phases before left is
#              drained first, unmeasured): mock provider at 0 ms with one and with two `worker` processes,
#              at 100 ms with one and with two; four runs per latency, in the order one, two,
#              two, one worker, each on freshly vacuumed tables; a row's rate is its two
#              backlogs over their times from starting the workers to an empty backlog
#              (counted in the database)
#   mixed      `serve` and one `worker` (mock at MOCK_PROVIDER_LATENCY_MS): load at c=64,
#              then the end-to-end rate (accepted over first send to empty backlog)
#   events     `serve` alone: accepted rate at c=64 without and with a local receiver subscribed
#              to every event type; then one worker (0 ms) drains, and the events/s the
#              receiver got is the delivery rate of that backlog; then EVENTS_ROUNDS rounds of
#              the mixed load without and with the receiver subscribed, in alternating order, and the
#              medians of their accepted rates compared (events/s while the load runs)
#   soak       `serve` and one `worker` (mock at MOCK_PROVIDER_LATENCY_MS): load at c=64 for
#              the maximum, then SOAK_MINUTES (default 10) minutes at half of it, one row a
#              minute (p99 and memory, to see both stay flat), and a summary row
#   list       --list-rows messages (default 1,000,000) stored straight into the scratch
#              database (100 per conversation, over 30 days), then GET at c=1 and c=16: the first
#              page of messages and of conversations, filtered by status, by conversation
#              or participant, and every page in turn by cursor
#   embedded   the single process (`all`) on a scratch SQLite file: load at c=64 with the
#              in-process worker running, then the end-to-end rate
#   wrk        `serve` alone: the bench client at c=64 for 15 s, `wrk -t2 -c64 -d15s`
#              (scripts/bench-wrk.lua: distinct SMS; Debian's `wrk` package is installed if
#              missing, as root or with sudo), the bench client again; same service,
#              each with its own CPU time per request
#
# Options:
#   --phases LIST        phases to run (see above); `all` for every one but soak
#   --soak MINUTES       add the soak phase, MINUTES long
#   --list-rows N        messages the list phase stores (default 1000000)
#   --duration SECS      length of each load phase (default 10)
#   --drain-messages N   backlog stored for each drain run after the first (default 30000)
#   --preload N          first store N messages (c=64, worker running, mock at 0 ms) and
#                        wait until they are sent, so the phases run on a large table
#   --scheduled N        first store N messages scheduled 30 days ahead (on each backend)
#   --events             add the events phase        --compare-wrk   add the wrk phase
#   --embedded           only the embedded phase (as `--phases embedded`)
#   --mix sms|mixed      message mix of the load phases (default sms)
#   --url URL            also run the accept loads (c=16, c=64) against URL: another
#                        deployment measured side by side (its RSS is not known here)
#   --external           only the accept loads against --url; start nothing
#
#   BENCH_PORT                port of the scratch API (default 21100)
#   EVENTS_ROUNDS             rounds of the events phase's comparison (default 3)
#   SOAK_MINUTES              length of the soak phase in minutes (default 10)
#   SOAK_RATE                 sends/s offered in the soak (default half the measured maximum)
#   MOCK_PROVIDER_LATENCY_MS  provider latency of the mixed, events and embedded phases
#                             (default 20); the drain phase sets its own (0 and 100)
#   POSTGRES_PASSWORD         password of messaging_user (default messaging_password)
#   POSTGRES_PORT             port of the PostgreSQL on 127.0.0.1 holding the scratch database
#                             (default 5432)
#   REDIS_HOST / REDIS_PORT   Redis holding the scratch queue (default 127.0.0.1:6379)
set -euo pipefail

cd "$(dirname "$0")/.."

PORT=${BENCH_PORT:-21100}
DB=messaging_bench_$$
DB_USER=${POSTGRES_USER:-messaging_user}
DB_PASSWORD=${POSTGRES_PASSWORD:-messaging_password}
DB_PORT=${POSTGRES_PORT:-5432}
REDIS_HOST_=${REDIS_HOST:-127.0.0.1}
REDIS_PORT_=${REDIS_PORT:-6379}
PREFIX="bench-$$:"
MIXED_LATENCY=${MOCK_PROVIDER_LATENCY_MS:-20}
EVENTS_ROUNDS=${EVENTS_ROUNDS:-3}
SOAK_MINUTES=${SOAK_MINUTES:-10}

phases=accept,rate,drain,mixed,embedded
duration=10
drain_messages=30000
preload=0
list_rows=1000000
scheduled=0
mix=sms
url=
external=0
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --phases) phases=$2; shift ;;
    --phases=*) phases=${1#*=} ;;
    --duration) duration=$2; shift ;;
    --duration=*) duration=${1#*=} ;;
    --drain-messages) drain_messages=$2; shift ;;
    --drain-messages=*) drain_messages=${1#*=} ;;
    --preload) preload=$2; shift ;;
    --preload=*) preload=${1#*=} ;;
    --list-rows) list_rows=$2; shift ;;
    --list-rows=*) list_rows=${1#*=} ;;
    --soak) SOAK_MINUTES=$2; extra+=(soak); shift ;;
    --soak=*) SOAK_MINUTES=${1#*=}; extra+=(soak) ;;
    --scheduled) scheduled=$2; shift ;;
    --scheduled=*) scheduled=${1#*=} ;;
    --mix) mix=$2; shift ;;
    --mix=*) mix=${1#*=} ;;
    --url) url=$2; shift ;;
    --url=*) url=${1#*=} ;;
    --events) extra+=(events) ;;
    --compare-wrk) extra+=(wrk) ;;
    --embedded) phases=embedded ;;
    --external) external=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ "$phases" = all ] && phases=accept,rate,drain,mixed,events,list,embedded,wrk
for p in "${extra[@]}"; do phases="$phases,$p"; done
has() { [[ ",$phases," == *",$1,"* ]]; }
if [ "$external" = 1 ] && [ -z "$url" ]; then echo "bench: --external needs --url" >&2; exit 2; fi

say() { printf '[bench] %s\n' "$*"; }

machine() {
  local mem cpu
  mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo 2>/dev/null || true)
  cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
  echo "== machine: $(nproc) cpus, ${mem:-unknown memory}, ${cpu:-unknown cpu}; load average $(cut -d' ' -f1-3 /proc/loadavg) =="
}

cargo build --release --bin messaging-service --example bench
BENCH=target/release/examples/bench
BIN=target/release/messaging-service

run_dir=$(mktemp -d)
results=$run_dir/results.tsv
touch "$results"
serve_pid=
worker_pids=()
pg_created=0

export PGPASSWORD=$DB_PASSWORD
psql_app() { PGOPTIONS="-c client_min_messages=warning" psql -v ON_ERROR_STOP=1 -qtA -h 127.0.0.1 -p "$DB_PORT" -U "$DB_USER" -d postgres "$@"; }
redis() { redis-cli -h "$REDIS_HOST_" -p "$REDIS_PORT_" "$@"; }

stop_pid() { # pid, name
  local pid=$1 name=$2
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  say "$name (pid $pid) did not stop in 15 s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_serve() { stop_pid "$serve_pid" serve; serve_pid=; }
stop_workers() {
  local p
  for p in "${worker_pids[@]}"; do stop_pid "$p" worker; done
  worker_pids=()
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_serve
  stop_workers
  if [ "$pg_created" = 1 ]; then
    redis --scan --pattern "${PREFIX}*" | xargs -r redis-cli -h "$REDIS_HOST_" -p "$REDIS_PORT_" del >/dev/null || true
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

export LOG_LEVEL=warn
# One load client is one address: rate limiting would measure itself, not the service.
export RATE_LIMIT_ENABLED=false
export HOST=127.0.0.1
export PORT
export SHUTDOWN_GRACE=${SHUTDOWN_GRACE:-5}
# Workers each pick a free metrics port (two run side by side in the drain phase).
export WORKER_METRICS_PORT=0
BASE=http://127.0.0.1:$PORT

wait_healthy() {
  for _ in $(seq 1 120); do
    curl -fsS -o /dev/null "$BASE/health" 2>/dev/null && return 0
    kill -0 "$serve_pid" 2>/dev/null || { say "the API exited during start-up"; exit 1; }
    sleep 0.5
  done
  say "the API did not become healthy in 60 s"; exit 1
}

start_serve() { # [command]
  local cmd=${1:-serve}
  if curl -fsS -o /dev/null "$BASE/health" 2>/dev/null; then
    say "something already answers on port $PORT; set BENCH_PORT"; exit 1
  fi
  $BIN "$cmd" >>"$run_dir/serve.log" 2>&1 &
  serve_pid=$!
  wait_healthy
}

start_workers() { # count, mock latency ms
  local i
  for i in $(seq 1 "$1"); do
    MOCK_PROVIDER_LATENCY_MS=$2 $BIN worker >>"$run_dir/worker$i.log" 2>&1 &
    worker_pids+=($!)
  done
}

worker_args() { local p; for p in "${worker_pids[@]}"; do printf -- '--worker-pid %s ' "$p"; done; }

bench_load() { # phase name, then load options
  local phase=$1; shift
  say "$phase"
  # shellcheck disable=SC2046
  $BENCH load --url "$BASE" --phase "$phase" --results "$results" --mix "$mix" \
    --serve-pid "$serve_pid" $(worker_args) "$@" || say "$phase: did not complete (see the table)"
}

backlog() { $BENCH backlog --database-url "$DATABASE_URL"; }

drain_phase() { # workers, latency ms
  local phase="drain ${2} ms, $1 worker"
  [ "$1" = 1 ] || phase="${phase}s"
  echo "$phase"
}

drain_run() { # workers, latency ms, results file
  local n since phase
  phase=$(drain_phase "$1" "$2")
  n=$(backlog)
  say "$phase ($n waiting)"
  since=$(date +%s%3N)
  start_workers "$1" "$2"
  # shellcheck disable=SC2046
  $BENCH drain --database-url "$DATABASE_URL" --initial "$n" --since-ms "$since" \
    --phase "$phase" --results "$3" --serve-pid "$serve_pid" $(worker_args) ||
    say "$phase: did not complete"
  stop_workers
}

# One and two workers at one provider latency: four runs in the order 1 2 2 1, each draining
# a fresh backlog of the same size from freshly vacuumed tables. Every run leaves the tables
# larger (and, with autovacuum off, full of dead rows), so a fixed order would hand the
# second configuration a bigger table; in this order both get the same. Each row is the
# backlog of its two runs over their total time.
drain_pair() { # latency ms
  local w runs=$run_dir/drain-$1.tsv
  : >"$runs"
  for w in 1 2 2 1; do
    fill "$drain_messages"
    settle_tables "before the drain run"
    drain_run "$w" "$1" "$runs"
  done
  for w in 1 2; do
    awk -F'\t' -v p="$(drain_phase "$w" "$1")" '
      $1 == p {
        n++; split($8, a, / /)
        if (a[2] == "in") { msgs += a[1]; secs += a[3]; times = times (times == "" ? "" : " and ") a[3] " s" }
        else failed = failed $8 "; "
        mem_s = $6; mem_w = $7
      }
      END {
        if (n == 0) exit
        rate = "-"; if (failed == "" && secs > 0) rate = sprintf("%.0f", msgs / secs)
        printf "%s\t-\t-\t-\t%s\t%s\t%s\t%s%d runs (order 1 2 2 1, tables vacuumed before each): %d messages each, in %s\n", p, rate, mem_s, mem_w, failed, n, msgs / n, times
      }' "$runs" | tee -a "$results" | sed 's/\t/ | /g; s/^/[bench] /'
  done
}

fill() { # messages
  say "storing $1 messages for the next drain run"
  $BENCH load --url "$BASE" --count "$1" -c 64 --mix "$mix" >/dev/null || true
}

# Messages stored in the scratch PostgreSQL database.
stored() { psql_app -d "$DB" -c "select count(*) from messages"; }

drain_quietly() { # the backlog, with one worker at 0 ms, not measured
  start_workers 1 0
  $BENCH drain --database-url "$DATABASE_URL" --initial 0 --since-ms "$(date +%s%3N)" >/dev/null || true
  stop_workers
}

# What the phases before stored and did not send, so that a phase starts without a backlog.
drain_leftovers() {
  [ "$(backlog)" -gt 0 ] || return 0
  say "draining what the phases above stored (not measured)"
  drain_quietly
}

# After a bulk load, what it leaves behind (autovacuum, the search index's pending list) is
# done at once, so the phases measure tables at rest rather than the clean-up. Only the
# tables the load wrote: the role owns them, not the catalogs.
settle_tables() { # [why]
  say "vacuum analyze ${1:-after the bulk load}"
  psql_app -d "$DB" -c "vacuum analyze messages, message_texts, message_events, conversations" \
    -c "select gin_clean_pending_list('message_texts_document_idx')" >/dev/null
}

# The events phase's summary row: median accepted/s of its rounds without and with an
# endpoint, and the difference.
events_cost_row() {
  awk -F'\t' -v rounds="$EVENTS_ROUNDS" '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    $1 ~ /^events round .*, no endpoint$/ && $2 != "-" { off[++n_off] = $2 }
    $1 ~ /^events round .*, endpoint$/ && $1 !~ /no endpoint$/ && $2 != "-" { on[++n_on] = $2 }
    END {
      if (n_off == 0 || n_on == 0) exit
      a = median(off, n_off); b = median(on, n_on)
      printf "events: accepted/s with an endpoint vs without (median of %d rounds)\t%.0f\t-\t-\t-\t-\t-\twithout %.0f/s, with %.0f/s: %+.1f%%\n", rounds, b, a, b, (b - a) * 100 / a
    }' "$results"
}

# The soak phase's summary row: its minutes' accepted/s, p99 and memory, first and last.
soak_row() {
  awk -F'\t' '
    $1 ~ /^soak minute / {
      n++; split($3, l, / \/ /); p99 = l[3] + 0
      if (n == 1) { first_p99 = p99; first_s = $6; first_w = $7; lo = p99; hi = p99 }
      if (p99 < lo) lo = p99; if (p99 > hi) hi = p99
      sum += $2; last_p99 = p99; last_s = $6; last_w = $7; errors += $4
    }
    END {
      if (n == 0) exit
      printf "soak: %d minutes\t%.0f\t-\t%d\t-\t%s -> %s\t%s -> %s\tp99 first minute %.2f ms, last %.2f ms, lowest %.2f, highest %.2f; memory first -> last minute\n", n, sum / n, errors, first_s, last_s, first_w, last_w, first_p99, last_p99, lo, hi
    }' "$results"
}

rate_of() { awk -F'\t' -v p="$1" '$1 == p && $2 != "-" { print int($2) }' "$results" | tail -n 1; }

wrk_row() { # wrk output file, wrk CPU seconds file (user sys)
  local cpu
  cpu=$(awk 'NF == 2 { print $1 + $2 }' "$2" 2>/dev/null | tail -n 1)
  awk -v phase="wrk -t2 -c64 -d15s" -v cpu="${cpu:-0}" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /^ +50%/ { p50 = ms($2) } /^ +90%/ { p90 = ms($2) } /^ +99%/ { p99 = ms($2) }
    /Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { non2xx = $5 }
    /Socket errors:/ { split($0, a, /[ ,]+/); for (i in a) if (a[i] ~ /^[0-9]+$/) sock += a[i] }
    /requests in/ { total = $1 }
    END {
      err = non2xx + sock
      per = 0
      if (total > 0) per = cpu * 1000000 / total
      printf "%s\t%.0f\t%.2f / %.2f / %.2f\t%d\t-\t-\t-\t%d requests (rate incl. errors); client CPU %.1f µs/request\n", phase, rps, p50, p90, p99, err, total, per
    }' "$1"
}

machine
pg_phases=0
for p in accept rate drain mixed events soak list wrk; do has "$p" && pg_phases=1; done
[ "$preload" -gt 0 ] && pg_phases=1
[ "$scheduled" -gt 0 ] && [ "$phases" != embedded ] && pg_phases=1
[ "$external" = 1 ] && pg_phases=0

if [ "$pg_phases" = 1 ]; then
  scripts/services.sh >/dev/null
  say "scratch database $DB, Redis prefix $PREFIX, API on port $PORT"
  psql_app -c "drop database if exists $DB with (force)" -c "create database $DB owner \"$DB_USER\""
  pg_created=1
  export DATABASE_URL="postgres://$DB_USER:$DB_PASSWORD@127.0.0.1:$DB_PORT/$DB"
  export REDIS_URL="redis://$REDIS_HOST_:$REDIS_PORT_/0"
  export QUEUE_KEY_PREFIX=$PREFIX
  start_serve serve

  if [ "$preload" -gt 0 ]; then
    start_workers 1 0
    bench_load "preload $preload (worker, 0 ms)" --count "$preload" -c 64 --wait-drain --database-url "$DATABASE_URL"
    stop_workers
  fi
  if [ "$scheduled" -gt 0 ]; then
    bench_load "store $scheduled scheduled" --count "$scheduled" -c 64 --scheduled-ahead
  fi
  if [ "$scheduled" -gt 0 ] || [ "$preload" -gt 0 ]; then
    settle_tables
  fi
  if has wrk; then
    if ! command -v wrk >/dev/null; then
      # Debian's package, as the browser and Prometheus checks install theirs.
      sudo=""
      [ "$(id -u)" = 0 ] || sudo=sudo
      if command -v apt-get >/dev/null && { [ -z "$sudo" ] || command -v sudo >/dev/null; }; then
        say "installing Debian's wrk package for the comparison"
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk >/dev/null 2>&1 ||
          { $sudo apt-get update -q >/dev/null 2>&1 &&
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk >/dev/null 2>&1; } ||
          say "could not install the wrk package (apt-get install wrk)"
      fi
    fi
    if command -v wrk >/dev/null; then
      # Ours, wrk, ours again: the table grows meanwhile, so neither has the emptier one.
      bench_load "bench -c64 -d15 (before wrk)" -c 64 --duration 15
      say "wrk -t2 -c64 -d15s"
      /usr/bin/time -f "%U %S" -o "$run_dir/wrk.cpu" \
        wrk -t2 -c64 -d15s --latency -s scripts/bench-wrk.lua "$BASE" >"$run_dir/wrk.out" 2>&1 ||
        say "wrk failed: $(tail -n 3 "$run_dir/wrk.out")"
      wrk_row "$run_dir/wrk.out" "$run_dir/wrk.cpu" >>"$results"
      bench_load "bench -c64 -d15 (after wrk)" -c 64 --duration 15
    else
      say "wrk is not installed and could not be (no apt-get, or not root and no sudo): skipping the comparison"
    fi
  fi
  if has accept; then
    bench_load "accept c=16" -c 16 --duration "$duration"
    bench_load "accept c=64" -c 64 --duration "$duration"
  fi
  if has rate; then
    max=$(rate_of "accept c=64")
    if [ -z "$max" ]; then
      say "measuring the c=64 rate first (for the half-rate run)"
      $BENCH load --url "$BASE" -c 64 --duration "$duration" --mix "$mix" --phase max --results "$run_dir/max.tsv" >/dev/null || true
      max=$(awk -F'\t' '{ print int($2) }' "$run_dir/max.tsv" 2>/dev/null | tail -n 1)
    fi
    if [ -n "$max" ] && [ "$max" -gt 1 ]; then
      half=$((max / 2))
      bench_load "rate ${half}/s (half of c=64)" -c 64 --rate "$half" --duration "$duration"
    else
      say "no c=64 rate measured: skipping the half-rate run"
    fi
  fi
  if has drain; then
    # Every run drains the same backlog, so one and two workers compare like with like (the
    # accept phases' backlog, several times larger, would give the first run a longer
    # steady state to amortise its start over).
    drain_leftovers
    drain_pair 0
    drain_pair 100
  else
    drain_leftovers
  fi
  if has events; then
    # The send path's cost of an endpoint: the accepted rate with the worker stopped, first
    # without an endpoint, then with one subscribed to every type (the client registers its
    # receiver); then one worker (mock at 0 ms) drains those messages, and the events/s
    # the receiver gets is the delivery rate of a backlog.
    drain_leftovers
    bench_load "events: accept c=64, no endpoint" -c 64 --count "$drain_messages"
    drain_quietly
    before=$(stored)
    say "events: accept c=64, endpoint subscribed; then 1 worker at 0 ms delivers the backlog"
    # shellcheck disable=SC2046
    $BENCH load --url "$BASE" --phase "events: accept c=64 + endpoint; 1 worker (0 ms) delivers" \
      --results "$results" --mix "$mix" --serve-pid "$serve_pid" -c 64 --count "$drain_messages" \
      --events --database-url "$DATABASE_URL" &
    load_pid=$!
    until [ "$(stored)" -ge $((before + drain_messages)) ] || ! kill -0 "$load_pid" 2>/dev/null; do sleep 0.2; done
    start_workers 1 0
    wait "$load_pid" || say "events: did not complete (see the table)"
    stop_workers
  fi
  if has mixed || has events; then
    start_workers 1 "$MIXED_LATENCY"
    has mixed && bench_load "mixed c=64, worker ${MIXED_LATENCY} ms" -c 64 --duration "$duration" \
      --wait-drain --database-url "$DATABASE_URL"
    if has events; then
      # The send path's cost of an endpoint with the worker delivering events alongside:
      # rounds of the mixed load without and with the receiver subscribed, in turn and in
      # alternating order (A B, B A, A B, …), so that the drift of a growing table and of
      # the machine falls on both alike; the medians are compared.
      for round in $(seq 1 "$EVENTS_ROUNDS"); do
        order="off on"
        [ $((round % 2)) = 0 ] && order="on off"
        for which in $order; do
          if [ "$which" = off ]; then
            bench_load "events round $round: mixed c=64, worker ${MIXED_LATENCY} ms, no endpoint" -c 64 \
              --duration "$duration" --wait-drain --database-url "$DATABASE_URL"
          else
            bench_load "events round $round: mixed c=64, worker ${MIXED_LATENCY} ms, endpoint" -c 64 \
              --duration "$duration" --events --database-url "$DATABASE_URL"
          fi
        done
      done
      events_cost_row >>"$results"
    fi
    stop_workers
  fi
  if has soak; then
    drain_leftovers
    start_workers 1 "$MIXED_LATENCY"
    bench_load "soak: mixed c=64, worker ${MIXED_LATENCY} ms (the maximum)" -c 64 --duration "$duration" \
      --wait-drain --database-url "$DATABASE_URL"
    max=$(rate_of "soak: mixed c=64, worker ${MIXED_LATENCY} ms (the maximum)")
    rate=${SOAK_RATE:-$((${max:-0} / 2))}
    if [ "$rate" -gt 0 ]; then
      for minute in $(seq 1 "$SOAK_MINUTES"); do
        bench_load "soak minute $minute: ${rate}/s offered, worker ${MIXED_LATENCY} ms" -c 64 --rate "$rate" --duration 60
      done
      soak_row >>"$results"
    else
      say "soak: no maximum measured; skipping the soak"
    fi
    stop_workers
  fi
  if has list; then
    drain_leftovers
    say "list: storing $list_rows messages straight into the database"
    $BENCH seed --database-url "$DATABASE_URL" --messages "$list_rows"
    settle_tables
    n=$(stored)
    # A thousand conversations (and their participants) picked at random for the filtered reads.
    psql_app -d "$DB" -c "select id, participant_b from conversations order by random() limit 1000" >"$run_dir/sample"
    list_paths() { # name, then the paths
      local name=$1; shift
      printf '%s\n' "$@" >"$run_dir/paths.$name"
      echo "$run_dir/paths.$name"
    }
    per_conversation=() per_participant=()
    while IFS='|' read -r id peer; do
      per_conversation+=("/api/v1/messages?limit=50&conversation_id=$id")
      per_participant+=("/api/v1/conversations?limit=50&participant=%2B${peer#+}")
    done <"$run_dir/sample"
    list_load() { # row name, paths file, then load options: one reader, then 16
      local name=$1 file=$2 c; shift 2
      for c in 1 16; do
        bench_load "list c=$c ($n stored): $name" -c "$c" --duration "$duration" --paths "$file" "$@"
      done
    }
    list_load "messages, first page" "$(list_paths m1 '/api/v1/messages?limit=50')"
    list_load "messages, status=failed" "$(list_paths mf '/api/v1/messages?limit=50&status=failed')"
    list_load "messages of one conversation" "$(list_paths mc "${per_conversation[@]}")"
    list_load "messages, every page by cursor" "$(list_paths m1 '/api/v1/messages?limit=50')" --follow-cursor
    list_load "conversations, first page" "$(list_paths c1 '/api/v1/conversations?limit=50')"
    list_load "conversations, status=archived" "$(list_paths ca '/api/v1/conversations?limit=50&status=archived')"
    list_load "conversations of one participant" "$(list_paths cp "${per_participant[@]}")"
    list_load "conversations, every page by cursor" "$(list_paths c1 '/api/v1/conversations?limit=50')" --follow-cursor
  fi
  stop_serve
  unset DATABASE_URL REDIS_URL QUEUE_KEY_PREFIX
fi

if has embedded && [ "$external" = 0 ]; then
  # No REDIS_URL: the single-process mode uses its in-process queue.
  unset REDIS_URL REDIS_HOST REDIS_PORT REDIS_PASSWORD REDIS_DB
  export DATABASE_URL="sqlite://$run_dir/messaging.db"
  say "embedded: API + worker in one process on port $PORT, SQLite $DATABASE_URL"
  MOCK_PROVIDER_LATENCY_MS=$MIXED_LATENCY start_serve all
  if [ "$scheduled" -gt 0 ]; then
    bench_load "embedded: store $scheduled scheduled" --count "$scheduled" -c 64 --scheduled-ahead
  fi
  bench_load "embedded c=64, worker ${MIXED_LATENCY} ms" -c 64 --duration "$duration" \
    --wait-drain --database-url "$DATABASE_URL"
  stop_serve
fi

if [ -n "$url" ]; then
  for c in 16 64; do
    say "accept c=$c at $url"
    $BENCH load --url "$url" -c "$c" --duration "$duration" --mix "$mix" \
      --phase "accept c=$c at $url" --results "$results" || true
  done
fi

echo
machine
[ "$external" = 0 ] || phases="accept loads against $url only (--external)"
echo "phases $phases; ${duration} s each; mix $mix; memory: serve and worker VmHWM (peak since start) / VmRSS (now), MiB, at the end of each phase"
$BENCH table --results "$results"
