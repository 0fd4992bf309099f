//! `/api/v1/messages`: send, read, list, and the audit trail of one message.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, IdPath};
use crate::domain::{Direction, Message, MessageStatus, MessageType, NewMessage, OutboundContent};
use crate::store::{Inserted, MessageFilter, Page};

pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

pub fn router() -> Router<AppState> {
    // The guide's curl lists with a trailing slash; both spellings are served.
    Router::new()
        .route("/api/v1/messages/send", post(send))
        .route("/api/v1/messages", get(list))
        .route("/api/v1/messages/", get(list))
        .route("/api/v1/messages/{id}", get(get_one))
        .route("/api/v1/messages/{id}/events", get(events))
}

#[derive(Debug, Deserialize)]
pub struct SendRequest {
    from: Option<String>,
    to: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    body: Option<String>,
    subject: Option<String>,
    attachments: Option<Vec<String>>,
    metadata: Option<Value>,
    idempotency_key: Option<String>,
}

/// The idempotency key from the header (preferred) or the body.
fn idempotency_key(headers: &HeaderMap, body: Option<String>) -> Result<Option<String>, ApiError> {
    let header = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid("Idempotency-Key", "must be visible ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    match header.or(body).map(|k| k.trim().to_owned()) {
        Some(k) if k.contains(char::is_control) => Err(ApiError::invalid(
            "idempotency_key",
            "must not contain control characters",
        )),
        Some(k) if k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_LEN => Err(ApiError::invalid(
            "idempotency_key",
            format!("must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} characters"),
        )),
        other => Ok(other),
    }
}

/// Fingerprint of what was asked, so a reused key with a different request is caught.
fn request_hash(m: &NewMessage) -> String {
    let canonical = json!([
        m.kind.as_str(),
        m.from.as_str(),
        m.to.as_str(),
        m.body,
        m.subject,
        m.attachments,
        m.metadata
    ]);
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[tracing::instrument(skip_all)]
async fn send(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let key = idempotency_key(&headers, req.idempotency_key)?;
    let mut message = NewMessage::outbound(OutboundContent {
        from: req.from,
        to: req.to,
        kind: req.kind,
        body: req.body,
        subject: req.subject,
        attachments: req.attachments.unwrap_or_default(),
        metadata: req.metadata,
    })?;
    if key.is_some() {
        message.request_hash = Some(request_hash(&message));
        message.idempotency_key = key;
    }
    let hash = message.request_hash.clone();
    match state.ingest.submit(message).await? {
        Inserted::Created(created) => {
            tracing::info!(message_id = %created.id, r#type = %created.kind, to = %crate::domain::address_mask(&created.to), "Message accepted");
            let created = if state.settings.sync_message_processing {
                state.deliver_now(created).await?
            } else {
                created
            };
            Ok((StatusCode::CREATED, Json(created)))
        }
        Inserted::Existing {
            message,
            request_hash,
        } if request_hash == hash => Ok((StatusCode::OK, Json(message))),
        Inserted::Existing { message, .. } => Err(ApiError::Conflict {
            code: "idempotency_conflict",
            message: format!(
                "the Idempotency-Key was already used for a different request (message {})",
                message.id
            ),
        }),
    }
}

async fn get_one(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Message>, ApiError> {
    state
        .store
        .get_message(id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound {
            resource: "message",
        })
}

async fn events(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Value>, ApiError> {
    if state.store.get_message(id).await?.is_none() {
        return Err(ApiError::NotFound {
            resource: "message",
        });
    }
    let events = state.store.message_events(id).await?;
    Ok(Json(json!({ "message_id": id, "events": events })))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    conversation_id: Option<String>,
    status: Option<String>,
    direction: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

/// Parses `limit` (1..=100, default 50) and `offset` (>= 0, default 0).
pub fn page(limit: Option<&str>, offset: Option<&str>) -> Result<Page, ApiError> {
    let limit = match limit {
        None => 50,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| ApiError::invalid("limit", "must be an integer from 1 to 100"))?,
    };
    let offset = match offset {
        None => 0,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| ApiError::invalid("offset", "must be a non-negative integer"))?,
    };
    Ok(Page { limit, offset })
}

fn parse_filter<T>(
    field: &'static str,
    raw: Option<&str>,
    parse: fn(&str) -> Option<T>,
    allowed: &str,
) -> Result<Option<T>, ApiError> {
    raw.map(|r| {
        parse(r).ok_or_else(|| ApiError::invalid(field, format!("must be one of {allowed}")))
    })
    .transpose()
}

async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let page = page(q.limit.as_deref(), q.offset.as_deref())?;
    let filter = MessageFilter {
        conversation_id: q
            .conversation_id
            .as_deref()
            .map(|raw| {
                uuid::Uuid::parse_str(raw)
                    .map_err(|_| ApiError::invalid("conversation_id", "must be a UUID"))
            })
            .transpose()?,
        status: parse_filter(
            "status",
            q.status.as_deref(),
            MessageStatus::parse,
            "pending, sending, retry, sent, delivered, failed, received",
        )?,
        direction: parse_filter(
            "direction",
            q.direction.as_deref(),
            Direction::parse,
            "outbound, inbound",
        )?,
        kind: parse_filter(
            "type",
            q.kind.as_deref(),
            MessageType::parse,
            "sms, mms, email",
        )?,
    };
    let (messages, total) = state.store.list_messages(&filter, page).await?;
    Ok(Json(
        json!({ "messages": messages, "total": total, "limit": page.limit, "offset": page.offset }),
    ))
}
