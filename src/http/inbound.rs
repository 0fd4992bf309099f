//! Inbound messages from provider webhooks: Twilio's inbound SMS/MMS and SendGrid's Inbound
//! Parse. Both go through the same group commit as sends (never queued), are threaded into
//! the conversation of the two parties, and are deduplicated by their provider id.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::config::InboundAttachments;
use crate::domain::{InboundContent, MessageType, NewMessage, ValidationError, address_mask};
use crate::store::{Inserted, WebhookLogEntry};
use crate::webhook::inbound_email::{
    AttachmentRecord, addresses, content_id, message_id_header, safe_filename,
};
use crate::webhook::twilio::InboundSms;

/// Stores one inbound message and logs the webhook call with its outcome.
async fn receive(
    state: &AppState,
    provider: &'static str,
    content: InboundContent,
    verified: bool,
) -> Result<Option<uuid::Uuid>, ApiError> {
    let dedupe_key = content.provider_message_id.clone();
    let log = |outcome: &str, message_id: Option<uuid::Uuid>, detail: Value| WebhookLogEntry {
        provider,
        kind: "inbound",
        dedupe_key: dedupe_key.clone(),
        verified,
        outcome: outcome.to_owned(),
        message_id,
        detail,
    };
    let message = match NewMessage::inbound(content) {
        Ok(m) => m,
        Err(e) => {
            let entry = log(
                "invalid",
                None,
                json!({ "field": e.field, "reason": e.reason }),
            );
            if let Err(err) = state.store.log_webhook(&entry).await {
                tracing::warn!(error = %format!("{:#}", anyhow::Error::from(err)), "could not log a webhook");
            }
            return Err(ApiError::Validation(e));
        }
    };
    let _permit = state
        .webhook_permits
        .acquire()
        .await
        .map_err(|_| ApiError::Unavailable {
            dependency: "api",
            details: json!({ "reason": "shutting down" }),
        })?;
    let (outcome, id) = match state.ingest.submit(message).await? {
        Inserted::Created(m) => {
            tracing::info!(provider, message_id = %m.id, from = %address_mask(&m.from), "Inbound message received");
            ("stored", m.id)
        }
        Inserted::Existing { message, .. } => {
            tracing::info!(provider, message_id = %message.id, "Replayed inbound webhook: already stored");
            ("duplicate", message.id)
        }
    };
    state
        .store
        .log_webhook(&log(outcome, Some(id), json!({})))
        .await?;
    Ok(Some(id))
}

pub async fn store_twilio_inbound(
    state: &AppState,
    inbound: InboundSms,
    verified: bool,
) -> Result<(), ApiError> {
    let content_types: Vec<Value> = inbound.media.iter().map(|(_, t)| json!(t)).collect();
    let attachments: Vec<String> = inbound.media.into_iter().map(|(url, _)| url).collect();
    let content = InboundContent {
        kind: if attachments.is_empty() {
            MessageType::Sms
        } else {
            MessageType::Mms
        },
        from: Some(inbound.from),
        to: Some(inbound.to),
        body: inbound.body,
        subject: None,
        attachments,
        provider: "twilio".to_owned(),
        provider_message_id: Some(inbound.message_sid),
        provider_timestamp: None,
        metadata: Some(json!({ "media_content_types": content_types })),
    };
    receive(state, "twilio", content, verified)
        .await
        .map(|_| ())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Inbound Parse carries no signature: the URL is protected by `WEBHOOK_SECRET`, given as
/// the basic-auth password (`https://user:SECRET@host/...`) or `?token=SECRET`.
fn parse_secret_ok(
    state: &AppState,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<(), &'static str> {
    let Some(secret) = &state.settings.webhooks.secret else {
        return Err("WEBHOOK_SECRET is not configured");
    };
    let secret = secret.expose_secret().as_bytes();
    let token_ok = query
        .iter()
        .any(|(k, v)| k == "token" && constant_time_eq(v.as_bytes(), secret));
    let basic_ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
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

pub async fn sendgrid_inbound_parse(
    state: AppState,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let verify = state.settings.webhooks.verify_signatures;
    if verify && let Err(reason) = parse_secret_ok(&state, &query, &headers) {
        tracing::warn!(provider = "sendgrid", reason, "webhook rejected");
        let entry = WebhookLogEntry {
            provider: "sendgrid",
            kind: "inbound",
            dedupe_key: None,
            verified: false,
            outcome: "rejected".into(),
            message_id: None,
            detail: json!({ "reason": reason }),
        };
        state.store.log_webhook(&entry).await?;
        return Err(ApiError::Forbidden {
            code: "invalid_secret",
            message: format!("webhook refused: {reason}"),
        });
    }

    let mut multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|e| {
            ApiError::invalid(
                "body",
                format!("not a valid multipart body: {}", e.body_text()),
            )
        })?;
    let mut fields: std::collections::HashMap<String, String> = Default::default();
    let mut files: Vec<(AttachmentRecord, axum::body::Bytes)> = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(|e| {
        ApiError::invalid("body", format!("broken multipart body: {}", e.body_text()))
    })? {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let data = field.bytes().await.map_err(|e| {
            ApiError::Validation(ValidationError::new(
                name.clone(),
                format!("unreadable part: {}", e.body_text()),
            ))
        })?;
        match filename {
            Some(filename) if name.starts_with("attachment") => files.push((
                AttachmentRecord {
                    filename,
                    content_type,
                    size: data.len(),
                    stored_at: None,
                },
                data,
            )),
            _ => {
                fields.insert(name, String::from_utf8_lossy(&data).into_owned());
            }
        }
    }

    let get = |k: &str| {
        fields
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    };
    // Raw mode: one `email` field with the whole MIME source; the source is kept as the body.
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

    if let InboundAttachments::Store(dir) = &state.settings.webhooks.inbound_attachments {
        let folder = dir.join(uuid::Uuid::now_v7().to_string());
        for (record, data) in files.iter_mut() {
            tokio::fs::create_dir_all(&folder).await.map_err(|e| {
                ApiError::Internal(anyhow::Error::from(e).context("creating the attachment folder"))
            })?;
            let path = folder.join(safe_filename(&record.filename));
            tokio::fs::write(&path, &data).await.map_err(|e| {
                ApiError::Internal(anyhow::Error::from(e).context("writing an attachment"))
            })?;
            record.stored_at = Some(path.display().to_string());
        }
    }
    let records: Vec<&AttachmentRecord> = files.iter().map(|(r, _)| r).collect();
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
    let content = InboundContent {
        kind: MessageType::Email,
        from,
        to,
        body: body
            .or_else(|| (!files.is_empty()).then(|| format!("({} attachment(s))", files.len()))),
        subject,
        attachments: Vec::new(),
        provider: "sendgrid".to_owned(),
        provider_message_id: Some(provider_message_id),
        provider_timestamp: None,
        metadata: Some(metadata),
    };
    let id = receive(&state, "sendgrid", content, verify).await?;
    Ok((
        StatusCode::OK,
        Json(json!({ "status": "received", "message_id": id })),
    )
        .into_response())
}
