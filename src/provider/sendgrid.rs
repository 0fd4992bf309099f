//! SendGrid v3 (email): a JSON POST to `{SENDGRID_API_BASE}/v3/mail/send` with bearer auth.
//! Attachments are fetched by the worker and sent base64-encoded (see `attachments`).

use async_trait::async_trait;
use base64::Engine;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};

use super::attachments::{email_parts, fetch_all};
use super::http::{classify, client, transport_error};
use super::{Provider, ProviderError, Receipt};
use crate::config::providers::SendgridSettings;
use crate::domain::Message;

/// SendGrid requires a subject; an email sent without one gets this.
pub const NO_SUBJECT: &str = "(no subject)";

pub struct SendgridProvider {
    settings: SendgridSettings,
    client: reqwest::Client,
    /// Fetches attachment URLs, through the URL guard.
    attachments: reqwest::Client,
    attachment_max_bytes: usize,
    /// `SENDGRID_RECONCILE_WAIT`: see [`SendgridProvider::find_sent`].
    reconcile_wait: std::time::Duration,
}

#[derive(Deserialize)]
struct ErrorBody {
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    message: Option<String>,
    field: Option<String>,
}

impl SendgridProvider {
    pub fn new(
        settings: SendgridSettings,
        timeout: std::time::Duration,
        attachment_max_bytes: usize,
        guard: crate::net::UrlGuard,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            settings,
            client: client(timeout)?,
            attachments: super::attachments::client(guard, timeout)?,
            attachment_max_bytes,
            reconcile_wait: std::time::Duration::ZERO,
        })
    }

    /// How long after an expired claim a re-send waits for the message's events.
    pub fn with_reconcile_wait(mut self, wait: std::time::Duration) -> Self {
        self.reconcile_wait = wait;
        self
    }

    async fn payload(&self, message: &Message) -> Result<Value, ProviderError> {
        let (text, html) = email_parts(message.body.as_deref(), &message.metadata);
        let mut content = vec![json!({"type": "text/plain", "value": text})];
        if let Some(html) = html {
            content.push(json!({"type": "text/html", "value": html}));
        }
        // Our id travels with the message, so events correlate even without the X-Message-Id.
        let custom_args = json!({"message_id": message.id.to_string()});
        let mut payload = json!({
            "personalizations": [{
                "to": [{"email": message.to}],
                "custom_args": custom_args,
            }],
            "from": {"email": message.from},
            "subject": message.subject.as_deref().unwrap_or(NO_SUBJECT),
            "content": content,
            "custom_args": custom_args,
        });
        if !message.attachments.is_empty() {
            let files = fetch_all(
                &self.attachments,
                &message.attachments,
                self.attachment_max_bytes,
            )
            .await?;
            payload["attachments"] = files
                .into_iter()
                .map(|a| {
                    json!({
                        "content": base64::engine::general_purpose::STANDARD.encode(&a.bytes),
                        "filename": a.filename,
                        "type": a.content_type,
                        "disposition": "attachment",
                    })
                })
                .collect();
        }
        Ok(payload)
    }
}

#[async_trait]
impl Provider for SendgridProvider {
    fn name(&self) -> &str {
        "sendgrid"
    }

    /// SendGrid has no cheap lookup: its events (which carry our id) record a send that was
    /// accepted. Until `SENDGRID_RECONCILE_WAIT` has passed since the earlier claim, the
    /// re-send is deferred (not an attempt) so they can arrive; after that it is sent.
    async fn find_sent(
        &self,
        _message: &Message,
        since: time::OffsetDateTime,
    ) -> Result<Option<Receipt>, ProviderError> {
        match super::reconcile_wait_left(
            since,
            self.reconcile_wait,
            time::OffsetDateTime::now_utc(),
        ) {
            Some(left) => Err(ProviderError::Deferred {
                reason: "waiting for SendGrid events (SENDGRID_RECONCILE_WAIT)".into(),
                retry_after: left,
            }),
            None => Ok(None),
        }
    }

    #[tracing::instrument(skip_all, fields(message_id = %message.id, provider = "sendgrid"))]
    async fn send(&self, message: &Message) -> Result<Receipt, ProviderError> {
        let payload = self.payload(message).await?;
        let resp = self
            .client
            .post(format!("{}/v3/mail/send", self.settings.api_base))
            .bearer_auth(self.settings.api_key.expose_secret())
            .json(&payload)
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        if status.is_success() {
            let id = headers
                .get("x-message-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                // Without the header, our own id still correlates events (custom_args).
                .unwrap_or_else(|| message.id.to_string());
            return Ok(Receipt {
                provider_message_id: id,
                provider: Some(self.name().to_owned()),
                num_segments: None,
            });
        }
        let body = resp.bytes().await.unwrap_or_default();
        let text = serde_json::from_slice::<ErrorBody>(&body).ok().map(|b| {
            b.errors
                .iter()
                .map(|e| match (&e.field, &e.message) {
                    (Some(f), Some(m)) => format!("{f}: {m}"),
                    (None, Some(m)) => m.clone(),
                    (Some(f), None) => f.clone(),
                    (None, None) => String::new(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        });
        Err(classify(
            status,
            &headers,
            None,
            text.filter(|t| !t.is_empty()),
        ))
    }
}
