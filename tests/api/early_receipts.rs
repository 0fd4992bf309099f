//! Early receipts end to end: the fake Twilio posts each message's signed status callbacks
//! (`sent`, `delivered`) and waits for the service's answers *before* it answers the create
//! call, so every receipt arrives before the worker can have recorded the sid. Every message
//! must still end `delivered`. On PostgreSQL + Redis with `serve` and `worker` as real
//! processes (2,000 SMS); on the embedded backend with the API and the worker loop in this
//! process (fewer, `EARLY_RECEIPTS_EMBEDDED_COUNT`, default 300).

use std::time::{Duration, Instant};

use fake_providers::FakeProvidersArgs;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Backend, KillOnDrop, TestApp, backend};
use crate::process::{binary, free_port};
use crate::providers_twilio::{SID, TOKEN};

const DRAIN_PATIENCE: Duration = Duration::from_secs(600);

fn count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test]
async fn receipts_posted_before_the_create_call_answers_all_end_delivered() {
    let embedded = backend() == Backend::Embedded;
    let n = if embedded {
        count("EARLY_RECEIPTS_EMBEDDED_COUNT", 300)
    } else {
        count("EARLY_RECEIPTS_COUNT", 2000)
    };
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");

    let stop_fake = CancellationToken::new();
    let fake = fake_providers::start(
        FakeProvidersArgs {
            no_callbacks: false,
            callbacks_before_answer: true,
            twilio_auth_token: Some(TOKEN.into()),
            ..FakeProvidersArgs::in_process()
        },
        stop_fake.clone(),
    )
    .await
    .expect("start the fake providers");
    let _stop_fake = stop_fake.drop_guard();
    let fake_base = format!("http://{fake}");

    let env = [
        ("SMS_PROVIDERS", "twilio".to_owned()),
        ("TWILIO_ACCOUNT_SID", SID.into()),
        ("TWILIO_AUTH_TOKEN", TOKEN.into()),
        ("TWILIO_API_BASE", fake_base.clone()),
        ("PUBLIC_BASE_URL", public.clone()),
        ("PACING_ENABLED", "false".into()),
        ("RATE_LIMIT_ENABLED", "false".into()),
        ("QUEUE_BLOCK", "0.1".into()),
    ];
    let mut builder = TestApp::builder();
    if embedded {
        builder = builder.real_providers().env("PORT", &port);
        for (k, v) in &env {
            builder = builder.env(k, v);
        }
    }
    let app = builder.spawn().await;
    let stop_worker = CancellationToken::new();
    let _stop_worker = stop_worker.clone().drop_guard();
    let mut processes: Vec<KillOnDrop> = Vec::new();
    if embedded {
        tokio::spawn(
            app.worker
                .clone()
                .run(stop_worker.clone(), Duration::from_secs(1)),
        );
    } else {
        let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.push(("PORT", &port));
        env.push(("LOG_LEVEL", "warn"));
        for role in ["serve", "worker"] {
            processes.push(KillOnDrop(
                binary(&app, role, &env).spawn().expect("start the binary"),
            ));
        }
    }

    let client = reqwest::Client::new();
    crate::wait::until("the API", Duration::from_secs(60), async || {
        client.get(format!("{public}/health")).send().await.ok()
    })
    .await;

    let started = Instant::now();
    let accepted = futures_util::stream::iter(0..n)
        .map(|i| {
            let client = client.clone();
            let url = format!("{public}/api/v1/messages/send");
            async move {
                let body = json!({
                    "from": "+15551234567",
                    "to": format!("+1555{:07}", i),
                    "body": format!("early receipt {i}"),
                });
                client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 201)
            }
        })
        .buffer_unordered(32)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    assert_eq!(accepted, n, "every send is accepted");

    let delivered = crate::wait::until("every message delivered", DRAIN_PATIENCE, async || {
        let delivered = app
            .db_count(
                "select count(*) from messages where status = 'delivered'",
                &[],
            )
            .await;
        if delivered as usize == n {
            Some(delivered)
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        }
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();

    let callbacks: Value = client
        .get(format!("{fake_base}/_fake/callbacks"))
        .send()
        .await
        .expect("callbacks")
        .json()
        .await
        .expect("json");
    let callbacks = callbacks["callbacks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(callbacks.len(), 2 * n, "two callbacks per message");
    assert!(
        callbacks.iter().all(|c| c["response_status"] == 200),
        "the service answered every early callback 200"
    );
    let kept = app
        .db_count("select count(*) from unmatched_receipts", &[])
        .await;
    assert_eq!(kept, 0, "every kept receipt was applied");
    let unmatched = app
        .db_count(
            "select count(*) from webhook_deliveries where outcome = 'unknown_message'",
            &[],
        )
        .await;
    assert_eq!(unmatched, 0, "every early receipt's log row was settled");
    println!(
        "early_receipts ({}): accepted {accepted}, delivered {delivered}, {} callbacks all \
         before the create call's answer, 0 kept left, {seconds:.1} s to drain",
        if embedded {
            "embedded"
        } else {
            "postgres+redis"
        },
        callbacks.len(),
    );
}
