//! Generated and mutated requests thrown at the API in-process (through the full middleware
//! stack): whatever a client sends, the answer is never a 5xx, the service never panics, an
//! error is always the standard JSON body, and a rejected request stores nothing.
//!
//! `FUZZ_REQUESTS` (default 100000) and `FUZZ_SEED` (default: fixed) tune a run; a failure
//! prints the request index, which with the seed reproduces that request.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use crate::helpers::TestApp;

const DEFAULT_REQUESTS: usize = 100_000;
const DEFAULT_SEED: u64 = 0x5EC0_2026;
const CONCURRENCY: usize = 16;
/// The tracking header's prefix: a stored message with such a key came from this test.
const TRACK: &str = "fuzz-";

/// One generated request, kept small enough to print when it fails.
struct Case {
    method: Method,
    path: String,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// `Some(i)` when the request carries `Idempotency-Key: fuzz-i`.
    tracked: Option<usize>,
}

impl Case {
    fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(300).collect();
        format!(
            "{} {} content-type={:?} headers={:?} body={body:?}",
            self.method, self.path, self.content_type, self.headers
        )
    }
}

struct Gen {
    rng: fastrand::Rng,
}

impl Gen {
    fn chance(&mut self, p: f64) -> bool {
        self.rng.f64() < p
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.usize(..items.len())]
    }

    fn weird_string(&mut self) -> String {
        // Mostly short: long strings cost time in every layer and the length limits are
        // probed by `pick_len` too.
        let len = match self.rng.u8(..200) {
            0..10 => 0,
            10..13 => self.rng.usize(1500..1700),
            13 => self.rng.usize(5000..20_000),
            _ => self.rng.usize(1..40),
        };
        let alphabet: &[char] = &[
            'a', 'Z', '0', '9', '+', '@', '.', ' ', '\0', '\n', '\r', '\t', '"', '\\', '/', '%',
            '{', '[', 'é', 'ß', '日', '😀', '\u{202e}', '\u{feff}', '\u{7f}', '\u{1}', '-', '_',
            ':', '?', '#', '<', '>', '\'',
        ];
        (0..len)
            .map(|_| alphabet[self.rng.usize(..alphabet.len())])
            .collect()
    }

    fn phone_like(&mut self) -> String {
        let digits = self.rng.usize(0..20);
        let mut s = String::from(self.pick(&["+", "", "+0", "00", "+1 ", "++"]));
        for _ in 0..digits {
            s.push(char::from(b'0' + self.rng.u8(..10)));
        }
        s
    }

    fn email_like(&mut self) -> String {
        let local = self.pick(&["user", "", "a.b", ".x", "x..y", "ü", "a+b", "\0"]);
        let domain = self.pick(&["example.com", "", "com", "-x.com", "x..com", "日本.jp"]);
        format!("{local}{}{domain}", self.pick(&["@", "@@", "", "@ "]))
    }

    fn scalar(&mut self) -> Value {
        match self.rng.u8(..8) {
            0 => Value::Null,
            1 => Value::Bool(self.rng.bool()),
            2 => json!(self.rng.i64(..)),
            3 => json!(self.rng.f64() * 1e300),
            4 => json!(u64::MAX),
            _ => Value::String(self.weird_string()),
        }
    }

    fn value(&mut self, depth: usize) -> Value {
        if depth > 4 || self.chance(0.6) {
            return self.scalar();
        }
        if self.rng.bool() {
            Value::Array(
                (0..self.rng.usize(0..5))
                    .map(|_| self.value(depth + 1))
                    .collect(),
            )
        } else {
            let mut m = Map::new();
            for _ in 0..self.rng.usize(0..5) {
                m.insert(self.weird_string(), self.value(depth + 1));
            }
            Value::Object(m)
        }
    }

    fn deep(&mut self) -> Value {
        let mut v = json!("bottom");
        for _ in 0..self.rng.usize(20..200) {
            // Built by hand: `json!` would re-serialize the whole value at every level.
            v = if self.rng.bool() {
                Value::Array(vec![v])
            } else {
                Value::Object(Map::from_iter([("k".to_owned(), v)]))
            };
        }
        v
    }

    fn valid_send(&mut self) -> Value {
        match self.rng.u8(..3) {
            0 => {
                json!({"from": "+15551234567", "to": "+15559876543", "type": "sms", "body": "fuzz"})
            }
            1 => json!({
                "from": "+15551234567", "to": "+15559876543", "type": "mms", "body": "fuzz",
                "attachments": ["https://example.com/a.png"]
            }),
            _ => json!({
                "from": "a@example.com", "to": "b@example.com", "type": "email",
                "subject": "fuzz", "body": "<p>fuzz</p>", "metadata": {"k": "v"}
            }),
        }
    }

    /// One structural change to a send request.
    fn mutate_send(&mut self, v: &mut Value) {
        let Value::Object(m) = v else {
            return;
        };
        let fields = [
            "from",
            "to",
            "type",
            "body",
            "subject",
            "attachments",
            "metadata",
            "idempotency_key",
        ];
        let field = self.pick(&fields).to_owned();
        let new = match self.rng.u8(..12) {
            0 => {
                m.remove(&field);
                return;
            }
            1 => Value::String(self.phone_like()),
            2 => Value::String(self.email_like()),
            3 => Value::String(self.pick(&["sms", "mms", "email", "SMS", "fax", ""]).into()),
            4 => json!(
                (0..self.rng.usize(0..14))
                    .map(|_| {
                        Value::String(
                            self.pick(&[
                                "https://example.com/x.png",
                                "javascript:alert(1)",
                                "http://",
                                "ftp://example.com/f",
                                "data:text/plain,hi",
                            ])
                            .into(),
                        )
                    })
                    .collect::<Vec<_>>()
            ),
            5 => self.deep(),
            6 => Value::String("x".repeat(self.pick_len())),
            7 => Value::String("é".repeat(self.pick_len())),
            8 => {
                m.insert(self.weird_string(), self.value(0));
                return;
            }
            _ => self.value(0),
        };
        m.insert(field, new);
    }

    fn pick_len(&mut self) -> usize {
        [0, 1, 78, 998, 1599, 1600, 1601, 10_000, 20_000][self.rng.usize(..9)]
    }

    /// Byte-level damage to an encoded body.
    fn mutate_bytes(&mut self, bytes: &mut Vec<u8>) {
        if bytes.is_empty() {
            bytes.push(self.rng.u8(..));
            return;
        }
        let at = self.rng.usize(..bytes.len());
        match self.rng.u8(..6) {
            0 => bytes[at] = self.rng.u8(..),
            1 => bytes.insert(at, self.rng.u8(..)),
            2 => {
                let end = (at + self.rng.usize(1..16)).min(bytes.len());
                bytes.drain(at..end);
            }
            3 => bytes.truncate(at),
            4 => {
                let end = (at + self.rng.usize(1..32)).min(bytes.len());
                let chunk = bytes[at..end].to_vec();
                bytes.splice(at..at, chunk);
            }
            _ => bytes.insert(
                at,
                *b"{}[]\",:\\\0\xff"
                    .get(self.rng.usize(..12))
                    .unwrap_or(&b'x'),
            ),
        }
    }

    fn id_segment(&mut self) -> String {
        match self.rng.u8(..8) {
            0 | 1 => uuid::Uuid::new_v4().to_string(),
            2 => uuid::Uuid::nil().to_string(),
            3 => "%00%ff%2F..".into(),
            4 => "9".repeat(self.rng.usize(1..300)),
            5 => uuid::Uuid::new_v4().simple().to_string(),
            6 => "'; drop table messages; --".replace(' ', "%20"),
            _ => "not-a-uuid".into(),
        }
    }

    fn query(&mut self) -> String {
        let keys = [
            "limit",
            "offset",
            "status",
            "direction",
            "type",
            "conversation_id",
            "x",
            "q",
        ];
        let vals = [
            "-1",
            "0",
            "1",
            "100",
            "101",
            "9999999999999999999999",
            "sent",
            "%zz",
            "",
            "a%00b",
            "pending",
        ];
        let mut pairs: Vec<String> = (0..self.rng.usize(0..5))
            .map(|_| format!("{}={}", self.pick(&keys), self.pick(&vals)))
            .collect();
        // Mostly small pages: rendering 100 stored messages per request is slow and finds
        // nothing new.
        if self.chance(0.9) {
            pairs.insert(0, "limit=2".into());
        }
        pairs.join("&")
    }

    fn case(&mut self, index: usize) -> Case {
        let mut headers = Vec::new();
        let mut tracked = None;
        let kind = self.rng.u8(..100);
        let (method, path, body, content_type) = if kind < 55 {
            // The send route: a valid request, then structural and byte-level damage.
            let mut v = self.valid_send();
            for _ in 0..self.rng.usize(0..4) {
                self.mutate_send(&mut v);
            }
            let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
            if self.chance(0.25) {
                for _ in 0..self.rng.usize(1..4) {
                    self.mutate_bytes(&mut bytes);
                }
            }
            if self.chance(0.0005) {
                bytes = vec![b' '; 2 * 1024 * 1024 + 10];
            }
            if self.chance(0.9) {
                tracked = Some(index);
                headers.push(("idempotency-key".into(), format!("{TRACK}{index}")));
            }
            let ct = self.content_type();
            (Method::POST, "/api/v1/messages/send".to_owned(), bytes, ct)
        } else if kind < 75 {
            let id = self.id_segment();
            let path = match self.rng.u8(..3) {
                0 => format!("/api/v1/messages/{id}"),
                1 => format!("/api/v1/messages/{id}/events"),
                _ => format!("/api/v1/messages?{}", self.query()),
            };
            let method = if self.chance(0.9) {
                Method::GET
            } else {
                self.method()
            };
            (method, path, Vec::new(), None)
        } else {
            // Every other route of the API contract, with arbitrary bodies.
            let id = self.id_segment();
            let path = self
                .pick(&[
                    "/api/v1/conversations",
                    "/api/v1/conversations/{id}",
                    "/api/v1/conversations/{id}/messages",
                    "/api/v1/conversations/{id}/read",
                    "/api/v1/conversations/search",
                    "/api/v1/messages/{id}/status",
                    "/api/v1/messages/{id}/retry",
                    "/api/v1/webhooks/twilio",
                    "/api/v1/webhooks/sendgrid",
                    "/api/messages/sms",
                    "/api/messages/email",
                    "/api/webhooks/sms",
                    "/api/webhooks/email",
                    "/api/conversations",
                    "/api/conversations/{id}/messages",
                ])
                .replace("{id}", &id);
            let mut body = if self.rng.bool() {
                serde_json::to_vec(&self.value(0)).unwrap_or_default()
            } else {
                format!(
                    "From=%2B1555&To={}&Body={}",
                    self.phone_like(),
                    self.weird_string()
                )
                .into_bytes()
            };
            if self.chance(0.3) {
                self.mutate_bytes(&mut body);
            }
            if self.chance(0.5) {
                tracked = Some(index);
                headers.push(("idempotency-key".into(), format!("{TRACK}{index}")));
            }
            let ct = self.content_type();
            (self.method(), path, body, ct)
        };
        if self.chance(0.05) {
            headers.retain(|(k, _)| k != "idempotency-key");
            headers.push(("idempotency-key".into(), self.weird_string()));
            tracked = None;
        }
        Case {
            method,
            path,
            content_type,
            headers,
            body,
            tracked,
        }
    }

    fn method(&mut self) -> Method {
        [
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::PUT,
        ][self.rng.usize(..5)]
        .clone()
    }

    fn content_type(&mut self) -> Option<String> {
        match self.rng.u8(..20) {
            0 => None,
            1 => Some("text/plain".into()),
            2 => Some("application/x-www-form-urlencoded".into()),
            3 => Some("application/json; charset=utf-16".into()),
            4 => Some("multipart/form-data; boundary=x".into()),
            5 => Some("application/problem+json".into()),
            _ => Some("application/json".into()),
        }
    }
}

#[derive(Default)]
struct Tally {
    sent: usize,
    by_class: [usize; 6],
    accepted_tracked: HashSet<usize>,
    created_by_send: HashSet<usize>,
    accepted_posts: usize,
    failures: Vec<String>,
}

fn build(case: &Case) -> Option<Request<Body>> {
    let mut req = Request::builder()
        .method(case.method.clone())
        .uri(&case.path);
    if let Some(ct) = &case.content_type {
        req = req.header("content-type", ct);
    }
    for (k, v) in &case.headers {
        req = req.header(k, v);
    }
    req.body(Body::from(case.body.clone())).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_generated_and_mutated_requests_never_get_a_5xx_or_store_a_rejected_request()
 {
    let total: usize = std::env::var("FUZZ_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_REQUESTS);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let app = TestApp::builder()
        .env("INGEST_WRITERS", "4")
        .env("DB_MAX_CONNECTIONS", "8")
        .spawn()
        .await;
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();

    let workers = (0..CONCURRENCY).map(|_| {
        let (router, next, tally) = (app.router.clone(), next.clone(), tally.clone());
        tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= total {
                    return;
                }
                let mut generator = Gen {
                    rng: fastrand::Rng::with_seed(
                        seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    ),
                };
                let case = generator.case(index);
                let Some(request) = build(&case) else {
                    // Not even expressible as an HTTP request (e.g. a bad header value).
                    tally.lock().unwrap().sent += 1;
                    continue;
                };
                let response = router.clone().oneshot(request).await.expect("infallible");
                let status = response.status();
                let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .unwrap_or_default();
                let mut t = tally.lock().unwrap();
                t.sent += 1;
                t.by_class[usize::from(status.as_u16() / 100).min(5)] += 1;
                if status.is_server_error() {
                    t.failures.push(format!(
                        "#{index}: {status} for {} -> {}",
                        case.describe(),
                        String::from_utf8_lossy(&bytes)
                    ));
                    continue;
                }
                if status.is_client_error() {
                    let error = serde_json::from_slice::<Value>(&bytes)
                        .ok()
                        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned));
                    if error.is_none() {
                        t.failures.push(format!(
                            "#{index}: {status} without the JSON error body for {}: {}",
                            case.describe(),
                            String::from_utf8_lossy(&bytes)
                        ));
                    }
                }
                if status.is_success() {
                    if case.method == Method::POST {
                        t.accepted_posts += 1;
                    }
                    if let Some(i) = case.tracked {
                        t.accepted_tracked.insert(i);
                        if status == 201 && case.path == "/api/v1/messages/send" {
                            t.created_by_send.insert(i);
                        }
                    }
                }
            }
        })
    });
    for w in futures_util::future::join_all(workers).await {
        w.expect("a request made the service panic");
    }
    let elapsed = started.elapsed();

    let keys = app
        .db_strings(
            "select idempotency_key from messages where idempotency_key like 'fuzz-%'",
            &[],
        )
        .await;
    let rows = app.db_count("select count(*) from messages", &[]).await;
    let stored: HashSet<usize> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(TRACK)?.parse().ok())
        .collect();

    let t = tally.lock().unwrap();
    println!(
        "fuzz: {} requests (seed {seed}) in {:.1}s: 2xx {}, 4xx {}, 5xx {}; {} messages stored",
        t.sent,
        elapsed.as_secs_f64(),
        t.by_class[2],
        t.by_class[4],
        t.by_class[5],
        rows
    );
    assert_eq!(t.sent, total);
    assert!(
        t.failures.is_empty(),
        "{} failures, first ones:\n{}",
        t.failures.len(),
        t.failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let rejected_but_stored: Vec<_> = stored.difference(&t.accepted_tracked).take(10).collect();
    assert!(
        rejected_but_stored.is_empty(),
        "rejected requests stored rows: {rejected_but_stored:?}"
    );
    let accepted_not_stored: Vec<_> = t.created_by_send.difference(&stored).take(10).collect();
    assert!(
        accepted_not_stored.is_empty(),
        "201 without a row: {accepted_not_stored:?}"
    );
    assert!(
        rows as usize <= t.accepted_posts,
        "{rows} rows for {} accepted POSTs",
        t.accepted_posts
    );
    assert!(
        t.by_class[2] > 1_000,
        "the generator must also produce valid requests"
    );
}
