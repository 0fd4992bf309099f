//! Scheduled sends over HTTP: `send_at` on both send APIs, the scheduler promoting due
//! messages within a second, cancel, and durability (Redis flush, `kill -9` of every process).

use std::collections::HashMap;
use std::time::Duration;

use messaging_service::domain::MessageStatus;
use messaging_service::worker::scheduler;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{Backend, KillOnDrop, TestApp, backend, sms_body, spawn_app};
use crate::process::{binary, free_port, signal, wait_exit, wait_until_answers};
use crate::providers_e2e::wait_for_status;

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).expect("format a time")
}

fn instant(raw: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(raw.as_str().expect("a time"), &Rfc3339).expect("an RFC 3339 time")
}

/// `sent_at` of `message` is at or after `send_at`, by at most a second.
fn assert_sent_within_a_second_of(message: &Value, send_at: OffsetDateTime) {
    let sent_at = instant(&message["sent_at"]);
    assert!(sent_at >= send_at, "sent early: {sent_at} < {send_at}");
    assert!(
        sent_at - send_at <= time::Duration::seconds(1),
        "sent {} after its time",
        sent_at - send_at
    );
}

/// How many times message `id` moved to `pending` (its audit trail).
async fn promotions(app: &TestApp, id: &str) -> usize {
    app.events(id)
        .await
        .iter()
        .filter(|e| e["to_status"] == "pending")
        .count()
}

/// An SMS to be sent `ahead` from now.
fn scheduled_sms(ahead: time::Duration) -> (Value, OffsetDateTime) {
    let at = OffsetDateTime::now_utc() + ahead;
    let mut body = sms_body();
    body["send_at"] = Value::from(rfc3339(at));
    (body, at)
}

async fn cancel(app: &TestApp, id: &str) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/messages/{id}/cancel")))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn deliverer(app: &TestApp) -> messaging_service::worker::Deliverer {
    app.components.deliverer(&app.settings)
}

/// The worker as the binary runs it (queue loop, housekeeping and scheduler), until the
/// returned token is cancelled.
fn run_worker(app: &TestApp) -> CancellationToken {
    let token = CancellationToken::new();
    tokio::spawn(
        app.worker
            .clone()
            .run(token.clone(), Duration::from_secs(1)),
    );
    token
}

#[tokio::test]
async fn a_message_scheduled_two_seconds_ahead_stays_scheduled_then_is_sent_within_a_second() {
    let app = spawn_app().await;
    let stop = run_worker(&app);
    let (body, at) = scheduled_sms(time::Duration::seconds(2));
    let created = app.send(&body).await;
    assert_eq!(created["status"], "scheduled");
    let send_at = instant(&created["send_at"]);
    assert!((send_at - at).abs() < time::Duration::milliseconds(1));
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.xlen("message_queue:sms").await,
        0,
        "not queued until due"
    );

    // Until its time it stays scheduled.
    while OffsetDateTime::now_utc() < send_at - time::Duration::milliseconds(200) {
        let m = app.message(&id).await;
        assert_eq!(m["status"], "scheduled", "{m}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then it goes out within a second of its time.
    let sent = wait_for_status(&app.client, &app.address, &id, "sent").await;
    assert_sent_within_a_second_of(&sent, send_at);
    assert_eq!(app.provider.calls_for(id.parse().unwrap()), 1);
    let moves: Vec<(Value, Value)> = app
        .events(&id)
        .await
        .iter()
        .map(|e| (e["from_status"].clone(), e["to_status"].clone()))
        .collect();
    assert_eq!(moves[0], (Value::Null, json!("scheduled")));
    assert_eq!(moves[1], (json!("scheduled"), json!("pending")));
    stop.cancel();
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let promoted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("scheduled_promoted_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(promoted.is_some_and(|n| n >= 1.0), "{promoted:?}");
}

#[tokio::test]
async fn several_workers_send_each_scheduled_message_exactly_once() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    let mut last = OffsetDateTime::now_utc();
    for n in 0..40 {
        let (mut body, at) = scheduled_sms(time::Duration::milliseconds(1000 + 10 * n));
        body["to"] = Value::from(format!("+1555000{n:04}"));
        ids.push(app.send(&body).await["id"].as_str().unwrap().to_owned());
        last = at;
    }
    // Three workers, each with its own scheduler, on the one database and queue.
    let stop = CancellationToken::new();
    for _ in 0..3 {
        let worker = messaging_service::worker::Worker::new(deliverer(&app));
        tokio::spawn(worker.run(stop.clone(), Duration::from_secs(1)));
    }
    for id in &ids {
        wait_for_status(&app.client, &app.address, id, "sent").await;
    }
    assert!(OffsetDateTime::now_utc() >= last);
    stop.cancel();
    for id in &ids {
        assert_eq!(app.provider.calls_for(id.parse().unwrap()), 1, "{id}");
        assert_eq!(promotions(&app, id).await, 1, "{id} promoted once");
    }
}

#[tokio::test]
async fn a_message_promoted_by_a_scheduler_that_died_before_enqueueing_is_swept_and_sent() {
    let app = TestApp::builder().env("QUEUE_SWEEP_AGE", "0").spawn().await;
    let (body, _) = scheduled_sms(time::Duration::ZERO);
    let id = app.send(&body).await["id"].as_str().unwrap().to_owned();
    // The promotion commits, then the process dies: nothing reaches the queue.
    let promoted = app.components.store.promote_due(100).await.unwrap();
    assert_eq!(promoted.len(), 1);
    assert_eq!(app.xlen("message_queue:sms").await, 0);
    assert_eq!(app.message(&id).await["status"], "pending");
    // The sweeper finds the pending message and enqueues it.
    crate::wait::until(
        "the sweeper to enqueue it",
        Duration::from_secs(10),
        async || (app.worker.sweep_once().await.unwrap() == 1).then_some(()),
    )
    .await;
    app.drain_until(&id, MessageStatus::Sent).await;
    assert_eq!(app.provider.calls_for(id.parse().unwrap()), 1);
}

#[tokio::test]
async fn a_message_canceled_before_its_time_is_canceled_and_never_sent() {
    let app = spawn_app().await;
    let (body, at) = scheduled_sms(time::Duration::seconds(1));
    let id = app.send(&body).await["id"].as_str().unwrap().to_owned();

    let (status, canceled) = cancel(&app, &id).await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["id"], id.as_str());

    // Past its time, the scheduler and the worker leave it alone.
    let stop = run_worker(&app);
    while OffsetDateTime::now_utc() < at + time::Duration::milliseconds(1500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(scheduler::promote_once(&deliverer(&app)).await.unwrap(), 0);
    stop.cancel();
    assert_eq!(app.message(&id).await["status"], "canceled");
    assert_eq!(app.provider.total_calls(), 0, "the provider never got it");
    let last = app.events(&id).await.pop().expect("events");
    assert_eq!(last["from_status"], "scheduled");
    assert_eq!(last["to_status"], "canceled");

    // Canceled is a resting state: a second cancel is refused.
    let (status, again) = cancel(&app, &id).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(again["error"], "not_cancelable");
}

#[tokio::test]
async fn cancel_after_the_message_fell_due_is_409_and_an_unknown_message_404() {
    let app = spawn_app().await;
    // Due now: accepted (within the allowed skew) and promoted at the next pass.
    let (body, _) = scheduled_sms(time::Duration::ZERO);
    let id = app.send(&body).await["id"].as_str().unwrap().to_owned();
    assert_eq!(scheduler::promote_once(&deliverer(&app)).await.unwrap(), 1);
    let (status, err) = cancel(&app, &id).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"], "not_cancelable");
    assert_eq!(app.message(&id).await["status"], "pending");
    app.drain_until(&id, MessageStatus::Sent).await;
    assert_eq!(cancel(&app, &id).await.0, 409);
    assert_eq!(app.provider.calls_for(id.parse().unwrap()), 1);

    let (status, err) = cancel(&app, &Uuid::now_v7().to_string()).await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"], "not_found");
    // A message sent at once was never scheduled.
    let now = app.send(&sms_body()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(cancel(&app, &now).await.0, 409);
}

#[tokio::test]
async fn send_at_in_the_past_more_than_35_days_ahead_or_without_an_offset_is_422_naming_it() {
    let app = spawn_app().await;
    let now = OffsetDateTime::now_utc();
    let cases = [
        rfc3339(now - time::Duration::minutes(1)),
        rfc3339(now + time::Duration::days(36)),
        "2030-01-01T10:00:00".to_owned(),
        "tomorrow".to_owned(),
    ];
    for raw in &cases {
        let mut body = sms_body();
        body["send_at"] = Value::from(raw.as_str());
        let resp = app.post_send(&body).await;
        assert_eq!(resp.status(), 422, "{raw}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"], "validation_error");
        assert_eq!(err["details"]["field"], "send_at", "{raw}: {err}");

        let resp = post_original_sms(&app, &body).await;
        assert_eq!(resp.status(), 422, "original API, {raw}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["details"]["field"], "send_at");
    }
    let (_, list) = app.get_json("/api/v1/messages").await;
    assert_eq!(list["total"], 0, "nothing stored");

    // 35 days ahead is still fine.
    let (body, _) = scheduled_sms(time::Duration::days(35) - time::Duration::minutes(1));
    assert_eq!(app.send(&body).await["status"], "scheduled");
}

async fn post_original_sms(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/messages/sms"))
        .json(body)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn the_original_api_schedules_too_and_answers_201_with_send_at() {
    let app = spawn_app().await;
    let (mut body, at) = scheduled_sms(time::Duration::hours(1));
    body.as_object_mut().unwrap().remove("type");
    let resp = post_original_sms(&app, &body).await;
    assert_eq!(resp.status(), 201);
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["status"], "success");
    assert!((instant(&accepted["send_at"]) - at).abs() < time::Duration::milliseconds(1));
    let id = accepted["message_id"].as_str().unwrap();
    assert_eq!(app.message(id).await["status"], "scheduled");
    assert_eq!(app.xlen("message_queue:sms").await, 0);
}

#[tokio::test]
async fn listing_filters_scheduled_and_canceled_messages() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (body, _) = scheduled_sms(time::Duration::hours(2));
        ids.push(app.send(&body).await["id"].as_str().unwrap().to_owned());
    }
    app.send(&sms_body()).await;
    assert_eq!(cancel(&app, &ids[0]).await.0, 200);
    let mut totals: HashMap<&str, i64> = HashMap::new();
    for s in ["scheduled", "canceled", "pending"] {
        let (status, list) = app.get_json(&format!("/api/v1/messages?status={s}")).await;
        assert_eq!(status, 200, "{list}");
        totals.insert(s, list["total"].as_i64().unwrap());
    }
    assert_eq!(totals["scheduled"], 2);
    assert_eq!(totals["canceled"], 1);
    assert_eq!(totals["pending"], 1);
    let (status, err) = app.get_json("/api/v1/messages?status=later").await;
    assert_eq!(status, 422);
    assert!(
        err["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("scheduled, canceled"),
        "{err}"
    );
}

#[tokio::test]
async fn a_repeated_idempotency_key_with_another_send_at_is_a_conflict() {
    let app = spawn_app().await;
    let (body, _) = scheduled_sms(time::Duration::hours(1));
    let first = app.post_send_with_key(&body, "sched-1").await;
    assert_eq!(first.status(), 201);
    let again = app.post_send_with_key(&body, "sched-1").await;
    assert_eq!(again.status(), 200, "the same request repeats the first");
    let (other, _) = scheduled_sms(time::Duration::hours(3));
    let conflict = app.post_send_with_key(&other, "sched-1").await;
    assert_eq!(conflict.status(), 409);
}

#[tokio::test]
async fn a_scheduled_message_survives_a_redis_flush() {
    if !crate::helpers::requires_postgres_and_redis("a_scheduled_message_survives_a_redis_flush") {
        return;
    }
    let app = spawn_app().await;
    let (body, _) = scheduled_sms(time::Duration::seconds(1));
    let id = app.send(&body).await["id"].as_str().unwrap().to_owned();
    flush_prefix(&app).await;
    assert!(
        crate::scratch::ScratchPrefix::keys_under(&app.prefix)
            .await
            .unwrap()
            .is_empty()
    );
    let stop = run_worker(&app);
    wait_for_status(&app.client, &app.address, &id, "sent").await;
    stop.cancel();
    assert_eq!(app.provider.calls_for(id.parse().unwrap()), 1);
}

/// Every key of the test's deployment gone, as after `FLUSHALL` (the shared Redis itself is
/// not flushed: other tests use it).
async fn flush_prefix(app: &TestApp) {
    let keys = crate::scratch::ScratchPrefix::keys_under(&app.prefix)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("UNLINK")
            .arg(keys)
            .query_async(&mut app.redis().await)
            .await
            .unwrap();
    }
}

/// Schedules an SMS 3 s ahead through the API at `base`: its id and `send_at`.
async fn schedule_through(client: &reqwest::Client, base: &str) -> (String, OffsetDateTime) {
    let (body, _) = scheduled_sms(time::Duration::seconds(3));
    let resp = client
        .post(format!("{base}/api/v1/messages/send"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    (id, instant(&created["send_at"]))
}

#[tokio::test]
async fn a_scheduled_message_survives_kill_9_of_the_api_and_the_worker_and_a_redis_flush() {
    if !crate::helpers::requires_postgres_and_redis(
        "a_scheduled_message_survives_kill_9_of_the_api_and_the_worker_and_a_redis_flush",
    ) {
        return;
    }
    let app = spawn_app().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let worker_env = [("SCHEDULER_INTERVAL_MS", "100")];
    let mut api = KillOnDrop(binary(&app, "serve", &[("PORT", &port)]).spawn().unwrap());
    let mut worker = KillOnDrop(binary(&app, "worker", &worker_env).spawn().unwrap());
    wait_until_answers(&format!("{base}/health")).await;

    let (id, send_at) = schedule_through(&reqwest::Client::new(), &base).await;

    signal(&api, "KILL");
    signal(&worker, "KILL");
    wait_exit(&mut api, Duration::from_secs(5)).await;
    wait_exit(&mut worker, Duration::from_secs(5)).await;
    flush_prefix(&app).await;
    assert_eq!(app.message(&id).await["status"], "scheduled");

    let _worker = KillOnDrop(binary(&app, "worker", &worker_env).spawn().unwrap());
    let sent = wait_for_status(&app.client, &app.address, &id, "sent").await;
    assert_sent_within_a_second_of(&sent, send_at);
    assert_eq!(promotions(&app, &id).await, 1, "promoted once");
}

#[tokio::test]
async fn a_scheduled_message_survives_kill_9_of_the_embedded_process() {
    if backend() == Backend::Embedded {
        crate::helpers::skip(
            "a_scheduled_message_survives_kill_9_of_the_embedded_process",
            "runs in the default pass only: it starts its own embedded process",
        );
        return;
    }
    let scratch = crate::scratch::ScratchDir::new("messaging-scheduled");
    let dir = scratch.path().to_path_buf();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let sent_log = dir.join("sent.log");
    let start = || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_messaging-service"));
        cmd.current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOST", "127.0.0.1")
            .env("PORT", &port)
            .env("LOG_LEVEL", "warn")
            .env("MOCK_PROVIDER_LATENCY_MS", "0")
            .env("MOCK_PROVIDER_SENT_LOG", sent_log.display().to_string())
            .env("SCHEDULER_INTERVAL_MS", "100")
            // The test polls faster than the default limit allows.
            .env("RATE_LIMIT_ENABLED", "false")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        KillOnDrop(cmd.spawn().expect("start the binary"))
    };
    let client = reqwest::Client::new();
    let mut first = start();
    wait_until_answers(&format!("{base}/health")).await;
    let (id, send_at) = schedule_through(&client, &base).await;
    signal(&first, "KILL");
    wait_exit(&mut first, Duration::from_secs(5)).await;

    let _second = start();
    wait_until_answers(&format!("{base}/health")).await;
    let sent = wait_for_status(&client, &base, &id, "sent").await;
    assert_sent_within_a_second_of(&sent, send_at);
    let log = std::fs::read_to_string(&sent_log).unwrap_or_default();
    assert_eq!(log.matches(id.as_str()).count(), 1, "sent exactly once");
}
