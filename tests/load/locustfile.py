"""Locust load test for the messaging service: the same mix as `make bench --mix mixed`
(70% SMS, 10% MMS, 20% email sends to distinct recipients), plus occasional reads of a
message just sent, as a client polling for its status would do.

    pip install locust
    locust -f tests/load/locustfile.py --host=http://localhost:8080
    # headless: 50 users, 10 new users per second, 2 minutes
    locust -f tests/load/locustfile.py --host=http://localhost:8080 \
        --headless -u 50 -r 10 -t 2m

A worker must be running for messages to leave `pending` (make worker &); the load test
itself only needs the API. Watch throughput, latency and queue depth in Grafana
(http://localhost:3000) while it runs. A 429 (rate limited) counts as a failure, so raise
RATE_LIMIT_REQUESTS or set RATE_LIMIT_ENABLED=false on the service to measure raw capacity.
"""

import random
import uuid

from locust import HttpUser, between, task

SEND = "/api/v1/messages/send"


def random_phone():
    return "+1555%07d" % random.randrange(10_000_000)


class MessagingUser(HttpUser):
    # A short think time between one user's requests.
    wait_time = between(0.05, 0.2)

    def on_start(self):
        self.sender = uuid.uuid4().hex[:8]
        self.seq = 0
        self.recent = []

    def tag(self):
        self.seq += 1
        return "%s-%d" % (self.sender, self.seq)

    def send(self, payload, name):
        with self.client.post(SEND, json=payload, name=name, catch_response=True) as resp:
            if resp.status_code != 201:
                resp.failure("HTTP %d: %s" % (resp.status_code, resp.text[:200]))
                return
            try:
                body = resp.json()
            except ValueError:
                resp.failure("201 without a JSON body")
                return
            if body.get("status") not in ("pending", "sent"):
                resp.failure("unexpected status %r" % body.get("status"))
                return
            self.recent = (self.recent + [body["id"]])[-20:]

    @task(70)
    def send_sms(self):
        tag = self.tag()
        self.send(
            {
                "from": "+15551234567",
                "to": random_phone(),
                "type": "sms",
                "body": "Your verification code is %06d. Ref %s" % (random.randrange(1_000_000), tag),
            },
            "POST /api/v1/messages/send [sms]",
        )

    @task(10)
    def send_mms(self):
        tag = self.tag()
        self.send(
            {
                "from": "+15551234567",
                "to": random_phone(),
                "type": "mms",
                "body": "Here is the photo you asked for (ref %s)" % tag,
                "attachments": ["https://cdn.example.com/media/%s.jpg" % uuid.uuid4()],
            },
            "POST /api/v1/messages/send [mms]",
        )

    @task(20)
    def send_email(self):
        tag = self.tag()
        self.send(
            {
                "from": "notifications@example.com",
                "to": "user%d@example.org" % random.randrange(1_000_000),
                "type": "email",
                "subject": "Your order %s has shipped" % tag,
                "body": "<p>Hello,</p><p>Your order <b>%s</b> is on its way.</p>" % tag,
            },
            "POST /api/v1/messages/send [email]",
        )

    @task(5)
    def read_status(self):
        if not self.recent:
            return
        message_id = random.choice(self.recent)
        self.client.get("/api/v1/messages/%s" % message_id, name="GET /api/v1/messages/{id}")
