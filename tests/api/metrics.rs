//! `GET /metrics` after a known sequence of sends and failures, and the request id.
//! The metrics registry is per process and the tests share one process, so each test
//! names its provider uniquely and reads only its own series.

use std::collections::BTreeMap;

use messaging_service::domain::MessageStatus;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, permanent, sms_body, transient};

/// `name{a="1",b="2"} value` lines, keyed by name and sorted labels.
struct Scrape(BTreeMap<(String, BTreeMap<String, String>), f64>);

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (head, value) = line.rsplit_once(' ').expect("a sample line has a value");
            let value: f64 = value.parse().expect("a numeric sample value");
            let (name, labels) = match head.split_once('{') {
                None => (head.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("labels end with }");
                    let labels = body
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
            };
            series.insert((name, labels), value);
        }
        Self(series)
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let key = (
            name.to_owned(),
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        self.0.get(&key).copied()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in /metrics"))
    }

    /// Every label value of `label` seen on series called `name`.
    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.0
            .keys()
            .filter(|(n, _)| n == name)
            .filter_map(|(_, l)| l.get(label).cloned())
            .collect()
    }
}

async fn scrape(app: &TestApp) -> (String, Scrape) {
    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain"),
        "Prometheus text format, got {content_type}"
    );
    let text = resp.text().await.unwrap();
    let parsed = Scrape::parse(&text);
    (text, parsed)
}

#[tokio::test]
async fn metrics_count_sends_failures_and_retries_by_type_provider_and_reason() {
    let provider = format!("fake-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let app = TestApp::builder()
        .provider_name(&provider)
        .env("QUEUE_MAX_RETRIES", "1")
        .spawn()
        .await;
    let p = provider.as_str();

    // Two messages sent (sms, email), one rejected, one failing twice (retry, then exhausted).
    let a = app.send(&sms_body()).await;
    let a_id = a["id"].as_str().unwrap().to_owned();
    app.drain_until(&a_id, MessageStatus::Sent).await;
    let b = app
        .send(&json!({"from": "a@example.com", "to": "b@example.com", "type": "email", "subject": "s", "body": "b"}))
        .await;
    app.drain_until(b["id"].as_str().unwrap(), MessageStatus::Sent)
        .await;
    app.provider.fail_next([permanent("21211")]);
    let c = app.send(&sms_body()).await;
    app.drain_until(c["id"].as_str().unwrap(), MessageStatus::Failed)
        .await;
    app.provider.fail_next([transient("503"), transient("503")]);
    let d = app.send(&sms_body()).await;
    app.drain_until(d["id"].as_str().unwrap(), MessageStatus::Failed)
        .await;

    let (text, m) = scrape(&app).await;
    let sent = "message_sent_total";
    assert_eq!(m.value(sent, &[("type", "sms"), ("provider", p)]), 1.0);
    assert_eq!(m.value(sent, &[("type", "email"), ("provider", p)]), 1.0);
    assert_eq!(m.get(sent, &[("type", "mms"), ("provider", p)]), None);
    let failed = "message_failed_total";
    assert_eq!(
        m.value(
            failed,
            &[("type", "sms"), ("provider", p), ("reason", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            failed,
            &[
                ("type", "sms"),
                ("provider", p),
                ("reason", "retries_exhausted")
            ]
        ),
        1.0
    );
    assert_eq!(
        m.value("message_retries_total", &[("type", "sms"), ("provider", p)]),
        1.0
    );
    assert_eq!(
        m.value(
            "provider_errors_total",
            &[("provider", p), ("class", "rejected")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "provider_errors_total",
            &[("provider", p), ("class", "server_error")]
        ),
        2.0
    );
    let calls = "provider_request_duration_seconds_count";
    assert_eq!(
        m.value(calls, &[("provider", p), ("outcome", "success")]),
        2.0
    );
    assert_eq!(
        m.value(calls, &[("provider", p), ("outcome", "error")]),
        3.0
    );
    // A true histogram (buckets), not a summary.
    assert!(
        m.get(
            "provider_request_duration_seconds_bucket",
            &[("provider", p), ("outcome", "success"), ("le", "+Inf")]
        ) == Some(2.0),
        "provider latency has buckets"
    );
    assert!(text.contains("# TYPE message_processing_duration_seconds histogram"));

    // Request latency by method, route template and status; never the raw path.
    let sends = m.value(
        "api_request_duration_seconds_count",
        &[
            ("method", "POST"),
            ("route", "/api/v1/messages/send"),
            ("status", "201"),
        ],
    );
    assert!(sends >= 4.0, "at least this test's 4 sends, got {sends}");
    let routes = m.label_values("api_request_duration_seconds_count", "route");
    assert!(routes.contains(&"/api/v1/messages/{id}".to_owned()));
    assert!(
        routes.iter().all(|r| !r.contains(&a_id)),
        "a message id leaked into the route label: {routes:?}"
    );
    assert!(text.contains("# TYPE api_request_duration_seconds histogram"));

    // Present from the start, whether or not anything happened yet.
    for name in [
        "rate_limit_hits_total",
        "api_requests_in_flight",
        "queue_reclaimed_total",
        "sweeper_requeued_total",
        "queue_dead_letter_size",
        "queue_delayed",
        "db_pool_max_connections",
    ] {
        assert!(m.get(name, &[]).is_some(), "{name} should be exported");
    }
    for stream in [
        "message_queue:sms",
        "message_queue:mms",
        "message_queue:email",
    ] {
        assert!(m.get("queue_depth", &[("stream", stream)]).is_some());
    }
    assert!(
        m.get("db_pool_connections", &[("state", "idle")]).is_some()
            && m.get("db_pool_connections", &[("state", "in_use")])
                .is_some()
    );
}

#[tokio::test]
async fn unknown_routes_are_labelled_unmatched_not_by_their_path() {
    let app = TestApp::builder().spawn().await;
    let path = format!("/no-such-page-{}", Uuid::new_v4().simple());
    assert_eq!(app.get(&path).await.status(), 404);
    let (text, m) = scrape(&app).await;
    assert!(
        !text.contains(&path),
        "the raw path must not become a label"
    );
    assert!(
        m.get(
            "api_request_duration_seconds_count",
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        )
        .is_some()
    );
}

#[tokio::test]
async fn a_request_id_sent_by_the_client_is_echoed_back() {
    let app = TestApp::builder().spawn().await;
    let id = format!("trace-{}", Uuid::new_v4());
    let resp = app
        .client
        .post(app.url("/api/v1/messages/send"))
        .header("X-Request-ID", &id)
        .json(&sms_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-request-id"], id.as_str());
}

#[tokio::test]
async fn a_request_without_an_id_gets_a_fresh_one_in_the_response() {
    let app = TestApp::builder().spawn().await;
    let first = app.get("/health").await;
    let second = app.get("/health").await;
    let a = first.headers()["x-request-id"].to_str().unwrap().to_owned();
    let b = second.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(Uuid::parse_str(&a).is_ok(), "a generated UUID, got {a}");
    assert_ne!(a, b, "each request gets its own id");
}

#[tokio::test]
async fn labelled_counters_are_exported_at_zero_from_start_up() {
    use crate::helpers::KillOnDrop;
    use crate::process::{binary, free_port, wait_until_answers};

    // A fresh process: in this test binary's shared registry other tests count failures.
    let app = TestApp::builder().spawn().await;
    let port = free_port();
    let child = binary(&app, "all", &[("PORT", &port)])
        .spawn()
        .expect("start the binary");
    let _child = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    wait_until_answers(&format!("{base}/health")).await;
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let m = Scrape::parse(&text);

    // The default providers: the mock serves every channel.
    for kind in ["sms", "mms", "email"] {
        for reason in ["rejected", "retries_exhausted"] {
            assert_eq!(
                m.get(
                    "message_failed_total",
                    &[("type", kind), ("provider", "mock"), ("reason", reason)]
                ),
                Some(0.0),
                "message_failed_total{{type={kind},reason={reason}}}"
            );
        }
        for name in ["message_sent_total", "message_retries_total"] {
            assert_eq!(
                m.get(name, &[("type", kind), ("provider", "mock")]),
                Some(0.0),
                "{name}{{type={kind}}}"
            );
        }
    }
    for class in [
        "rate_limited",
        "timeout",
        "server_error",
        "other_transient",
        "rejected",
    ] {
        assert_eq!(
            m.get(
                "provider_errors_total",
                &[("provider", "mock"), ("class", class)]
            ),
            Some(0.0),
            "provider_errors_total{{class={class}}}"
        );
    }
    for provider in ["twilio", "sendgrid"] {
        assert_eq!(
            m.get(
                "webhook_deliveries_total",
                &[("provider", provider), ("outcome", "rejected")]
            ),
            Some(0.0)
        );
    }
    assert_eq!(m.get("log_write_errors_total", &[]), Some(0.0));
}
