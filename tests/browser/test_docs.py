#!/usr/bin/env python3
"""The API docs page (`GET /docs`, Swagger UI compiled into the binary) in a real browser:
headless Chromium driven by Playwright against a private instance of the service
(scripts/test-browser.sh installs both and runs this file after the console's walk-through).

    test_docs.py --binary target/debug/messaging-service --backend postgres|embedded \
        --chromium /usr/bin/chromium --out target/browser

Every request the page makes must go to the service: anything else is aborted and counted,
so the page must render from its own assets, as on a machine with no internet. Checks that
the operations list renders (`POST /api/v1/messages/send` among them), that an operation
opens with its request body, and that the document the page read is the one the service
serves. Saves target/browser/<backend>/docs.png (and docs-send.png, the operation opened).

Prints one PASS:/FAIL: line per check; exits 1 when any check failed.
"""

import argparse
import json
import os
import sys
import time
import urllib.request
from urllib.parse import urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

import test_console
from test_console import CHROMIUM_ARGS, Service, check, log


def run_backend(pw_browser, svc, out):
    os.makedirs(os.path.join(out, svc.backend), exist_ok=True)
    svc.start()
    ctx = pw_browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    origin = urlsplit(svc.base).netloc
    requests, foreign, errors = [], [], []

    def guard(route):
        url = route.request.url
        parts = urlsplit(url)
        requests.append(url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != origin:
            foreign.append(url)
            route.abort()
        elif parts.scheme not in ("http", "https", "data", "blob"):
            foreign.append(url)
            route.abort()
        else:
            route.continue_()

    ctx.route("**/*", guard)
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    try:
        resp = page.goto(svc.base + "/docs", wait_until="networkidle")
        check(resp is not None and resp.ok, f"{svc.backend}: GET /docs answers", str(resp and resp.status))
        send = page.locator("#operations-messages-send_message")
        expect(send).to_be_visible(timeout=20000)
        summary = send.locator(".opblock-summary").first
        expect(summary).to_contain_text("POST")
        expect(summary).to_contain_text("/api/v1/messages/send")
        check(True, f"{svc.backend}: the operations list renders, with POST /api/v1/messages/send")
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        with urllib.request.urlopen(svc.base + "/openapi.json", timeout=10) as r:
            doc = json.load(r)
        methods = ("get", "post", "put", "patch", "delete")
        operations = sum(1 for item in doc["paths"].values() for m in item if m in methods)
        # The events (OpenAPI 3.1 `webhooks`) are listed too, each under its name.
        webhooks = doc.get("webhooks", {})
        events = sum(1 for item in webhooks.values() for m in item if m in methods)
        check(
            len(paths) == operations + events,
            f"{svc.backend}: the page lists all {operations} operations and {events} events of /openapi.json",
            f"listed {len(paths)}",
        )
        listed = {p.strip() for p in paths}
        missing = [name for name in webhooks if name not in listed]
        check(
            len(webhooks) > 0 and not missing,
            f"{svc.backend}: every event of `webhooks` is listed by its name",
            f"missing {missing}" if missing else "no webhooks in the document",
        )
        page.screenshot(path=os.path.join(out, svc.backend, "docs.png"), full_page=True)

        summary.click()
        body = send.locator(".opblock-section-request-body, .body-param")
        expect(body.first).to_be_visible(timeout=10000)
        expect(send).to_contain_text("Idempotency-Key")
        check(True, f"{svc.backend}: the operation opens with its request body and the Idempotency-Key header")
        send.screenshot(path=os.path.join(out, svc.backend, "docs-send.png"))
    finally:
        ctx.close()
        svc.stop()
    check(
        not foreign and len(requests) >= 3,
        f"{svc.backend}: all {len(requests)} requests of the docs page went to the service itself",
        f"elsewhere: {sorted(set(foreign))[:5]}",
    )
    check(not errors, f"{svc.backend}: no script error on the docs page", "; ".join(errors[:3]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--backend", choices=["postgres", "embedded"], action="append", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--out", default="target/browser")
    ap.add_argument("--keep-logs", action="store_true")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    admin_url = os.environ.get("TEST_DATABASE_URL") or "postgres://{}:{}@{}:{}/postgres".format(
        os.environ.get("POSTGRES_USER", "messaging_user"),
        os.environ.get("POSTGRES_PASSWORD", "messaging_password"),
        os.environ.get("PG_HOST", "127.0.0.1"),
        os.environ.get("PG_PORT", "5432"),
    )
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        except PlaywrightError as e:
            print(f"FAIL: cannot start {args.chromium}: {e}")
            return 1
        try:
            for backend in args.backend:
                started = time.time()
                log(f"docs page, backend {backend}")
                svc = None
                ok = False
                try:
                    svc = Service(args.binary, backend, admin_url, redis_url)
                    run_backend(browser, svc, out)
                    ok = True
                except (AssertionError, PlaywrightError, RuntimeError, OSError) as e:
                    check(False, f"{backend}: the docs check stopped", f"{type(e).__name__}: {str(e)[:1500]}")
                finally:
                    if svc:
                        svc.cleanup(keep=args.keep_logs or not ok)
                log(f"docs page, backend {backend} took {time.time() - started:.0f}s")
        finally:
            browser.close()
    results = test_console.RESULTS
    print(f"Summary: {results['passed']} passed, {results['failed']} failed")
    return 0 if results["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
