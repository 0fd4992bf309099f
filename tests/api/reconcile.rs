//! Reconciling before a re-send: a message whose earlier claim expired is looked up at the
//! provider (Twilio's message list, as the fake serves it) and recorded instead of sent again.

use std::time::{Duration, Instant};

use base64::Engine;
use messaging_service::domain::MessageStatus;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::providers_pacing::fake_twilio;
use crate::providers_twilio::{SID, TOKEN};

fn auth() -> String {
    let creds = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    format!("Basic {creds}")
}

async fn post_to_fake(base: &str, to: &str, from: &str, body: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/2010-04-01/Accounts/{SID}/Messages.json"))
        .header("authorization", auth())
        .form(&[("To", to), ("From", from), ("Body", body)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn posts(base: &str) -> usize {
    let body: Value = reqwest::get(format!("{base}/_fake/requests"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "POST")
        .count()
}

async fn app_on(base: &str) -> TestApp {
    TestApp::builder()
        .real_providers()
        .env("SMS_PROVIDERS", "twilio")
        .env("TWILIO_ACCOUNT_SID", SID)
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("TWILIO_API_BASE", base)
        .env("PACING_ENABLED", "false")
        .env("QUEUE_VISIBILITY_TIMEOUT", "0.3")
        .spawn()
        .await
}

/// A worker reads and claims the message, then dies; `sent_before_dying` says whether its
/// provider call got through first.
async fn a_worker_dies_holding(
    app: &TestApp,
    base: &str,
    body: &str,
    sent_before_dying: bool,
) -> String {
    let created = app
        .send(&json!({"from": "+15551234567", "to": "+15559876543", "body": body}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let dead = app
        .components
        .queue
        .fetch("doomed-worker", 10, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    let claim = app
        .components
        .store
        .claim(&[id.parse().unwrap()], Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(claim.messages.len(), 1);
    if sent_before_dying {
        post_to_fake(base, "+15559876543", "+15551234567", body).await;
    }
    id
}

async fn reclaim_until_settled(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        app.worker.reclaim_once().await.unwrap();
        let m = app.message(id).await;
        if m["status"] == MessageStatus::Sent.as_str() {
            return m;
        }
        assert!(Instant::now() < deadline, "never settled: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_message_the_dead_worker_had_sent_is_found_at_twilio_and_not_sent_again() {
    let (base, _stop) = fake_twilio().await;
    let app = app_on(&base).await;
    // Other messages to the same number are not mistaken for it.
    for i in 0..3 {
        post_to_fake(&base, "+15559876543", "+15551234567", &format!("other {i}")).await;
    }
    let id = a_worker_dies_holding(&app, &base, "sent just before the crash", true).await;
    let m = reclaim_until_settled(&app, &id).await;
    assert_eq!(posts(&base).await, 4, "no second send");
    assert_eq!(m["provider"], "twilio");
    assert!(m["provider_message_id"].as_str().unwrap().starts_with("SM"));
}

#[tokio::test]
async fn a_message_the_dead_worker_never_sent_is_sent_once() {
    let (base, _stop) = fake_twilio().await;
    let app = app_on(&base).await;
    let id = a_worker_dies_holding(&app, &base, "never left the building", false).await;
    reclaim_until_settled(&app, &id).await;
    assert_eq!(posts(&base).await, 1);
}

#[tokio::test]
async fn the_fake_lists_messages_newest_first_filtered_and_paged() {
    let (base, _stop) = fake_twilio().await;
    for i in 0..5 {
        post_to_fake(&base, "+15550000001", "+15551234567", &format!("m{i}")).await;
    }
    post_to_fake(&base, "+15550000002", "+15551234567", "elsewhere").await;
    let client = reqwest::Client::new();
    let mut url = format!(
        "{base}/2010-04-01/Accounts/{SID}/Messages.json?To=%2B15550000001&DateSent%3E=2020-01-01&PageSize=2"
    );
    let mut bodies = Vec::new();
    let mut pages = 0;
    loop {
        let page: Value = client
            .get(&url)
            .header("authorization", auth())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pages += 1;
        for m in page["messages"].as_array().unwrap() {
            bodies.push(m["body"].as_str().unwrap().to_owned());
            assert_eq!(m["status"], "sent");
        }
        match page["next_page_uri"].as_str() {
            Some(next) => url = format!("{base}{next}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(bodies, ["m4", "m3", "m2", "m1", "m0"]);
    let later: Value = client
        .get(format!(
            "{base}/2010-04-01/Accounts/{SID}/Messages.json?DateSent%3E=2999-01-01T00:00:00Z"
        ))
        .header("authorization", auth())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(later["messages"], json!([]));
    let unauthorized = client
        .get(format!("{base}/2010-04-01/Accounts/{SID}/Messages.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
}
