#!/usr/bin/env python3
"""The operations guide's rate-limit check: 110 requests to /health in a row; the first
RATE_LIMIT_REQUESTS (100) must succeed with X-RateLimit-Remaining counting down, the rest
must be 429 with Retry-After and the guide's JSON body.

  python3 tests/integration/test_rate_limiting.py          check the service at API_URL
                                                           (default http://localhost:8080)
  python3 tests/integration/test_rate_limiting.py --start  build the debug binary and check a
                                                           private instance: scratch database,
                                                           own Redis key prefix, free port;
                                                           everything removed afterwards

With --start the instance is started the way an operator starts one, with the scripts
themselves: `bin/start.sh --bg serve` (which waits until the API answers), then
`bin/status.sh`, then the 110 requests at once. Neither script may use up the /health
window (they poll /live), so exactly the first 100 must be admitted.

Against a running service the check needs a fresh window: run it at most once per
RATE_LIMIT_PERIOD from one address. Environment: API_URL, REQUESTS (110), LIMIT (100); with
--start also PG_HOST, PG_PORT, POSTGRES_USER, POSTGRES_PASSWORD, REDIS_URL, KEEP_LOGS=1.
Standard library only. Prints PASS:/FAIL: lines and exits 1 on any failure.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

EXPECTED_BODY = {
    "error": "Rate limit exceeded",
    "message": "Too many requests. Please try again later.",
}
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def log(msg):
    print(f"[rate-limit] {msg}", flush=True)


def get(url):
    """(status, headers, body bytes) for a GET, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Instance:
    """A private `serve` process on a scratch database and Redis key prefix, run by bin/start.sh."""

    def __init__(self, limit):
        self.limit = limit
        self.env = None  # set once bin/start.sh was run: stop() then runs bin/stop.sh
        self.workdir = tempfile.mkdtemp(prefix="messaging-ratelimit.")
        self.db = f"messaging_ratelimit_test_{os.getpid()}"
        self.prefix = f"ratelimit-test-{os.getpid()}:"
        self.pg = {
            "host": os.environ.get("PG_HOST", "127.0.0.1"),
            "port": os.environ.get("PG_PORT", "5432"),
            "user": os.environ.get("POSTGRES_USER", "messaging_user"),
            "password": os.environ.get("POSTGRES_PASSWORD", "messaging_password"),
        }
        self.redis_url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
        self.db_created = False
        self.failed = False

    def psql(self, sql):
        env = dict(os.environ, PGPASSWORD=self.pg["password"])
        subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.pg["host"], "-p",
             self.pg["port"], "-U", self.pg["user"], "-d", "postgres", "-c", sql],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )

    def start(self):
        log("building the debug binary (cargo build)")
        subprocess.run(["cargo", "build"], cwd=ROOT, check=True)
        log(f"creating scratch database {self.db}")
        self.psql(f'drop database if exists "{self.db}" with (force)')
        self.psql(f'create database "{self.db}" owner "{self.pg["user"]}"')
        self.db_created = True
        port = free_port()
        env = dict(
            os.environ,
            DATABASE_URL=f"postgres://{self.pg['user']}:{self.pg['password']}@{self.pg['host']}:{self.pg['port']}/{self.db}",
            REDIS_URL=self.redis_url,
            QUEUE_KEY_PREFIX=self.prefix,
            HOST="127.0.0.1",
            PORT=str(port),
            RATE_LIMIT_ENABLED="true",
            RATE_LIMIT_REQUESTS=str(self.limit),
            RATE_LIMIT_PERIOD="60",
            NO_COLOR="1",
            LOG_FORMAT="text",
            LOG_LEVEL="info",
            # The operator's scripts, on the debug binary, with their PID and log files here.
            PROFILE="debug",
            SKIP_BUILD="1",
            RUN_DIR=os.path.join(self.workdir, "run"),
            LOG_DIR=os.path.join(self.workdir, "logs"),
        )
        env.pop("TRUSTED_PROXIES", None)
        self.env = env
        self.log_path = os.path.join(self.workdir, "logs", "app.log")
        log(f"bin/start.sh --bg serve on port {port}, key prefix {self.prefix}, files in {self.workdir}")
        started = subprocess.run([os.path.join(ROOT, "bin", "start.sh"), "--bg", "serve"],
                                 env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
        if started.returncode != 0:
            raise RuntimeError(f"bin/start.sh --bg serve failed; see {self.log_path}")
        subprocess.run([os.path.join(ROOT, "bin", "status.sh")], env=env, cwd=ROOT, check=True)
        return f"http://127.0.0.1:{port}"

    def stop(self):
        if self.env:
            subprocess.run([os.path.join(ROOT, "bin", "stop.sh"), "api"], env=self.env, cwd=ROOT,
                           stdout=subprocess.DEVNULL)
        if self.db_created:
            try:
                self.psql(f'drop database if exists "{self.db}" with (force)')
            except subprocess.CalledProcessError:
                log(f"could not drop the scratch database {self.db}")
        if shutil.which("redis-cli"):
            # One key a line: rate-limit keys hold spaces ("...:GET /health").
            keys = subprocess.run(["redis-cli", "-u", self.redis_url, "--scan", "--pattern",
                                   f"{self.prefix}*"], capture_output=True,
                                  text=True).stdout.splitlines()
            for key in keys:
                subprocess.run(["redis-cli", "-u", self.redis_url, "del", key],
                               stdout=subprocess.DEVNULL)
        if self.failed or os.environ.get("KEEP_LOGS") == "1":
            log(f"service log kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def check(api_url, total, limit):
    failures = []
    passes = 0

    def fail(msg):
        failures.append(msg)
        print(f"FAIL: {msg}", flush=True)

    previous = None
    for i in range(1, total + 1):
        status, headers, body = get(f"{api_url}/health")
        remaining = headers.get("X-RateLimit-Remaining")
        print(f"  {i:3d}  HTTP {status}  X-RateLimit-Limit: {headers.get('X-RateLimit-Limit')}  "
              f"X-RateLimit-Remaining: {remaining}  X-RateLimit-Reset: {headers.get('X-RateLimit-Reset')}"
              + (f"  Retry-After: {headers.get('Retry-After')}" if status == 429 else ""))
        if headers.get("X-RateLimit-Limit") != str(limit):
            fail(f"request {i}: X-RateLimit-Limit {headers.get('X-RateLimit-Limit')!r}, expected {limit}")
        if headers.get("X-RateLimit-Reset") is None:
            fail(f"request {i}: no X-RateLimit-Reset header")
        if i <= limit:
            if status != 200:
                fail(f"request {i}: HTTP {status}, expected 200 (is the window fresh?)")
            elif remaining != str(limit - i):
                fail(f"request {i}: X-RateLimit-Remaining {remaining!r}, expected {limit - i}")
            elif previous is not None and int(remaining) >= previous:
                fail(f"request {i}: X-RateLimit-Remaining did not decrease")
            else:
                passes += 1
            previous = int(remaining) if remaining and remaining.isdigit() else previous
        else:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            retry_after = headers.get("Retry-After")
            if status != 429:
                fail(f"request {i}: HTTP {status}, expected 429")
            elif parsed != EXPECTED_BODY:
                fail(f"request {i}: body {body[:200]!r}, expected {json.dumps(EXPECTED_BODY)}")
            elif not (retry_after and retry_after.isdigit() and int(retry_after) >= 1):
                fail(f"request {i}: Retry-After {retry_after!r}, expected a number of seconds")
            elif remaining != "0":
                fail(f"request {i}: X-RateLimit-Remaining {remaining!r}, expected 0")
            else:
                passes += 1
    if not failures:
        print(f"PASS: {limit} requests admitted with X-RateLimit-Remaining {limit - 1}..0, "
              f"{total - limit} refused with 429, Retry-After and the documented body")
    print(f"Summary: {passes} requests as expected, {len(failures)} failures")
    return not failures


def main():
    args = sys.argv[1:]
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if any(a != "--start" for a in args):
        print("usage: test_rate_limiting.py [--start]", file=sys.stderr)
        return 2
    total = int(os.environ.get("REQUESTS", "110"))
    limit = int(os.environ.get("LIMIT", "100"))
    instance = Instance(limit) if "--start" in args else None
    try:
        api_url = instance.start() if instance else os.environ.get("API_URL", "http://localhost:8080")
        log(f"{total} requests to {api_url.rstrip('/')}/health, expecting {limit} admitted")
        ok = check(api_url.rstrip("/"), total, limit)
    except Exception as err:  # a failed start-up is a failed check, reported plainly
        print(f"FAIL: {err}")
        ok = False
    finally:
        if instance:
            instance.failed = not locals().get("ok", False)
            instance.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
