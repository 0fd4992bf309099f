//! SMTP (email) for teams without SendGrid: `SMTP_URL` names the server, its TLS mode and
//! credentials (`smtp://user:pass@host:587?tls=required` for STARTTLS, `smtps://` for
//! implicit TLS). Sends proper MIME: text with an HTML alternative, attachments. The
//! `Message-ID` we set is stored as the provider id.

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::attachments::{email_parts, fetch_all};
use super::{Provider, ProviderError, Receipt};
use crate::config::ConnectionUrl;
use crate::domain::Message;

pub struct SmtpProvider {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// Fetches attachment URLs, through the URL guard.
    client: reqwest::Client,
    attachment_max_bytes: usize,
}

impl SmtpProvider {
    pub fn new(
        url: &ConnectionUrl,
        timeout: std::time::Duration,
        attachment_max_bytes: usize,
        guard: crate::net::UrlGuard,
    ) -> anyhow::Result<Self> {
        super::install_crypto_provider();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
            .map_err(|e| anyhow::anyhow!("SMTP_URL {} is not usable: {e}", url.redacted()))?
            .timeout(Some(timeout))
            .build();
        Ok(Self {
            transport,
            client: super::attachments::client(guard, timeout)?,
            attachment_max_bytes,
        })
    }

    async fn build(&self, message: &Message) -> Result<(lettre::Message, String), ProviderError> {
        let invalid = |field: &str, e: &dyn std::fmt::Display| ProviderError::Permanent {
            code: "invalid_address".into(),
            message: format!("{field} is not usable for SMTP: {e}"),
        };
        let from: Mailbox = message.from.parse().map_err(|e| invalid("from", &e))?;
        let to: Mailbox = message.to.parse().map_err(|e| invalid("to", &e))?;
        let domain = message
            .from
            .rsplit_once('@')
            .map(|(_, d)| d.to_owned())
            .unwrap_or_else(|| "localhost".into());
        let message_id = format!("<{}@{}>", message.id, domain);

        let (text, html) = email_parts(message.body.as_deref(), &message.metadata);
        let body = match html {
            Some(html) => MultiPart::alternative_plain_html(text, html),
            None => MultiPart::mixed().singlepart(SinglePart::plain(text)),
        };
        let body = if message.attachments.is_empty() {
            body
        } else {
            let files = fetch_all(
                &self.client,
                &message.attachments,
                self.attachment_max_bytes,
            )
            .await?;
            let mut mixed = MultiPart::mixed().multipart(body);
            for file in files {
                let ct = ContentType::parse(&file.content_type).unwrap_or(
                    ContentType::parse("application/octet-stream").map_err(|e| {
                        ProviderError::Permanent {
                            code: "invalid_attachment".into(),
                            message: e.to_string(),
                        }
                    })?,
                );
                mixed = mixed.singlepart(Attachment::new(file.filename).body(file.bytes, ct));
            }
            mixed
        };
        let mut builder = lettre::Message::builder()
            .from(from)
            .to(to)
            .message_id(Some(message_id.clone()));
        if let Some(subject) = &message.subject {
            builder = builder.subject(subject);
        }
        let email = builder
            .multipart(body)
            .map_err(|e| ProviderError::Permanent {
                code: "invalid_email".into(),
                message: e.to_string(),
            })?;
        Ok((email, message_id))
    }
}

fn classify(e: &lettre::transport::smtp::Error) -> ProviderError {
    let code = e.status().map(|c| c.to_string()).unwrap_or_else(|| {
        if e.is_timeout() {
            "timeout"
        } else {
            "smtp_error"
        }
        .into()
    });
    if e.is_permanent() {
        ProviderError::Permanent {
            code,
            message: e.to_string(),
        }
    } else {
        // 4xx replies, timeouts, refused connections, TLS and protocol hiccups.
        ProviderError::Transient {
            code,
            message: e.to_string(),
            retry_after: None,
        }
    }
}

#[async_trait]
impl Provider for SmtpProvider {
    fn name(&self) -> &str {
        "smtp"
    }

    #[tracing::instrument(skip_all, fields(message_id = %message.id, provider = "smtp"))]
    async fn send(&self, message: &Message) -> Result<Receipt, ProviderError> {
        let (email, message_id) = self.build(message).await?;
        self.transport.send(email).await.map_err(|e| classify(&e))?;
        Ok(Receipt {
            provider_message_id: message_id,
            provider: Some(self.name().to_owned()),
            num_segments: None,
        })
    }
}
