//! Rate limiting as the operations guide specifies: a sliding window per client and
//! endpoint in Redis, headers on every answer, 429 with the guide's body, fail-open.

use std::collections::HashMap;

use futures_util::future::join_all;
use messaging_service::app::Application;
use messaging_service::domain::NewApiKey;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, TestAppBuilder, sms_body};

fn limited(requests: u32) -> TestAppBuilder {
    TestApp::builder()
        .env("RATE_LIMIT_ENABLED", "true")
        .env("RATE_LIMIT_REQUESTS", &requests.to_string())
        .env("RATE_LIMIT_PERIOD", "60")
}

fn header(resp: &reqwest::Response, name: &str) -> Option<u64> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn the_first_requests_up_to_the_limit_succeed_with_decreasing_remaining_then_429() {
    let app = limited(5).spawn().await;
    for expected_remaining in (0..5).rev() {
        let resp = app.get("/health").await;
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "x-ratelimit-limit"), Some(5));
        assert_eq!(
            header(&resp, "x-ratelimit-remaining"),
            Some(expected_remaining)
        );
        assert_eq!(header(&resp, "x-ratelimit-reset"), Some(60));
    }
    let resp = app.get("/health").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-ratelimit-limit"), Some(5));
    assert_eq!(header(&resp, "x-ratelimit-remaining"), Some(0));
    let reset = header(&resp, "x-ratelimit-reset").expect("X-RateLimit-Reset on a 429");
    assert!((1..=60).contains(&reset), "reset {reset}");
    let retry_after = header(&resp, "retry-after").expect("Retry-After on a 429");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error": "Rate limit exceeded", "message": "Too many requests. Please try again later."})
    );
}

#[tokio::test]
async fn two_instances_sharing_redis_admit_exactly_the_limit_of_200_concurrent_requests() {
    if !crate::helpers::requires_postgres_and_redis(
        "two_instances_sharing_redis_admit_exactly_the_limit_of_200_concurrent_requests",
    ) {
        return;
    }
    let first = limited(50).spawn().await;
    // A second API instance on the same database, Redis and key prefix.
    let second = Application::build(first.settings.clone(), first.components.clone())
        .await
        .expect("second instance");
    let second_url = format!("http://127.0.0.1:{}/health", second.port());
    let stop = CancellationToken::new();
    tokio::spawn(second.run_until_stopped(stop.clone()));

    let client = reqwest::Client::new();
    let requests = (0..200).map(|i| {
        let url = if i % 2 == 0 {
            first.url("/health")
        } else {
            second_url.clone()
        };
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    });
    let mut counts: HashMap<u16, usize> = HashMap::new();
    for status in join_all(requests).await {
        *counts.entry(status).or_default() += 1;
    }
    stop.cancel();
    assert_eq!(counts.get(&200), Some(&50), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&150), "{counts:?}");
}

#[tokio::test]
async fn each_endpoint_has_its_own_window_and_a_route_template_is_one_endpoint() {
    let app = limited(2).spawn().await;
    for _ in 0..2 {
        assert_eq!(app.get("/health").await.status(), 200);
    }
    assert_eq!(app.get("/health").await.status(), 429);
    assert_eq!(
        app.get("/ready").await.status(),
        200,
        "/ready is another endpoint"
    );

    // Two different ids are the same endpoint, /api/v1/messages/{id}.
    let a = app
        .get(&format!("/api/v1/messages/{}", uuid::Uuid::new_v4()))
        .await;
    let b = app
        .get(&format!("/api/v1/messages/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (404, 404));
    assert_eq!(header(&b, "x-ratelimit-remaining"), Some(0));
    let c = app
        .get(&format!("/api/v1/messages/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(c.status(), 429);
}

#[tokio::test]
async fn a_refused_send_stores_nothing() {
    let app = limited(2).spawn().await;
    app.send(&sms_body()).await;
    app.send(&sms_body()).await;
    let refused = app.post_send(&sms_body()).await;
    assert_eq!(refused.status(), 429);
    let (_, list) = app.get_json("/api/v1/messages").await;
    assert_eq!(list["total"], 2);
}

#[tokio::test]
async fn an_api_key_is_its_own_client_apart_from_the_address() {
    let app = limited(1).spawn().await;
    let (key, new) = NewApiKey::generate("limits").expect("key");
    app.components
        .store
        .create_api_key(&new)
        .await
        .expect("store key");
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/health").await.status(), 429);
    let with_key = app
        .client
        .get(app.url("/health"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("request");
    assert_eq!(with_key.status(), 200, "the key has its own window");
}

async fn get_from(app: &TestApp, forwarded_for: &str) -> u16 {
    app.client
        .get(app.url("/health"))
        .header("X-Forwarded-For", forwarded_for)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test]
async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let behind_proxy = limited(1).env("TRUSTED_PROXIES", "127.0.0.1").spawn().await;
    assert_eq!(get_from(&behind_proxy, "198.51.100.1").await, 200);
    assert_eq!(get_from(&behind_proxy, "198.51.100.2").await, 200);
    assert_eq!(get_from(&behind_proxy, "198.51.100.1").await, 429);

    let direct = limited(1).spawn().await;
    assert_eq!(get_from(&direct, "198.51.100.1").await, 200);
    assert_eq!(
        get_from(&direct, "198.51.100.2").await,
        429,
        "an untrusted peer cannot choose its identity"
    );
}

#[tokio::test]
async fn requests_are_let_through_while_redis_is_unreachable_and_limited_again_after() {
    if !crate::helpers::requires_postgres_and_redis(
        "requests_are_let_through_while_redis_is_unreachable_and_limited_again_after",
    ) {
        return;
    }
    let app = limited(2).redis_proxy().spawn().await;
    let proxy = app.redis_proxy.as_ref().expect("proxy");
    proxy.cut();
    for _ in 0..5 {
        let resp = app.get("/health").await;
        assert_eq!(resp.status(), 200, "fails open");
        assert_eq!(header(&resp, "x-ratelimit-limit"), Some(2));
    }
    proxy.restore();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if app.get("/health").await.status() == 429 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "limiting never resumed after Redis came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn with_rate_limiting_disabled_no_headers_are_sent_and_nothing_is_refused() {
    let app = TestApp::builder()
        .env("RATE_LIMIT_ENABLED", "false")
        .env("RATE_LIMIT_REQUESTS", "1")
        .spawn()
        .await;
    for _ in 0..3 {
        let resp = app.get("/health").await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("x-ratelimit-limit").is_none());
    }
}
