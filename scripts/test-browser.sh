#!/usr/bin/env bash
# The console in a real browser: headless Chromium (Debian's `chromium` package) driven by
# Playwright for Python, against a private instance of the service on each backend.
#
#   scripts/test-browser.sh                     both backends: PostgreSQL + Redis, then embedded
#   scripts/test-browser.sh --backend embedded  one of them (postgres or embedded)
#
# Installs what is missing: the `chromium` package (apt-get, as root or with sudo) and
# Playwright into a virtualenv under target/browser-venv (pip). Playwright's own browser
# download is never used: the test launches /usr/bin/chromium. If Chromium cannot be
# installed the script says so and fails.
#
# Then it builds the debug binary and runs tests/browser/test_console.py and
# tests/browser/test_docs.py (the API docs page at /docs): one PASS:/FAIL: line per check,
# screenshots of every page under target/browser/<backend>/. BROWSER_TESTS=console or
# BROWSER_TESTS=docs runs only one of them.
# Environment: CHROMIUM (default /usr/bin/chromium), TEST_DATABASE_URL (an admin URL on the
# PostgreSQL server, default postgres://messaging_user:messaging_password@127.0.0.1:5432/postgres,
# or POSTGRES_USER/POSTGRES_PASSWORD/PG_HOST/PG_PORT), TEST_REDIS_URL (default
# redis://127.0.0.1:6379/0), KEEP_LOGS=1 keeps the service logs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BACKENDS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) BACKENDS+=("${2:?--backend needs postgres or embedded}"); shift 2 ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: scripts/test-browser.sh [--backend postgres|embedded]..." >&2; exit 2 ;;
  esac
done
[ ${#BACKENDS[@]} -gt 0 ] || BACKENDS=(postgres embedded)

log() { printf '[browser] %s\n' "$*"; }
die() {
  printf '\nFAIL: %s\n\n' "$*" >&2
  exit 1
}

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  log "$CHROMIUM is missing: installing Debian's chromium package"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "Chromium is not installed and this is not root (no sudo): run 'apt-get install chromium' as root, then again"
    SUDO="sudo -n"
  fi
  command -v apt-get >/dev/null || die "Chromium is not installed and there is no apt-get here: install a Chromium and set CHROMIUM=/path/to/it"
  if ! $SUDO apt-get update -q || ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium; then
    die "could not install the chromium package (see apt-get above); the browser tests cannot run"
  fi
  [ -x "$CHROMIUM" ] || die "the chromium package is installed but $CHROMIUM is not there; set CHROMIUM"
fi
log "browser: $("$CHROMIUM" --version 2>/dev/null | head -n 1)"

VENV=$ROOT/target/browser-venv
PY=$VENV/bin/python
if ! "$PY" -c 'import playwright.sync_api' 2>/dev/null; then
  log "installing Playwright for Python into $VENV"
  command -v python3 >/dev/null || die "python3 is required"
  python3 -m venv "$VENV" || die "could not create a virtualenv at $VENV (is python3-venv installed?)"
  "$PY" -m pip install --quiet --disable-pip-version-check playwright || die "could not install playwright from PyPI"
fi

log "building the debug binary (cargo build)"
cargo build --quiet || die "cargo build failed"

ARGS=()
for b in "${BACKENDS[@]}"; do ARGS+=(--backend "$b"); done
[ "${KEEP_LOGS:-0}" = 1 ] && ARGS+=(--keep-logs)
rc=0
if [ "${BROWSER_TESTS:-console docs}" != docs ]; then
  "$PY" "$ROOT/tests/browser/test_console.py" --binary "$ROOT/target/debug/messaging-service" \
    --chromium "$CHROMIUM" --out "$ROOT/target/browser" "${ARGS[@]}" || rc=1
fi
# The API docs page (/docs): rendered from assets in the binary, no request elsewhere.
if [ "${BROWSER_TESTS:-console docs}" != console ]; then
  "$PY" "$ROOT/tests/browser/test_docs.py" --binary "$ROOT/target/debug/messaging-service" \
    --chromium "$CHROMIUM" --out "$ROOT/target/browser" "${ARGS[@]}" || rc=1
fi
exit $rc
