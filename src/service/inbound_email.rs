//! SendGrid Inbound Parse: a whole email posted as a multipart form. The post is checked
//! against `WEBHOOK_SECRET` before its body is read, reduced to one inbound email (parsed
//! fields or raw MIME), its attachments written to disk when `INBOUND_ATTACHMENTS=store`,
//! and stored like every inbound message (see [`super::webhook_intake`]).

use std::collections::HashMap;
use std::future::Future;

use base64::Engine;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use uuid::Uuid;

use super::webhook_intake::{receive_from_provider, reject};
use super::{Context, Rejection, ServiceError};
use crate::config::InboundAttachments;
use crate::domain::{InboundContent, MessageType};
use crate::webhook::inbound_email::{
    AttachmentRecord, addresses, content_id, message_id_header, safe_filename,
};

/// The parts of an Inbound Parse post: text fields by name, and the attached files.
#[derive(Debug, Default)]
pub struct InboundEmailForm {
    pub fields: HashMap<String, String>,
    pub files: Vec<InboundFile>,
}

#[derive(Debug)]
pub struct InboundFile {
    pub filename: String,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// What proves an Inbound Parse post is ours: `?token=SECRET` or the basic-auth password.
#[derive(Debug, Clone, Copy)]
pub struct InboundParseAuth<'a> {
    pub query: &'a [(String, String)],
    pub authorization: Option<&'a str>,
}

/// Verifies the post, then reads its form (`form` runs only once the secret is right) and
/// stores the email. Returns the stored (or already stored) message's id.
#[tracing::instrument(skip_all, fields(provider = "sendgrid"))]
pub async fn receive(
    ctx: Context<'_>,
    auth: InboundParseAuth<'_>,
    form: impl Future<Output = Result<InboundEmailForm, ServiceError>>,
) -> Result<Uuid, ServiceError> {
    let verify = ctx.settings.webhooks.verify_signatures;
    if verify && let Err(reason) = check_secret(ctx, auth) {
        return Err(reject(ctx, "sendgrid", "inbound", Rejection::Secret, reason).await);
    }
    let form = form.await?;
    let records = store_attachments(ctx, &form.files).await?;
    let content = email(&form, records);
    receive_from_provider(ctx, "sendgrid", content, verify).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Inbound Parse carries no signature: the URL is protected by `WEBHOOK_SECRET`, given as
/// the basic-auth password (`https://user:SECRET@host/...`) or `?token=SECRET`.
fn check_secret(ctx: Context<'_>, auth: InboundParseAuth<'_>) -> Result<(), &'static str> {
    let Some(secret) = &ctx.settings.webhooks.secret else {
        return Err("WEBHOOK_SECRET is not configured");
    };
    let secret = secret.expose_secret().as_bytes();
    let token_ok = auth
        .query
        .iter()
        .any(|(k, v)| k == "token" && constant_time_eq(v.as_bytes(), secret));
    let basic_ok = auth
        .authorization
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .is_some_and(|pair| {
            pair.split_once(':')
                .is_some_and(|(_, pass)| constant_time_eq(pass.as_bytes(), secret))
        });
    if token_ok || basic_ok {
        Ok(())
    } else {
        Err("the Inbound Parse secret is missing or wrong")
    }
}

/// Records of the attached files, each written under a fresh folder when
/// `INBOUND_ATTACHMENTS=store`.
async fn store_attachments(
    ctx: Context<'_>,
    files: &[InboundFile],
) -> Result<Vec<AttachmentRecord>, ServiceError> {
    let mut records: Vec<AttachmentRecord> = files
        .iter()
        .map(|f| AttachmentRecord {
            filename: f.filename.clone(),
            content_type: f.content_type.clone(),
            size: f.data.len(),
            stored_at: None,
        })
        .collect();
    if let InboundAttachments::Store(dir) = &ctx.settings.webhooks.inbound_attachments {
        let folder = dir.join(Uuid::now_v7().to_string());
        for (record, file) in records.iter_mut().zip(files) {
            tokio::fs::create_dir_all(&folder).await.map_err(|e| {
                ServiceError::Internal(
                    anyhow::Error::from(e).context("creating the attachment folder"),
                )
            })?;
            let path = folder.join(safe_filename(&record.filename));
            tokio::fs::write(&path, &file.data).await.map_err(|e| {
                ServiceError::Internal(anyhow::Error::from(e).context("writing an attachment"))
            })?;
            record.stored_at = Some(path.display().to_string());
        }
    }
    Ok(records)
}

/// The header block and body of a raw MIME message (raw mode posts one `email` field).
fn split_raw_mime(raw: &str) -> (&str, &str) {
    raw.split_once("\r\n\r\n")
        .or_else(|| raw.split_once("\n\n"))
        .unwrap_or((raw, ""))
}

fn header_value<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The email the form describes: parsed fields when SendGrid sent them, else the raw MIME
/// source (kept as the body). Without a `Message-ID` the id is a hash of the content, so
/// replays still deduplicate.
fn email(form: &InboundEmailForm, records: Vec<AttachmentRecord>) -> InboundContent {
    let get = |k: &str| {
        form.fields
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    };
    let raw = get("email").filter(|_| get("text").is_none() && get("html").is_none());
    let (raw_headers, raw_body) = raw.map(split_raw_mime).unwrap_or(("", ""));
    let header_block = get("headers").unwrap_or(raw_headers);
    let (from, to) = addresses(
        get("envelope"),
        get("from").or_else(|| header_value(header_block, "from")),
        get("to").or_else(|| header_value(header_block, "to")),
    );
    let subject = get("subject")
        .or_else(|| header_value(header_block, "subject"))
        .map(str::to_owned);
    let body = get("text")
        .or(get("html"))
        .or((!raw_body.is_empty()).then_some(raw_body))
        .map(str::to_owned);
    let provider_message_id = message_id_header(header_block).unwrap_or_else(|| {
        content_id(&[
            from.as_deref(),
            to.as_deref(),
            subject.as_deref(),
            body.as_deref(),
        ])
    });
    let files = records.len();
    let mut metadata = json!({
        "attachments": records,
        "html": get("html").is_some(),
        "raw_mime": raw.is_some(),
    });
    for key in ["spam_score", "SPF", "dkim", "sender_ip", "cc"] {
        if let Some(v) = get(key) {
            metadata[key] = Value::from(v);
        }
    }
    InboundContent {
        kind: MessageType::Email,
        from,
        to,
        body: body.or_else(|| (files > 0).then(|| format!("({files} attachment(s))"))),
        subject,
        attachments: Vec::new(),
        provider: "sendgrid".to_owned(),
        provider_message_id: Some(provider_message_id),
        provider_timestamp: None,
        metadata: Some(metadata),
    }
}
