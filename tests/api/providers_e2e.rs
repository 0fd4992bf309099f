//! End to end with real HTTP: `serve` + `worker` + `fake-providers` as separate processes.
//! A send reaches the fake Twilio as the exact request, the message becomes `sent` with the
//! fake's sid, the fake posts signed status callbacks to the service's public URL, and the
//! message ends `delivered`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::{KillOnDrop, TestApp};
use crate::providers_twilio::{SID, TOKEN};

fn binary(app: &TestApp, args: &[&str], env: &[(&str, &str)], stdout: Stdio) -> KillOnDrop {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_messaging-service"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", app.database_url().expose())
        .env("REDIS_URL", "redis://127.0.0.1:6379/0")
        .env("QUEUE_KEY_PREFIX", &app.prefix)
        .env("HOST", "127.0.0.1")
        .env("LOG_LEVEL", "warn")
        .stdout(stdout)
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    KillOnDrop(cmd.spawn().expect("start the binary"))
}

/// Real processes start slowly on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// The JSON at `url`, or `None` while it cannot be had.
async fn get_json(client: &reqwest::Client, url: String) -> Option<Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

/// The message once it has `status`, read through the API at `base`.
async fn wait_for_status(client: &reqwest::Client, base: &str, id: &str, status: &str) -> Value {
    crate::wait::until(
        &format!("the message to be {status}"),
        PATIENCE,
        async || {
            let m = get_json(client, format!("{base}/api/v1/messages/{id}")).await?;
            (m["status"] == status).then_some(m)
        },
    )
    .await
}

#[tokio::test]
async fn serve_worker_and_fake_providers_deliver_an_sms_over_real_http() {
    let app = TestApp::builder().spawn().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("http://127.0.0.1:{port}");

    // The fake prints its address first thing.
    let mut fake = binary(
        &app,
        &["fake-providers", "--port", "0", "--callback-delay-ms", "50"],
        &[("PUBLIC_BASE_URL", &public), ("TWILIO_AUTH_TOKEN", TOKEN)],
        Stdio::piped(),
    );
    let mut first = String::new();
    BufReader::new(fake.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let fake_base = first
        .trim()
        .strip_prefix("fake providers listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_owned();

    let env = [
        ("PORT", port.to_string()),
        ("SMS_PROVIDERS", "twilio".into()),
        ("TWILIO_ACCOUNT_SID", SID.into()),
        ("TWILIO_AUTH_TOKEN", TOKEN.into()),
        ("TWILIO_API_BASE", fake_base.clone()),
        ("PUBLIC_BASE_URL", public.clone()),
        ("QUEUE_BLOCK", "0.1".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let _serve = binary(&app, &["serve"], &env, Stdio::null());
    let _worker = binary(&app, &["worker"], &env, Stdio::null());

    let client = reqwest::Client::new();
    crate::wait::until("the API", PATIENCE, async || {
        client.get(format!("{public}/health")).send().await.ok()
    })
    .await;
    let created: Value = client
        .post(format!("{public}/api/v1/messages/send"))
        .json(
            &json!({"from": "+15551234567", "to": "+15559876543", "body": "Hello over real HTTP"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    let sent: Value = wait_for_status(&client, &public, &id, "sent").await;

    let requests: Value = client
        .get(format!("{fake_base}/_fake/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let requests = requests["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "exactly one provider call: {requests:?}");
    let req = &requests[0];
    assert_eq!(
        req["path"],
        format!("/2010-04-01/Accounts/{SID}/Messages.json")
    );
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"));
    assert_eq!(req["authorization"], format!("Basic {auth}"));
    assert_eq!(
        req["form"],
        json!([
            ["To", "+15559876543"],
            ["From", "+15551234567"],
            ["Body", "Hello over real HTTP"],
            ["StatusCallback", format!("{public}/api/v1/webhooks/twilio")],
        ])
    );
    assert_eq!(req["status"], 201);
    assert_eq!(sent["provider"], "twilio");
    assert_eq!(sent["provider_message_id"], req["id"]);
    assert_eq!(sent["num_segments"], 1);

    // The fake reports back to the service's public URL, signed as Twilio would sign it,
    // and the webhook handler turns the receipts into `delivered`.
    let callbacks: Vec<Value> = crate::wait::until("two status callbacks", PATIENCE, async || {
        let body = get_json(&client, format!("{fake_base}/_fake/callbacks")).await?;
        let list = body["callbacks"].as_array()?.clone();
        (list.len() == 2).then_some(list)
    })
    .await;
    for (callback, status) in callbacks.iter().zip(["sent", "delivered"]) {
        assert_eq!(callback["url"], format!("{public}/api/v1/webhooks/twilio"));
        assert_eq!(callback["status"], status);
        assert_eq!(callback["body"]["MessageSid"], sent["provider_message_id"]);
        assert_eq!(
            callback["response_status"], 200,
            "the service accepted the signed callback: {callback}"
        );
    }
    let delivered: Value = wait_for_status(&client, &public, &id, "delivered").await;
    assert!(delivered["delivered_at"].is_string());
}
