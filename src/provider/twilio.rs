//! Twilio Programmable Messaging (sms, mms): a form POST to
//! `{TWILIO_API_BASE}/2010-04-01/Accounts/{sid}/Messages.json` with basic auth.

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::http::{classify, client, transport_error};
use super::{Provider, ProviderError, Receipt};
use crate::config::providers::TwilioSettings;
use crate::domain::Message;

/// Where our status-callback handler listens, under `PUBLIC_BASE_URL`.
pub const STATUS_CALLBACK_PATH: &str = "/api/v1/webhooks/twilio";

pub struct TwilioProvider {
    settings: TwilioSettings,
    status_callback: Option<String>,
    client: reqwest::Client,
}

/// The 201 answer (only what we keep).
#[derive(Deserialize)]
struct Created {
    sid: String,
    num_segments: Option<String>,
}

/// One page of `GET Messages.json` (only what reconciling reads).
#[derive(Deserialize)]
struct MessagePage {
    #[serde(default)]
    messages: Vec<Listed>,
    next_page_uri: Option<String>,
}

#[derive(Deserialize)]
struct Listed {
    sid: String,
    body: Option<String>,
    num_segments: Option<String>,
    status: Option<String>,
}

/// Pages read at most when looking for a message (50 messages each).
const RECONCILE_MAX_PAGES: usize = 20;

/// Twilio's error body: `{"code": 21211, "message": "...", "more_info": "...", "status": 400}`.
#[derive(Deserialize)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

impl TwilioProvider {
    pub fn new(
        settings: TwilioSettings,
        public_base_url: Option<&str>,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            settings,
            status_callback: public_base_url.map(|b| format!("{b}{STATUS_CALLBACK_PATH}")),
            client: client(timeout)?,
        })
    }

    fn form(&self, message: &Message) -> Vec<(&'static str, String)> {
        let mut form = vec![("To", message.to.clone())];
        match &self.settings.messaging_service_sid {
            Some(sid) => form.push(("MessagingServiceSid", sid.clone())),
            None => form.push(("From", message.from.clone())),
        }
        if let Some(body) = &message.body {
            form.push(("Body", body.clone()));
        }
        for url in &message.attachments {
            form.push(("MediaUrl", url.clone()));
        }
        if let Some(cb) = &self.status_callback {
            form.push(("StatusCallback", cb.clone()));
        }
        form
    }
}

#[async_trait]
impl Provider for TwilioProvider {
    fn name(&self) -> &str {
        "twilio"
    }

    #[tracing::instrument(skip_all, fields(message_id = %message.id, provider = "twilio"))]
    async fn send(&self, message: &Message) -> Result<Receipt, ProviderError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.settings.api_base, self.settings.account_sid
        );
        let resp = self
            .client
            .post(url)
            .basic_auth(
                &self.settings.account_sid,
                Some(self.settings.auth_token.expose_secret()),
            )
            .form(&self.form(message))
            .send()
            .await
            .map_err(|e| transport_error(&e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| transport_error(&e))?;
        if status.is_success() {
            let created: Created =
                serde_json::from_slice(&body).map_err(|e| ProviderError::Transient {
                    code: "bad_response".into(),
                    message: format!(
                        "Twilio accepted the message but its answer is unreadable: {e}"
                    ),
                    retry_after: None,
                })?;
            return Ok(Receipt {
                provider_message_id: created.sid,
                provider: Some(self.name().to_owned()),
                num_segments: created.num_segments.and_then(|n| n.trim().parse().ok()),
            });
        }
        let err: Option<TwilioError> = serde_json::from_slice(&body).ok();
        let (code, text) = match err {
            Some(e) => (e.code.map(|c| c.to_string()), e.message),
            None => (None, None),
        };
        Err(classify(status, &headers, code, text))
    }

    /// Lists the account's messages to this recipient from this sender sent since `since`
    /// (a minute earlier, for clocks that differ) and returns the one with this body, if
    /// any, following `next_page_uri`. A message sent through a Messaging Service is listed
    /// without a known `From`, so only `To` filters it.
    #[tracing::instrument(skip_all, fields(message_id = %message.id, provider = "twilio"))]
    async fn find_sent(
        &self,
        message: &Message,
        since: time::OffsetDateTime,
    ) -> Result<Option<Receipt>, ProviderError> {
        let after = (since - std::time::Duration::from_secs(60))
            .to_offset(time::UtcOffset::UTC)
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .map_err(|e| ProviderError::Transient {
                code: "bad_request".into(),
                message: format!("formatting DateSent: {e}"),
                retry_after: None,
            })?;
        let mut query = vec![("To", message.to.clone()), ("DateSent>", after)];
        if self.settings.messaging_service_sid.is_none() {
            query.push(("From", message.from.clone()));
        }
        query.push(("PageSize", "50".into()));
        let encoded = {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &query {
                q.append_pair(k, v);
            }
            q.finish()
        };
        let first = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json?{encoded}",
            self.settings.api_base, self.settings.account_sid
        );
        let mut request = self.client.get(first);
        for _ in 0..RECONCILE_MAX_PAGES {
            let resp = request
                .basic_auth(
                    &self.settings.account_sid,
                    Some(self.settings.auth_token.expose_secret()),
                )
                .send()
                .await
                .map_err(|e| transport_error(&e))?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(|e| transport_error(&e))?;
            if !status.is_success() {
                // Not knowing is not a refusal of the message: ask again later.
                return Err(match classify(status, &headers, None, None) {
                    ProviderError::Permanent { code, message } => ProviderError::Transient {
                        code,
                        message,
                        retry_after: None,
                    },
                    other => other,
                });
            }
            let page: MessagePage =
                serde_json::from_slice(&body).map_err(|e| ProviderError::Transient {
                    code: "bad_response".into(),
                    message: format!("Twilio's message list is unreadable: {e}"),
                    retry_after: None,
                })?;
            let found = page.messages.into_iter().find(|m| {
                m.body == message.body
                    && !matches!(m.status.as_deref(), Some("failed" | "canceled"))
            });
            if let Some(m) = found {
                return Ok(Some(Receipt {
                    provider_message_id: m.sid,
                    provider: Some(self.name().to_owned()),
                    num_segments: m.num_segments.and_then(|n| n.trim().parse().ok()),
                }));
            }
            let Some(next) = page.next_page_uri else {
                return Ok(None);
            };
            request = self.client.get(format!("{}{next}", self.settings.api_base));
        }
        Ok(None)
    }
}
