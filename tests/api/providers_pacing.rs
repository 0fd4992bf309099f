//! Per-sender pacing across workers: two workers, each with its own providers and pacer,
//! share one sender's pace through Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_providers::FakeProvidersArgs;
use messaging_service::app::Components;
use messaging_service::provider::build_providers;
use messaging_service::provider::pacing::RedisPacer;
use messaging_service::worker::Worker;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::TestApp;
use crate::providers_twilio::{SID, TOKEN};

/// The fake Twilio, in process, recording when each request arrived.
pub async fn fake_twilio() -> (String, CancellationToken) {
    let args = FakeProvidersArgs::in_process();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let router = fake_providers::router(args).unwrap();
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(s.cancelled_owned())
            .await
    });
    (base, stop)
}

async fn recorded(base: &str) -> Vec<Value> {
    let body: Value = reqwest::get(format!("{base}/_fake/requests"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["requests"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn pacing_holds_a_senders_rate_across_two_workers_within_ten_percent() {
    if !crate::helpers::requires_postgres_and_redis(
        "pacing_holds_a_senders_rate_across_two_workers_within_ten_percent",
    ) {
        return;
    }
    const RATE: f64 = 10.0;
    const N: usize = 40;
    let (base, _stop) = fake_twilio().await;
    let app = TestApp::builder()
        .real_providers()
        .env("SMS_PROVIDERS", "twilio")
        .env("TWILIO_ACCOUNT_SID", SID)
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("TWILIO_API_BASE", &base)
        .env("PACING_RATE_LONG_CODE", &RATE.to_string())
        .env("PACING_MAX_WAIT", "1")
        .spawn()
        .await;

    // A second worker with providers and a pacer of its own, as another process would have.
    let other = Components {
        providers: build_providers(
            &app.settings,
            Arc::new(RedisPacer::new(&app.settings.redis_url, &app.prefix).unwrap()),
        )
        .unwrap(),
        ..app.components.clone()
    };
    let workers = [
        app.worker.clone(),
        Worker::new(other.deliverer(&app.settings)),
    ];

    let burst = json!({"from": "+15551230000", "to": "+15559876543", "body": "burst"});
    let mut ids = Vec::new();
    for _ in 0..N {
        ids.push(app.send(&burst).await["id"].as_str().unwrap().to_owned());
    }
    // Another sender is not held up by the first one's pace.
    let unrelated = app
        .send(&json!({"from": "+15557770000", "to": "+15559876543", "body": "other"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let stop = CancellationToken::new();
    let started = Instant::now();
    let running: Vec<_> = workers
        .into_iter()
        .map(|w| tokio::spawn(w.run(stop.clone(), Duration::from_secs(5))))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut unrelated_sent_after = None;
    loop {
        let (_, list) = app.get_json("/api/v1/messages?status=sent&limit=1").await;
        if unrelated_sent_after.is_none() && app.message(&unrelated).await["status"] == "sent" {
            unrelated_sent_after = Some(started.elapsed());
        }
        if list["total"].as_u64() == Some(N as u64 + 1) {
            break;
        }
        assert!(Instant::now() < deadline, "not all sent in time: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    for r in running {
        r.await.unwrap().unwrap();
    }

    let mut at: Vec<i64> = recorded(&base)
        .await
        .iter()
        .filter(|r| {
            r["form"]
                .as_array()
                .unwrap()
                .iter()
                .any(|kv| kv[1] == "+15551230000")
        })
        .map(|r| r["received_at_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(at.len(), N, "each message sent exactly once");
    at.sort();
    let span = (at[N - 1] - at[0]) as f64 / 1000.0;
    let rate = (N - 1) as f64 / span;
    assert!(
        (rate - RATE).abs() <= RATE * 0.10,
        "{N} messages over {span:.2}s is {rate:.2}/s, not within 10% of {RATE}/s"
    );
    // No second is over the pace either. Arrival times at the fake carry scheduling jitter
    // (the suite runs in parallel on few cores: a send granted its slot may reach the fake
    // late and land beside the next one), so allow two messages of it.
    for w in at.windows(RATE as usize + 3) {
        assert!(
            w[w.len() - 1] - w[0] >= 1000,
            "more than {RATE} sends within one second: {w:?}"
        );
    }
    assert!(
        unrelated_sent_after.is_some_and(|d| d < Duration::from_secs(2)),
        "the other sender waited {unrelated_sent_after:?}"
    );
    // Deferrals are not retries.
    for id in &ids {
        assert_eq!(app.message(id).await["retry_count"], 0);
    }
    let mut deferred = false;
    for id in &ids {
        deferred |= app
            .events(id)
            .await
            .iter()
            .any(|e| e["detail"]["error_code"] == "paced");
    }
    assert!(
        deferred,
        "the burst's tail was deferred through the delayed set"
    );
}
