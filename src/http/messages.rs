//! `/api/v1/messages`: send, read, list, and the audit trail of one message.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, IdPath, Pagination};
use crate::domain::{
    Direction, Message, MessageEvent, MessageStatus, MessageType, OutboundContent,
};
use crate::service;
use crate::service::send::Sent;
use crate::store::MessageFilter;

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
    /// RFC 3339 with an offset: schedule the message instead of sending it now.
    send_at: Option<String>,
}

/// 201 with the new message; 200 with the first one when the request repeats an
/// `Idempotency-Key`.
async fn send(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let request = service::send::SendRequest {
        content: OutboundContent {
            from: req.from,
            to: req.to,
            kind: req.kind,
            body: req.body,
            subject: req.subject,
            attachments: req.attachments.unwrap_or_default(),
            metadata: req.metadata,
        },
        key_header: headers
            .get("idempotency-key")
            .map(|v| v.as_bytes().to_vec()),
        key_field: req.idempotency_key,
        provider_timestamp: None,
        send_at: req.send_at,
    };
    Ok(
        match service::send::send(state.services(), request).await? {
            Sent::Created(m) => (StatusCode::CREATED, Json(m)),
            Sent::Repeated(m) => (StatusCode::OK, Json(m)),
        },
    )
}

async fn get_one(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Message>, ApiError> {
    Ok(Json(service::messages::get(state.services(), id).await?))
}

#[derive(Serialize)]
struct Events {
    message_id: Uuid,
    events: Vec<MessageEvent>,
}

async fn events(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Events>, ApiError> {
    let events = service::messages::events(state.services(), id).await?;
    Ok(Json(Events {
        message_id: id,
        events,
    }))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    conversation_id: Option<String>,
    status: Option<String>,
    direction: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

impl TryFrom<ListQuery> for MessageFilter {
    type Error = ApiError;

    fn try_from(q: ListQuery) -> Result<Self, ApiError> {
        Ok(MessageFilter {
            conversation_id: q
                .conversation_id
                .as_deref()
                .map(|raw| {
                    Uuid::parse_str(raw)
                        .map_err(|_| ApiError::invalid("conversation_id", "must be a UUID"))
                })
                .transpose()?,
            status: parse_filter(
                "status",
                q.status.as_deref(),
                MessageStatus::parse,
                &MessageStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
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
        })
    }
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

/// A page of messages, as `GET /api/v1/messages` answers it.
#[derive(Serialize)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
    Pagination(page): Pagination,
) -> Result<Json<MessagePage>, ApiError> {
    let filter = MessageFilter::try_from(q)?;
    let (messages, total) = service::messages::list(state.services(), &filter, page).await?;
    Ok(Json(MessagePage {
        messages,
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}
