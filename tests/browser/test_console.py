#!/usr/bin/env python3
"""The operator console in a real browser: headless Chromium driven by Playwright against a
private instance of the service (scripts/test-browser.sh installs both and runs this file).

    test_console.py --binary target/debug/messaging-service --backend postgres|embedded \
        --chromium /usr/bin/chromium --out target/browser

For each backend the service is started as `make test` would run it (free port, scratch
database, its own Redis key prefix, the mock provider, API keys required). A first start with
the mock provider refusing everything (PROVIDER_ERROR_RATE=1) makes a few messages fail for
good; the service is then restarted healthy on the same data and the browser walks through
every page: the key prompt, the inbox and a thread, a reply that turns `sent` without a
reload, the SMS segment counter (checked against the server's own count), search, live
updates, Retry on a message page, dead letters (retry one, redrive all), webhooks, health,
keyboard use, labels and a phone-width layout. Every request the browser makes must go to
the service (anything else is aborted and fails the run), no dialog may open, and the
Content-Security-Policy must never have to block anything. One screenshot per page is saved
under --out/<backend>/.

Prints one PASS:/FAIL: line per check; exits 1 when any check failed.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlsplit

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A word that only the test's conversation contains (search finds it, nothing else).
SEARCH_WORD = "marmalade"
XSS_BODY = "<img src=x onerror=alert(1)>"
# Sender/recipient pairs of the test's conversations.
US, THEM = "+15550001111", "+15550002222"
FAIL_PAIRS = [("+15550003333", "+1555000400%d" % i) for i in range(3)]
SEGMENT_PAIR = ("+15550005555", "+15550006666")
# Bodies whose segments and encoding the console must count exactly as the server does.
SEGMENT_CASES = [
    "",
    "a" * 160,
    "a" * 161,
    "a" * 306,
    "a" * 307,
    "a" * 158 + "€",
    "a" * 159 + "€",
    "{" * 81,
    "a" * 152 + "[" + "a" * 152,
    "é" * 160,
    "á" * 70,
    "á" * 71,
    "😀" * 35,
    "😀" * 36,
    "a" * 69 + "😀",
    "a" * 66 + "😀" + "a" * 66,
    "Привет, мир",
    "ΔΦΓΛΩΠΨΣΘΞ",
    "line one\nline two\r\n~|^",
]

RESULTS = {"passed": 0, "failed": 0}


def log(msg):
    print(f"[browser] {msg}", flush=True)


def check(ok, what, detail=""):
    if ok:
        RESULTS["passed"] += 1
        print(f"PASS: {what}", flush=True)
    else:
        RESULTS["failed"] += 1
        print(f"FAIL: {what}{': ' + detail if detail else ''}", flush=True)
    return ok


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Service:
    """A private instance of the service on one backend, started and stopped by PID."""

    def __init__(self, binary, backend, admin_url, redis_url):
        self.binary = os.path.abspath(binary)
        self.backend = backend
        self.admin_url = admin_url
        self.redis_url = redis_url
        self.work = tempfile.mkdtemp(prefix=f"messaging-browser-{backend}-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.procs = []
        self.db_name = None
        self.prefix = None
        env = {
            k: v
            for k, v in os.environ.items()
            if not re.match(r"^(DATABASE_URL|REDIS_|POSTGRES_|QUEUE_|PROVIDER_|RATE_LIMIT|SMS_|EMAIL_|ENVIRONMENT|REQUIRE_API_KEYS|MOCK_)", k)
        }
        env.update(
            HOST="127.0.0.1",
            PORT=str(self.port),
            ENVIRONMENT="development",
            REQUIRE_API_KEYS="true",
            API_KEY_CACHE_TTL="0",
            # Slow enough that a reply is seen pending or sending before it is sent.
            MOCK_PROVIDER_LATENCY_MS="1500",
            SYNC_MESSAGE_PROCESSING="false",
            WORKER_METRICS_PORT="0",
            METRICS_SAMPLE_INTERVAL="1",
            NO_COLOR="1",
            LOG_FORMAT="text",
            LOG_LEVEL="warn",
        )
        if backend == "postgres":
            self.db_name = f"console_browser_{os.getpid()}_{uuid.uuid4().hex[:8]}"
            self.psql(f'create database "{self.db_name}"')
            parts = urlsplit(admin_url)
            env["DATABASE_URL"] = parts._replace(path="/" + self.db_name).geturl()
            self.prefix = f"console-browser-{uuid.uuid4().hex[:12]}:"
            env.update(REDIS_URL=redis_url, QUEUE_KEY_PREFIX=self.prefix, QUEUE_BACKEND="redis")
        else:
            env["DATABASE_URL"] = f"sqlite://{self.work}/messaging.db"
            env["QUEUE_BACKEND"] = "in-process"
        self.env = env
        self.run_cli(["migrate"])
        out = self.run_cli(["keys", "create", "--name", "console browser test"])
        keys = re.findall(r"msk_[A-Za-z0-9_-]+", out)
        if not keys:
            raise RuntimeError(f"keys create printed no key: {out!r}")
        self.key = keys[0]

    def psql(self, sql):
        subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", self.admin_url, "-c", sql],
            check=True,
            env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"},
        )

    def run_cli(self, args):
        p = subprocess.run([self.binary, *args], env=self.env, cwd=self.work, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {p.stderr.strip()}")
        return p.stdout

    def start(self, **extra):
        env = {**self.env, **extra}
        roles = ["serve", "worker"] if self.backend == "postgres" else ["all"]
        for role in roles:
            logf = open(os.path.join(self.work, f"{role}.log"), "a")
            self.procs.append(
                (role, subprocess.Popen([self.binary, role], env=env, cwd=self.work, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            )
        deadline = time.time() + 90
        while time.time() < deadline:
            for role, p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{role} exited at start-up: {self.tail(role)}")
            try:
                with urllib.request.urlopen(self.base + "/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the service did not become ready: {self.tail(roles[0])}")

    def tail(self, role):
        try:
            with open(os.path.join(self.work, f"{role}.log")) as f:
                return "".join(f.readlines()[-15:])
        except OSError:
            return ""

    def stop(self):
        for _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for role, p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log(f"{role} (PID {p.pid}) ignored SIGTERM for 30 s; killing it")
                p.kill()
                p.wait()
        self.procs = []

    def cleanup(self, keep):
        self.stop()
        if self.db_name:
            try:
                self.psql(f'drop database if exists "{self.db_name}" with (force)')
            except subprocess.CalledProcessError:
                log(f"could not drop the scratch database {self.db_name}")
        if self.prefix and shutil.which("redis-cli"):
            keys = subprocess.run(
                ["redis-cli", "-u", self.redis_url, "--scan", "--pattern", self.prefix + "*"], capture_output=True, text=True
            ).stdout.split()
            for k in keys:
                subprocess.run(["redis-cli", "-u", self.redis_url, "del", k], capture_output=True)
        if keep:
            log(f"service logs kept in {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # The JSON API, with the key.
    def api(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for _ in range(20):
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    text = r.read().decode()
                    return json.loads(text) if text else None
            except urllib.error.HTTPError as e:
                if e.code == 429:
                    time.sleep(float(e.headers.get("Retry-After") or 1))
                    continue
                raise RuntimeError(f"{method} {path} answered {e.code}: {e.read().decode()[:300]}") from e
        raise RuntimeError(f"{method} {path}: still rate limited")

    def send(self, frm, to, body):
        return self.api("POST", "/api/v1/messages/send", {"from": frm, "to": to, "type": "sms", "body": body})

    def inbound(self, frm, to, body):
        self.api(
            "POST",
            "/api/webhooks/sms",
            {
                "from": frm,
                "to": to,
                "type": "sms",
                "messaging_provider_id": "browser-" + uuid.uuid4().hex,
                "body": body,
                "attachments": None,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )

    def wait_status(self, message_id, want, timeout=30):
        deadline = time.time() + timeout
        status = None
        while time.time() < deadline:
            status = self.api("GET", f"/api/v1/messages/{message_id}")["status"]
            if status == want:
                return True
            time.sleep(0.25)
        log(f"message {message_id} is {status}, not {want}")
        return False


class Browser:
    """One browser context on the service: every request is checked, dialogs and CSP
    reports are recorded."""

    def __init__(self, browser, svc, viewport):
        self.svc = svc
        self.ctx = browser.new_context(viewport=viewport, service_workers="block")
        self.requests = []
        self.foreign = []
        self.dialogs = []
        self.errors = []
        origin = urlsplit(svc.base).netloc

        def guard(route):
            url = route.request.url
            parts = urlsplit(url)
            self.requests.append(url)
            if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != origin:
                self.foreign.append(url)
                route.abort()
            elif parts.scheme not in ("http", "https", "data", "blob"):
                self.foreign.append(url)
                route.abort()
            else:
                route.continue_()

        self.ctx.route("**/*", guard)
        self.page = self.ctx.new_page()

        def on_dialog(d):
            self.dialogs.append(d.message)
            d.dismiss()

        self.page.on("dialog", on_dialog)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.on(
            "console",
            lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
        )

    def shot(self, name, full_page=True):
        path = os.path.join(OUT, self.svc.backend, f"{name}.png")
        self.page.screenshot(path=path, full_page=full_page)
        return path

    def unlabelled_controls(self):
        return self.page.evaluate(
            """() => Array.from(document.querySelectorAll('input, select, textarea'))
                .filter((el) => el.type !== 'hidden')
                .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                                && !el.getAttribute('aria-labelledby'))
                .map((el) => el.name || el.id || el.outerHTML.slice(0, 60))"""
        )

    def close(self):
        self.ctx.close()


def bubble(page, text):
    return page.locator("li.bubble", has=page.locator("p.body", has_text=text))


def run_backend(pw_browser, svc):
    base = svc.base
    os.makedirs(os.path.join(OUT, svc.backend), exist_ok=True)

    # --- Failed messages: the mock provider refuses everything during a first start. ------
    svc.start(PROVIDER_ERROR_RATE="1")
    failed_ids = [svc.send(a, b, f"Your code is {1000 + i}")["id"] for i, (a, b) in enumerate(FAIL_PAIRS)]
    check(all(svc.wait_status(i, "failed") for i in failed_ids), f"{svc.backend}: {len(failed_ids)} messages failed for good with PROVIDER_ERROR_RATE=1")
    svc.stop()
    svc.start()

    # --- The test's conversation. -----------------------------------------------------------
    first = svc.send(US, THEM, f"Hello! Your order of {SEARCH_WORD} has shipped.")
    conv = first["conversation_id"]
    svc.inbound(THEM, US, "Great, thanks. When does it arrive?")
    svc.inbound(THEM, US, XSS_BODY)
    svc.api("POST", "/api/v1/messages/send", {"from": "support@shop.example", "to": "jane@customer.example", "type": "email", "subject": "Your receipt", "body": "Thank you for shopping with us."})
    svc.wait_status(first["id"], "sent")

    b = Browser(pw_browser, svc, {"width": 1280, "height": 860})
    page = b.page
    expect.set_options(timeout=15_000)

    # --- The key prompt. --------------------------------------------------------------------
    page.goto(base + "/console")
    banner = page.locator("#banner")
    try:
        expect(banner).to_contain_text("enter an API key")
        check(True, f"{svc.backend}: without a key the console asks for one")
    except AssertionError as e:
        check(False, f"{svc.backend}: without a key the console asks for one", str(e).splitlines()[0])
    b.shot("key-prompt")
    page.fill("#api-key", svc.key)
    page.press("#api-key", "Enter")
    expect(banner).to_be_hidden()

    # --- Inbox and the thread. ------------------------------------------------------------
    link = page.locator(f'a.conversation[href="#/inbox/{conv}"]')
    expect(link).to_contain_text(f"{US} ↔ {THEM}")
    expect(link).to_contain_text("2 unread")
    check(True, f"{svc.backend}: the inbox lists the test's conversation with 2 unread")
    # Keyboard: the skip link comes first and keeps the view; Tab reaches the conversation.
    page.reload()  # the key stays in the tab's session
    expect(link).to_be_visible()
    hash_before = page.evaluate("location.hash")
    page.keyboard.press("Tab")
    first_focus = page.evaluate("document.activeElement.className")
    page.keyboard.press("Enter")
    page.wait_for_timeout(300)
    check(
        first_focus == "skip"
        and page.evaluate("location.hash") == hash_before
        and page.evaluate("document.activeElement.id") == "main"
        and link.is_visible(),
        f"{svc.backend}: the skip link is the first Tab stop and moves focus to the content",
        f"first focus {first_focus!r}, hash {page.evaluate('location.hash')!r}",
    )
    reached = False
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate(f"document.activeElement.getAttribute('href') === '#/inbox/{conv}'"):
            reached = True
            break
    check(reached, f"{svc.backend}: Tab reaches the conversation")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"#/inbox/{conv}$"))
    page.evaluate("window.__sameDocument = 1")
    thread = page.locator("ol.thread")
    expect(bubble(page, "When does it arrive")).to_have_class(re.compile("inbound"))
    expect(bubble(page, SEARCH_WORD)).to_have_class(re.compile("outbound"))
    xss = bubble(page, XSS_BODY)
    expect(xss.locator("p.body")).to_have_text(XSS_BODY)
    check(page.locator("main img").count() == 0, f"{svc.backend}: a body '{XSS_BODY}' is shown as text (no <img> in the page)")
    check(True, f"{svc.backend}: the thread shows inbound left and outbound right")
    unlabelled = b.unlabelled_controls()
    check(not unlabelled, f"{svc.backend}: every form control of the inbox has a label", str(unlabelled))
    page.get_by_role("button", name="Mark as read").click()
    expect(page.locator(".thread-header")).to_contain_text("all read")
    expect(link.locator(".badge")).to_have_count(0, timeout=1_000)  # the list follows at once
    check(True, f"{svc.backend}: Mark as read clears the unread count, in the thread and the list")

    # --- The segment counter as you type. -----------------------------------------------
    box = page.get_by_label("Message", exact=True)
    counter = page.locator("#composer-count")
    box.press_sequentially("Hi €", delay=20)
    expect(counter).to_contain_text("GSM-7")
    expect(counter).to_have_attribute("data-segments", "1")
    box.press_sequentially(" 😀", delay=20)
    expect(counter).to_contain_text("UCS-2")
    check(True, f"{svc.backend}: the composer's counter follows the typing (GSM-7, then UCS-2 after an emoji)")
    box.fill("")
    reply = f"Tomorrow before noon. The {SEARCH_WORD} travels well; " + "we pack every jar in paper. " * 5
    box.fill(reply)
    shown_segments = counter.get_attribute("data-segments")
    shown_encoding = counter.get_attribute("data-encoding")
    b.shot("inbox-thread-composing", full_page=False)

    # --- Send the reply and watch it turn `sent` without a reload. ---------------------------
    page.get_by_role("button", name="Send", exact=True).click()
    reply_bubble = bubble(page, "Tomorrow before noon")
    expect(reply_bubble).to_have_count(1)
    seen = [reply_bubble.get_attribute("data-status")]
    deadline = time.time() + 20
    while time.time() < deadline and seen[-1] != "sent":
        page.wait_for_timeout(100)
        s = reply_bubble.get_attribute("data-status")
        if s != seen[-1]:
            seen.append(s)
    check(
        len(seen) >= 2 and seen[0] in ("pending", "sending") and seen[-1] == "sent",
        f"{svc.backend}: the reply turns sent in the open thread ({' -> '.join(seen)})",
        f"statuses seen {seen}",
    )
    reply_id = reply_bubble.get_attribute("data-key")
    server = svc.api("GET", f"/api/v1/messages/{reply_id}")
    check(
        (str(server.get("segments")), server.get("encoding")) == (shown_segments, shown_encoding),
        f"{svc.backend}: the composer showed {shown_segments} segment(s) {shown_encoding} for the reply, as the server counts",
        f"server {server.get('segments')} {server.get('encoding')}",
    )

    # --- Live: a new inbound message appears without a reload. -----------------------------
    svc.inbound(THEM, US, "Perfect, see you tomorrow.")
    expect(bubble(page, "see you tomorrow")).to_have_count(1, timeout=10_000)
    check(page.evaluate("window.__sameDocument") == 1, f"{svc.backend}: a new inbound message appears in the open thread without a reload")
    expect(page.locator(".thread-header")).to_contain_text("1 unread")
    b.shot("inbox-thread")
    expect(thread).to_be_visible()

    # --- The counter against the server for the table cases. --------------------------------
    client = page.evaluate(
        "async (cases) => { const m = await import('/console/segments.js'); return cases.map((c) => { const r = m.countSegments(c); return [r.segments, r.encoding]; }); }",
        SEGMENT_CASES,
    )
    mismatches = []
    for body, mine in zip(SEGMENT_CASES, client):
        if not body:
            continue  # the API refuses an empty sms; the unit tests cover it
        theirs = svc.send(*SEGMENT_PAIR, body)
        if [theirs.get("segments"), theirs.get("encoding")] != mine:
            mismatches.append((body[:20], mine, [theirs.get("segments"), theirs.get("encoding")]))
    check(client[0] == [1, "GSM-7"] and not mismatches, f"{svc.backend}: the console counts segments as the server does for {len(SEGMENT_CASES)} bodies", str(mismatches))

    # --- Search. -----------------------------------------------------------------------------
    page.goto(base + "/console#/inbox")
    page.get_by_label("Search messages").fill(SEARCH_WORD)
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator(".summary")).to_contain_text(f"1 conversation match")
    expect(page.locator("a.conversation")).to_have_count(1)
    expect(page.locator("a.conversation")).to_have_attribute("href", f"#/inbox/{conv}")
    check(True, f"{svc.backend}: searching for '{SEARCH_WORD}' finds the conversation")
    b.shot("inbox-search")
    page.get_by_role("button", name="Clear").click()
    # The thread, the email, the segment cases and one per failed message.
    expect(page.locator("a.conversation")).to_have_count(3 + len(FAIL_PAIRS))

    # --- Messages, one message, Retry. ---------------------------------------------------
    page.goto(base + "/console#/messages")
    expect(page.locator("table.log tbody tr").first).to_be_visible()
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.log tbody tr")).to_have_count(len(failed_ids))
    check(not b.unlabelled_controls(), f"{svc.backend}: every form control of the message log has a label", str(b.unlabelled_controls()))
    b.shot("messages")
    target = failed_ids[0]
    page.locator(f'a[href="#/messages/{target}"]').click()
    props = page.locator("dl.props")
    expect(props).to_contain_text("21211")
    expect(page.locator("ol.timeline")).to_contain_text("failed")
    b.shot("message-failed")
    page.get_by_role("button", name="Retry").click()
    expect(props.locator("dd").first).to_have_text("sent", timeout=20_000)
    check(svc.wait_status(target, "sent"), f"{svc.backend}: Retry on a failed message's page sends it again (now sent)")
    expect(page.locator("ol.timeline")).to_contain_text("redriven")
    b.shot("message")
    page.goto(base + "/console#/messages")
    page.get_by_label("Status").select_option("")
    page.get_by_role("button", name="Filter").click()

    # --- Dead letters: retry one, then redrive all. ---------------------------------------
    page.goto(base + "/console#/dead-letters")
    rows = page.locator("table.log tbody tr")
    expect(rows).to_have_count(len(failed_ids) - 1)
    b.shot("dead-letters")
    one = failed_ids[1]
    page.locator(f'button[data-key="retry-{one}"]').click()
    expect(rows).to_have_count(len(failed_ids) - 2)
    page.get_by_role("button", name="Redrive all").click()
    page.get_by_role("button", name=re.compile("^Yes, redrive 1 message")).click()
    expect(page.locator("p[aria-live]").filter(has_text="Redriven")).to_contain_text("Redriven 1 message")
    expect(page.get_by_text("No failed messages.")).to_be_visible()
    check(all(svc.wait_status(i, "sent") for i in failed_ids[1:]), f"{svc.backend}: dead letters: retry one and redrive all, and both are sent")
    b.shot("dead-letters-empty")

    # --- Webhooks and health. -----------------------------------------------------------------
    # A forged Twilio callback: refused, and logged as not verified.
    forged = urllib.request.Request(
        base + "/api/v1/webhooks/twilio",
        data=b"MessageSid=SMforged&MessageStatus=delivered",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "forged"},
        method="POST",
    )
    try:
        urllib.request.urlopen(forged, timeout=10)
        check(False, f"{svc.backend}: a forged Twilio callback is refused")
    except urllib.error.HTTPError as e:
        check(e.code == 403, f"{svc.backend}: a forged Twilio callback is refused", f"answered {e.code}")
    page.goto(base + "/console#/webhooks")
    expect(page.locator("h1")).to_have_text("Webhooks")
    expect(page.locator("table.log tbody tr").first).to_contain_text("twilio")
    expect(page.locator("table.log tbody tr").first).to_contain_text("not verified")
    check(True, f"{svc.backend}: the webhook log shows the refused callback")
    b.shot("webhooks")
    page.goto(base + "/console#/health")
    expect(page.locator(".stats")).to_contain_text("queue backlog")
    for i in range(12):  # some traffic for the live numbers and a few samples for the chart
        svc.send(*SEGMENT_PAIR, f"Load {i}")
        page.wait_for_timeout(500)
    expect(page.locator("svg.chart polyline.series-sent")).to_have_attribute("points", re.compile(r"\d+.*,.* \d"))
    check(True, f"{svc.backend}: health shows the dependencies, live numbers and a chart")
    b.shot("health")

    # Keyboard: a nav link followed with Enter.
    page.locator('nav a[data-section="messages"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Messages")
    check(True, f"{svc.backend}: the section navigation works from the keyboard")

    # --- A phone's width. ----------------------------------------------------------------
    phone = Browser(pw_browser, svc, {"width": 390, "height": 844})
    pp = phone.page
    pp.goto(base + "/console")
    pp.fill("#api-key", svc.key)
    pp.press("#api-key", "Enter")
    expect(pp.locator(f'a.conversation[href="#/inbox/{conv}"]')).to_be_visible()
    overflow = pp.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    check(overflow <= 0, f"{svc.backend}: at 390 px the inbox fits the width", f"{overflow}px too wide")
    phone.shot("phone-inbox")
    pp.locator(f'a.conversation[href="#/inbox/{conv}"]').click()
    expect(bubble(pp, XSS_BODY)).to_be_visible()
    expect(pp.get_by_role("link", name="← All conversations")).to_be_visible()
    overflow = pp.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    check(overflow <= 0, f"{svc.backend}: at 390 px a thread fits the width", f"{overflow}px too wide")
    phone.shot("phone-thread")
    pp.goto(base + "/console#/messages")
    expect(pp.locator("table.log tbody tr").first).to_be_visible()
    overflow = pp.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    row_height = pp.locator("table.log tbody tr").first.bounding_box()["height"]
    check(
        overflow <= 0 and row_height < 150,
        f"{svc.backend}: at 390 px the message log scrolls inside its box, not the page, with rows a few lines high",
        f"{overflow}px too wide, first row {row_height:.0f}px high",
    )
    phone.shot("phone-messages", full_page=False)

    # --- What the browser did overall. ---------------------------------------------------
    for ctx in (b, phone):
        ctx.close()
    all_requests = b.requests + phone.requests
    check(
        not b.foreign and not phone.foreign and len(all_requests) > 20,
        f"{svc.backend}: all {len(all_requests)} requests went to the service itself",
        f"elsewhere: {sorted(set(b.foreign + phone.foreign))[:5]}",
    )
    dialogs = b.dialogs + phone.dialogs
    check(not dialogs, f"{svc.backend}: no dialog opened", str(dialogs))
    csp = [e for e in b.errors + phone.errors if "Content Security Policy" in e or "page error" in e]
    check(not csp, f"{svc.backend}: no script error and nothing blocked by the CSP", "; ".join(csp[:3]))


def main():
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--backend", choices=["postgres", "embedded"], action="append", required=True)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--out", default="target/browser")
    ap.add_argument("--keep-logs", action="store_true")
    args = ap.parse_args()
    OUT = os.path.abspath(args.out)
    admin_url = os.environ.get("TEST_DATABASE_URL") or "postgres://{}:{}@{}:{}/postgres".format(
        os.environ.get("POSTGRES_USER", "messaging_user"),
        os.environ.get("POSTGRES_PASSWORD", "messaging_password"),
        os.environ.get("PG_HOST", "127.0.0.1"),
        os.environ.get("PG_PORT", "5432"),
    )
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

    with sync_playwright() as pw:
        # launch() gives the browser a fresh temporary profile (user-data-dir) of its own.
        try:
            browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        except PlaywrightError as e:
            print(f"FAIL: cannot start {args.chromium}: {e}")
            return 1
        try:
            for backend in args.backend:
                started = time.time()
                log(f"backend {backend}")
                svc = None
                ok = False
                try:
                    svc = Service(args.binary, backend, admin_url, redis_url)
                    log(f"service on {svc.base} ({svc.work})")
                    run_backend(browser, svc)
                    ok = True
                except (AssertionError, PlaywrightError, RuntimeError, subprocess.CalledProcessError) as e:
                    check(False, f"{backend}: the walk-through stopped", f"{type(e).__name__}: {str(e)[:1500]}")
                finally:
                    if svc:
                        svc.cleanup(keep=args.keep_logs or not ok)
                log(f"backend {backend} took {time.time() - started:.0f}s")
        finally:
            browser.close()
    print(f"Summary: {RESULTS['passed']} passed, {RESULTS['failed']} failed")
    return 0 if RESULTS["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
