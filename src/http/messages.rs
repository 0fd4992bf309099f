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
use super::extract::{ApiJson, ApiQuery, CursorPagination, IdPath};
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

/// A message to send. `from`/`to` are E.164 phone numbers (`sms`, `mms`) or email
/// addresses (`email`); limits as stated (an sms/mms body is at most 1600 characters).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = SendMessage)]
pub struct SendRequest {
    #[schema(value_type = super::openapi::AddressText)]
    from: Option<String>,
    #[schema(value_type = super::openapi::AddressText)]
    to: Option<String>,
    /// Inferred from `to` when absent: an email address means email, a phone number sms
    /// (mms when there are attachments).
    #[serde(rename = "type")]
    #[schema(value_type = Option<MessageType>)]
    kind: Option<String>,
    /// Required for sms and email; an mms needs a body or attachments.
    #[schema(max_length = 1000000, example = "Hello!")]
    body: Option<String>,
    /// Email only.
    #[schema(max_length = 998)]
    subject: Option<String>,
    /// Public http(s) URLs of media (mms) or files (email).
    #[schema(max_items = 10, value_type = Option<Vec<AttachmentUrl>>)]
    attachments: Option<Vec<String>>,
    /// The client's own references, kept with the message (a JSON object, at most 16 KB,
    /// nested at most 8 deep, numbers within ±1e300).
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// Same as the `Idempotency-Key` header (the header wins).
    #[schema(max_length = 255)]
    idempotency_key: Option<String>,
    /// RFC 3339 with an offset: schedule the message instead of sending it now (at most
    /// 35 days ahead, not in the past). It is answered with status `scheduled` and can be
    /// canceled until it falls due.
    #[schema(format = DateTime, example = "2026-12-24T09:00:00Z")]
    send_at: Option<String>,
    /// A public http(s) URL that also receives this message's status events
    /// (`message.sent`, `message.delivered`, `message.failed`, `message.canceled`; see
    /// `webhooks`), signed with STATUS_CALLBACK_SECRET the same way.
    #[schema(pattern = "^https?://", example = "https://example.com/hooks/status")]
    status_callback: Option<String>,
}

/// A public http(s) URL.
#[derive(utoipa::ToSchema)]
#[schema(pattern = "^https?://", max_length = 2048)]
#[allow(dead_code)]
pub struct AttachmentUrl(String);

/// 201 with the new message; 200 with the first one when the request repeats an
/// `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/api/v1/messages/send",
    operation_id = "send_message",
    tag = "messages",
    summary = "Send a message",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried request safe: the same key with the same request answers the first message (200); with another request, 409 `idempotency_conflict`")),
    request_body = SendRequest,
    responses(
        (status = 201, description = "Accepted and queued", body = Message, links(
            ("GetMessage" = (operation_id = "get_message", parameters(("id" = "$response.body#/id")), description = "The message")),
            ("MessageEvents" = (operation_id = "list_message_events", parameters(("id" = "$response.body#/id")), description = "Its audit trail")),
            ("CorrectStatus" = (operation_id = "correct_message_status", parameters(("id" = "$response.body#/id")), description = "Correct its status")),
            ("Retry" = (operation_id = "retry_message", parameters(("id" = "$response.body#/id")), description = "Retry it once failed")),
        )),
        (status = 200, description = "A repeat of an earlier request with the same Idempotency-Key: the first message", body = Message),
        (status = 409, description = "`idempotency_conflict`: the key was used for a different request", body = super::openapi::ErrorBody),
    ),
)]
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
        status_callback: req.status_callback,
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

#[utoipa::path(
    get,
    path = "/api/v1/messages/{id}",
    operation_id = "get_message",
    tag = "messages",
    summary = "One message",
    params(("id" = Uuid, Path, description = "The message's id")),
    responses(
        (status = 200, body = Message),
        (status = 404, description = "No such message", body = super::openapi::ErrorBody),
    ),
)]
async fn get_one(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Message>, ApiError> {
    Ok(Json(service::messages::get(state.services(), id).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = MessageEvents)]
struct Events {
    message_id: Uuid,
    events: Vec<MessageEvent>,
}

#[utoipa::path(
    get,
    path = "/api/v1/messages/{id}/events",
    operation_id = "list_message_events",
    tag = "messages",
    summary = "A message's audit trail, oldest first",
    params(("id" = Uuid, Path, description = "The message's id")),
    responses(
        (status = 200, body = Events),
        (status = 404, description = "No such message", body = super::openapi::ErrorBody),
    ),
)]
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(value_type = Option<Uuid>)]
    conversation_id: Option<String>,
    #[param(value_type = Option<MessageStatus>)]
    status: Option<String>,
    #[param(value_type = Option<Direction>)]
    direction: Option<String>,
    #[serde(rename = "type")]
    #[param(value_type = Option<MessageType>)]
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
#[derive(Serialize, utoipa::ToSchema)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// Exact while at most `LIST_COUNT_LIMIT` (default 10,000) match; above, an estimate
    /// (`total_is_estimate`).
    pub total: i64,
    /// `total` is an estimate: more than `LIST_COUNT_LIMIT` match.
    pub total_is_estimate: bool,
    pub limit: i64,
    pub offset: i64,
    /// Pass as `cursor` for the page after this one; null after the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/messages",
    operation_id = "list_messages",
    tag = "messages",
    summary = "Messages, newest first (also served at /api/v1/messages/)",
    params(ListQuery, super::openapi::CursorPageParams),
    responses(
        (status = 200, body = MessagePage),
        (status = 422, description = "`validation_error`: a bad filter, `limit` or `offset`, or a `cursor` that is garbled, from another filter, or given with a non-zero `offset`", body = super::openapi::ErrorBody),
    ),
)]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
    CursorPagination(request): CursorPagination,
) -> Result<Json<MessagePage>, ApiError> {
    let filter = MessageFilter::try_from(q)?;
    let listed = service::messages::list(state.services(), &filter, &request).await?;
    Ok(Json(MessagePage {
        messages: listed.items,
        total: listed.total,
        total_is_estimate: listed.total_is_estimate,
        limit: request.page.limit,
        offset: request.page.offset,
        next_cursor: listed.next_cursor,
    }))
}
