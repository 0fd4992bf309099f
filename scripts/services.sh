#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis are up for local runs and tests, and that the
# messaging role and database exist. Starts locally installed servers that are stopped;
# never touches servers it did not find stopped.
#
#   PG_HOST / PG_PORT          where PostgreSQL listens (default 127.0.0.1:5432)
#   PG_SUPERUSER               a role allowed to create roles (default postgres)
#   REDIS_HOST / REDIS_PORT    where Redis listens (default 127.0.0.1:6379)
set -euo pipefail

PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
PG_SUPERUSER=${PG_SUPERUSER:-postgres}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
APP_USER=${POSTGRES_USER:-messaging_user}
APP_PASSWORD=${POSTGRES_PASSWORD:-messaging_password}
APP_DB=${POSTGRES_DB:-messaging_service}

say() { printf '[services] %s\n' "$*"; }

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  say "$name did not come up in 30 s"; return 1
}

pg_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }
redis_up() { [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

# --- PostgreSQL ---------------------------------------------------------------
if ! command -v pg_isready >/dev/null; then
  say "pg_isready not found: install the PostgreSQL client (e.g. apt-get install postgresql-client)"; exit 1
fi
if pg_up; then
  say "PostgreSQL is up on $PG_HOST:$PG_PORT"
elif command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  say "starting PostgreSQL $version (cluster main)"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main start
  wait_for PostgreSQL pg_up
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  say "starting PostgreSQL with docker compose"
  docker compose up -d postgres
  wait_for PostgreSQL pg_up
else
  say "PostgreSQL is not reachable on $PG_HOST:$PG_PORT and no local server was found to start"; exit 1
fi

psql_super() { psql -v ON_ERROR_STOP=1 -qtA -h "$PG_HOST" -p "$PG_PORT" -U "$PG_SUPERUSER" -d postgres "$@"; }
if ! psql_super -c 'select 1' >/dev/null 2>&1; then
  if command -v runuser >/dev/null && id postgres >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    psql_super() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA -d postgres "$@"; }
  else
    say "cannot connect to PostgreSQL as $PG_SUPERUSER to create the role; create role $APP_USER (LOGIN CREATEDB) and database $APP_DB yourself"; exit 1
  fi
fi
# CREATEDB lets the test suite create (and drop) a database per test.
if [ "$(psql_super -c "select 1 from pg_roles where rolname = '$APP_USER'")" != 1 ]; then
  say "creating role $APP_USER"
  psql_super -c "create role \"$APP_USER\" login createdb password '$APP_PASSWORD'"
else
  psql_super -c "alter role \"$APP_USER\" login createdb password '$APP_PASSWORD'" >/dev/null
fi
if [ "$(psql_super -c "select 1 from pg_database where datname = '$APP_DB'")" != 1 ]; then
  say "creating database $APP_DB"
  psql_super -c "create database \"$APP_DB\" owner \"$APP_USER\""
fi
say "role $APP_USER and database $APP_DB are ready"

# --- Redis --------------------------------------------------------------------
if redis_up; then
  say "Redis is up on $REDIS_HOST:$REDIS_PORT"
elif command -v redis-server >/dev/null; then
  say "starting Redis on $REDIS_HOST:$REDIS_PORT"
  mkdir -p /tmp/messaging-redis
  redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /tmp/messaging-redis --logfile /tmp/messaging-redis/redis.log
  wait_for Redis redis_up
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  say "starting Redis with docker compose"
  docker compose up -d redis
  wait_for Redis redis_up
else
  say "Redis is not reachable on $REDIS_HOST:$REDIS_PORT and no local server was found to start"; exit 1
fi
