//! End to end with real HTTP: `serve` and `worker` as separate processes, the fake providers
//! (the `fake-providers` tool's library) listening in the test process.
//! A send reaches the fake Twilio as the exact request, the message becomes `sent` with the
//! fake's sid, the fake posts signed status callbacks to the service's public URL, and the
//! message ends `delivered`.

use std::time::Duration;

use base64::Engine;
use fake_providers::FakeProvidersArgs;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{KillOnDrop, TestApp};
use crate::process::binary;
use crate::providers_twilio::{SID, TOKEN};

/// Real processes start slowly on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

/// The JSON at `url`, or `None` while it cannot be had.
async fn get_json(client: &reqwest::Client, url: String) -> Option<Value> {
    client.get(url).send().await.ok()?.json().await.ok()
}

/// The message once it has `status`, read through the API at `base`.
pub(crate) async fn wait_for_status(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    status: &str,
) -> Value {
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

    let stop_fake = CancellationToken::new();
    let fake = fake_providers::start(
        FakeProvidersArgs {
            callback_delay_ms: 50,
            no_callbacks: false,
            public_base_url: Some(public.clone()),
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
        ("PORT", port.to_string()),
        ("SMS_PROVIDERS", "twilio".into()),
        ("TWILIO_ACCOUNT_SID", SID.into()),
        ("TWILIO_AUTH_TOKEN", TOKEN.into()),
        ("TWILIO_API_BASE", fake_base.clone()),
        ("PUBLIC_BASE_URL", public.clone()),
        ("QUEUE_BLOCK", "0.1".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let start = |role| KillOnDrop(binary(&app, role, &env).spawn().expect("start the binary"));
    let (_serve, _worker) = (start("serve"), start("worker"));

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
