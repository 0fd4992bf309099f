//! Production mode, no credentials: every route that stores or changes data is refused
//! (401/403). The table is read from the routes the HTTP module declares (`.route("path",
//! method(...))` in `src/http/`), so a route added later is covered without editing it here.
//! The signed provider webhooks are not exempt from the rule: they refuse an unsigned request
//! with their own 401/403 (a signature error, not a missing API key).

use std::path::Path;

use serde_json::{Value, json};

use crate::helpers::{TestApp, TestAppBuilder, sms_body};
use crate::webhooks::{PUBLIC, TOKEN, sendgrid_signing_key};

/// Routes authenticated by the provider's signature (or the Inbound Parse secret).
const SIGNED_WEBHOOKS: [&str; 2] = ["/api/v1/webhooks/twilio", "/api/v1/webhooks/sendgrid"];

/// Every `(METHOD, path)` declared by a `.route(...)` call under `src/http/`.
pub fn declared_routes() -> Vec<(String, String)> {
    let mut routes = Vec::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut files = vec![dir];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read src/http") {
                files.push(entry.expect("dir entry").path());
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "tests.rs") {
            continue; // unit tests: their `.route(` calls are samples, not served routes
        }
        let text = std::fs::read_to_string(&path).expect("read a source file");
        // Only the code that is compiled into the service, not its unit tests.
        let served = text.split("#[cfg(test)]").next().unwrap_or_default();
        let mut rest = served;
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            // The call's arguments, up to the matching parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(rest.len(), |(i, _)| i);
            let args = &rest[..end];
            let Some(path) = args
                .trim_start()
                .strip_prefix('"')
                .and_then(|a| a.split('"').next())
                .filter(|p| p.starts_with('/'))
            else {
                continue; // a route built from a variable (the console's assets: GET only), or a
                // string that only mentions `.route(` (the document's own route scanner)
            };
            for method in ["get", "post", "put", "patch", "delete"] {
                let called = args.match_indices(&format!("{method}(")).any(|(i, _)| {
                    i == 0 || !args[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if called {
                    routes.push((method.to_ascii_uppercase(), path.to_owned()));
                }
            }
        }
    }
    routes.sort();
    routes.dedup();
    routes
}

fn production() -> TestAppBuilder {
    use base64::Engine;
    use p256::pkcs8::EncodePublicKey;
    let public_key = p256::PublicKey::from(sendgrid_signing_key().verifying_key())
        .to_public_key_der()
        .expect("der");
    TestApp::builder()
        .env("ENVIRONMENT", "production")
        .env("SECRET_KEY", "a-test-secret-that-is-not-the-default")
        .env("ALLOWED_HOSTS", "127.0.0.1")
        .env("API_KEY_CACHE_TTL", "0")
        .env("LOG_FORMAT", "text")
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("PUBLIC_BASE_URL", PUBLIC)
        .env(
            "SENDGRID_WEBHOOK_PUBLIC_KEY",
            &base64::engine::general_purpose::STANDARD.encode(public_key.as_bytes()),
        )
        .env("WEBHOOK_SECRET", "inbound-secret")
}

/// The path with every `{placeholder}` filled: ids with a fresh id, anything else (an
/// address) with an URL-encoded phone number.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&rest[..start]);
        match &rest[start + 1..start + len] {
            "id" => out.push_str(&uuid::Uuid::now_v7().to_string()),
            _ => out.push_str("%2B15551234567"),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// A body that would be accepted if the caller were allowed.
fn body_for(path: &str) -> Value {
    match path {
        "/api/webhooks/sms" => json!({
            "from": "+15559876543", "to": "+15551234567", "type": "sms",
            "messaging_provider_id": "forged-1", "body": "forged inbound",
            "attachments": null, "timestamp": "2024-11-01T14:00:00Z"
        }),
        "/api/webhooks/email" => json!({
            "from": "attacker@example.com", "to": "victim@example.com",
            "xillio_id": "forged-1", "body": "forged inbound", "attachments": [],
            "timestamp": "2024-11-01T14:00:00Z"
        }),
        _ => sms_body(),
    }
}

#[test]
fn the_route_table_is_read_from_the_source() {
    let routes = declared_routes();
    for expected in [
        ("POST", "/api/v1/messages/send"),
        ("POST", "/api/webhooks/sms"),
        ("POST", "/api/webhooks/email"),
        ("DELETE", "/api/v1/conversations/{id}"),
        ("PATCH", "/api/v1/conversations/{id}"),
        ("POST", "/api/v1/webhooks/twilio"),
        ("GET", "/health"),
    ] {
        assert!(
            routes.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} missing from {routes:?}"
        );
    }
}

#[tokio::test]
async fn in_production_every_route_that_changes_data_refuses_a_request_without_credentials() {
    let app = production().spawn().await;
    let mut checked = 0;
    for (method, path) in declared_routes() {
        if method == "GET" {
            continue;
        }
        let url = app.url(&concrete(&path));
        let req = match method.as_str() {
            "POST" => app.client.post(&url),
            "PUT" => app.client.put(&url),
            "PATCH" => app.client.patch(&url),
            "DELETE" => app.client.delete(&url),
            other => panic!("unexpected method {other}"),
        };
        let resp = req
            .json(&body_for(&path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status == 401 || status == 403,
            "{method} {path} without credentials answered {status} {body}"
        );
        if SIGNED_WEBHOOKS.contains(&path.as_str()) {
            assert_ne!(
                body["error"], "missing_api_key",
                "{path} is refused for its signature, not for an API key"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} routes checked");
    println!("unauthenticated: {checked} routes refused without credentials");
    let forged = app
        .db_count(
            "select count(*) from messages where body = $1",
            &["forged inbound"],
        )
        .await;
    assert_eq!(forged, 0, "nothing forged was stored");

    // A forged opt-out keyword would silence the recipient: refused like any inbound.
    let mut stop = body_for("/api/webhooks/sms");
    stop["body"] = json!("STOP");
    stop["messaging_provider_id"] = json!("forged-stop");
    let resp = app
        .client
        .post(app.url("/api/webhooks/sms"))
        .json(&stop)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401, "a forged STOP is refused");
    let suppressed = app.db_count("select count(*) from suppressions", &[]).await;
    assert_eq!(suppressed, 0, "no one was opted out");
}

#[tokio::test]
async fn in_production_legacy_inbound_accepts_the_webhook_secret_or_an_api_key() {
    let app = production().spawn().await;
    let path = "/api/webhooks/sms";
    let wrong = app
        .client
        .post(app.url(path))
        .bearer_auth("not-the-secret")
        .json(&body_for(path))
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);

    let bearer = app
        .client
        .post(app.url(path))
        .bearer_auth("inbound-secret")
        .json(&body_for(path))
        .send()
        .await
        .expect("request");
    assert_eq!(bearer.status(), 200, "WEBHOOK_SECRET as bearer token");

    let mut email = body_for("/api/webhooks/email");
    email["xillio_id"] = json!("basic-1");
    let basic = app
        .client
        .post(app.url("/api/webhooks/email"))
        .basic_auth("inbound", Some("inbound-secret"))
        .json(&email)
        .send()
        .await
        .expect("request");
    assert_eq!(basic.status(), 200, "WEBHOOK_SECRET as basic-auth password");
}

#[tokio::test]
async fn in_development_legacy_inbound_stays_open() {
    let app = TestApp::builder().spawn().await;
    let path = "/api/webhooks/sms";
    let resp = app
        .client
        .post(app.url(path))
        .json(&body_for(path))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
}
