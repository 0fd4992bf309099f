//! The service's original JSON API under `/api`, kept for the clients and scripts written
//! against it. Same store, same queue and same validation as v1; only the shapes differ.

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Pagination};
use crate::domain::{
    ChannelFamily, Conversation, ConversationStatus, InboundContent, Message, MessageType,
    OutboundContent,
};
use crate::service;
use crate::service::listing::PageRequest;
use crate::store::{ConversationFilter, SortOrder};

/// Provider names under which the original webhooks' ids are stored (and deduplicated).
pub const SMS_WEBHOOK_PROVIDER: &str = "messaging_provider";
pub const EMAIL_WEBHOOK_PROVIDER: &str = "xillio";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/messages/sms", post(send_sms))
        .route("/api/messages/email", post(send_email))
        .route("/api/webhooks/sms", post(webhook_sms))
        .route("/api/webhooks/email", post(webhook_email))
        .route("/api/conversations", get(conversations))
        .route("/api/conversations/", get(conversations))
        .route("/api/conversations/{id}/messages", get(messages))
}

const NOT_FOUND: ApiError = ApiError::NotFound {
    resource: "conversation",
};

/// The original API answers 404 for any id it cannot find, including ids that are not
/// UUIDs (like `1`): to its clients they are simply unknown conversations.
struct LegacyId(Uuid);

impl<S: Send + Sync> FromRequestParts<S> for LegacyId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| NOT_FOUND)?;
        Uuid::parse_str(&raw).map(LegacyId).map_err(|_| NOT_FOUND)
    }
}

/// RFC 3339, or an ISO 8601 date-time without offset, which is taken as UTC (the original
/// API accepted both).
fn timestamp(raw: Option<&str>) -> Result<Option<OffsetDateTime>, ApiError> {
    let naive = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    raw.map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            OffsetDateTime::parse(t, &Rfc3339)
                .or_else(|_| time::PrimitiveDateTime::parse(t, naive).map(|p| p.assume_utc()))
                .map_err(|_| {
                    ApiError::invalid(
                        "timestamp",
                        "must be an ISO 8601 date-time like 2024-11-01T14:00:00Z",
                    )
                })
        })
        .transpose()
}

fn phone_type(raw: Option<&str>, attachments: &[String]) -> Result<MessageType, ApiError> {
    match raw.map(|t| t.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") if attachments.is_empty() => Ok(MessageType::Sms),
        None | Some("") => Ok(MessageType::Mms),
        Some("sms") => Ok(MessageType::Sms),
        Some("mms") => Ok(MessageType::Mms),
        Some(_) => Err(ApiError::invalid("type", "must be sms or mms")),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = LegacySendRequest)]
pub struct SendRequest {
    #[schema(value_type = super::openapi::AddressText)]
    from: Option<String>,
    #[schema(value_type = super::openapi::AddressText)]
    to: Option<String>,
    /// `sms` or `mms` on `/api/messages/sms` (from the attachments when absent); ignored
    /// for email.
    #[serde(rename = "type")]
    kind: Option<String>,
    #[schema(max_length = 1000000)]
    body: Option<String>,
    #[schema(max_items = 10)]
    attachments: Option<Vec<String>>,
    /// ISO 8601 date-time; without an offset it is UTC.
    timestamp: Option<String>,
    /// RFC 3339 with an offset: schedule the message instead of sending it now (at most
    /// 35 days ahead, not in the past); answered 201.
    #[schema(format = DateTime, example = "2026-12-24T09:00:00Z")]
    send_at: Option<String>,
    /// A public http(s) URL that also receives this message's status events (see
    /// `webhooks`), signed with STATUS_CALLBACK_SECRET.
    #[schema(pattern = "^https?://", example = "https://example.com/hooks/status")]
    status_callback: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/messages/sms",
    operation_id = "legacy_send_sms",
    tag = "original API",
    summary = "Send an SMS or MMS (original shape)",
    request_body = SendRequest,
    responses(
        (status = 200, description = "Accepted and queued", body = Accepted),
        (status = 201, description = "Scheduled (`send_at`)", body = Accepted),
    ),
)]
async fn send_sms(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let kind = phone_type(
        req.kind.as_deref(),
        req.attachments.as_deref().unwrap_or_default(),
    )?;
    send(state, kind, req).await
}

#[utoipa::path(
    post,
    path = "/api/messages/email",
    operation_id = "legacy_send_email",
    tag = "original API",
    summary = "Send an email (original shape)",
    request_body = SendRequest,
    responses(
        (status = 200, description = "Accepted and queued", body = Accepted),
        (status = 201, description = "Scheduled (`send_at`)", body = Accepted),
    ),
)]
async fn send_email(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SendRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    send(state, MessageType::Email, req).await
}

/// The original answer to a send.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = LegacyAccepted)]
struct Accepted {
    status: &'static str,
    message_id: Uuid,
    conversation_id: Uuid,
    #[serde(rename = "type")]
    kind: MessageType,
    provider: String,
    /// A scheduled send's due time (answered 201, as the v1 API does).
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    send_at: Option<OffsetDateTime>,
}

/// Stores and queues an outbound message exactly as `POST /api/v1/messages/send` does,
/// answering 200 in the original shape (201 when it is scheduled).
async fn send(
    state: AppState,
    kind: MessageType,
    req: SendRequest,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let request = service::send::SendRequest {
        content: OutboundContent {
            from: req.from,
            to: req.to,
            kind: Some(kind.as_str().to_owned()),
            body: req.body,
            attachments: req.attachments.unwrap_or_default(),
            ..OutboundContent::default()
        },
        provider_timestamp: timestamp(req.timestamp.as_deref())?,
        send_at: req.send_at,
        status_callback: req.status_callback,
        ..service::send::SendRequest::default()
    };
    let sent = service::send::send(state.services(), request).await?;
    let stored = sent.message();
    let code = match stored.send_at {
        Some(_) => StatusCode::CREATED,
        None => StatusCode::OK,
    };
    let accepted = Accepted {
        status: "success",
        message_id: stored.id,
        conversation_id: stored.conversation_id,
        kind: stored.kind,
        provider: service::send::provider_name(state.services(), stored),
        send_at: stored.send_at,
    };
    Ok((code, Json(accepted)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SmsWebhook {
    #[schema(value_type = super::openapi::AddressText)]
    from: Option<String>,
    #[schema(value_type = super::openapi::AddressText)]
    to: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    messaging_provider_id: Option<String>,
    body: Option<String>,
    attachments: Option<Vec<String>>,
    timestamp: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/webhooks/sms",
    operation_id = "legacy_sms_webhook",
    tag = "original API",
    summary = "Receive an inbound SMS or MMS (original webhook)",
    request_body = SmsWebhook,
    responses((status = 200, description = "Stored (a replay of the same provider id stores nothing)", body = Processed)),
)]
async fn webhook_sms(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SmsWebhook>,
) -> Result<Json<Processed>, ApiError> {
    let attachments = req.attachments.unwrap_or_default();
    let content = InboundContent {
        kind: phone_type(req.kind.as_deref(), &attachments)?,
        from: req.from,
        to: req.to,
        body: req.body,
        subject: None,
        attachments,
        provider: SMS_WEBHOOK_PROVIDER.to_owned(),
        provider_message_id: req.messaging_provider_id,
        provider_timestamp: timestamp(req.timestamp.as_deref())?,
        metadata: None,
    };
    receive(state, content, "messaging_provider_id").await
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EmailWebhook {
    #[schema(value_type = super::openapi::AddressText)]
    from: Option<String>,
    #[schema(value_type = super::openapi::AddressText)]
    to: Option<String>,
    xillio_id: Option<String>,
    body: Option<String>,
    attachments: Option<Vec<String>>,
    timestamp: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/webhooks/email",
    operation_id = "legacy_email_webhook",
    tag = "original API",
    summary = "Receive an inbound email (original webhook)",
    request_body = EmailWebhook,
    responses((status = 200, description = "Stored (a replay of the same provider id stores nothing)", body = Processed)),
)]
async fn webhook_email(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EmailWebhook>,
) -> Result<Json<Processed>, ApiError> {
    let content = InboundContent {
        kind: MessageType::Email,
        from: req.from,
        to: req.to,
        body: req.body,
        subject: None,
        attachments: req.attachments.unwrap_or_default(),
        provider: EMAIL_WEBHOOK_PROVIDER.to_owned(),
        provider_message_id: req.xillio_id,
        provider_timestamp: timestamp(req.timestamp.as_deref())?,
        metadata: None,
    };
    receive(state, content, "xillio_id").await
}

/// Stores an inbound message through the same batch writers as sends. A replay (same
/// provider id) stores nothing and gets the same 200.
async fn receive(
    state: AppState,
    content: InboundContent,
    id_field: &'static str,
) -> Result<Json<Processed>, ApiError> {
    service::receive::receive(state.services(), content, id_field).await?;
    Ok(Json(Processed {
        status: "success",
        message: "Webhook processed",
    }))
}

/// The original answer to a webhook.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WebhookProcessed)]
struct Processed {
    #[schema(example = "success")]
    status: &'static str,
    #[schema(example = "Webhook processed")]
    message: &'static str,
}

/// The original shape of a conversation. `participant_from`/`participant_to` are the
/// stored (sorted) pair; `channel_type` is `sms` for the phone family.
#[derive(Serialize, utoipa::ToSchema)]
struct LegacyConversation {
    id: Uuid,
    participant_from: String,
    participant_to: String,
    channel_type: &'static str,
    status: ConversationStatus,
    message_count: i64,
    unread_count: i64,
    last_message_at: Option<String>,
    created_at: Option<String>,
}

impl From<Conversation> for LegacyConversation {
    fn from(c: Conversation) -> Self {
        let [participant_from, participant_to] = c.participants;
        Self {
            id: c.id,
            participant_from,
            participant_to,
            channel_type: match c.channel {
                ChannelFamily::Phone => "sms",
                ChannelFamily::Email => "email",
            },
            status: c.status,
            message_count: c.message_count,
            unread_count: c.unread_count,
            last_message_at: c.last_message_at.and_then(|t| t.format(&Rfc3339).ok()),
            created_at: c.created_at.format(&Rfc3339).ok(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = LegacyConversations)]
struct Conversations {
    conversations: Vec<LegacyConversation>,
    total: i64,
}

#[utoipa::path(
    get,
    path = "/api/conversations",
    operation_id = "legacy_list_conversations",
    tag = "original API",
    summary = "Conversations (original shape; also served at /api/conversations/)",
    params(super::openapi::PageParams),
    responses((status = 200, body = Conversations)),
)]
async fn conversations(
    State(state): State<AppState>,
    Pagination(page): Pagination,
) -> Result<Json<Conversations>, ApiError> {
    let filter = ConversationFilter::default();
    let request = PageRequest { page, cursor: None };
    let listed = service::conversations::list(state.services(), &filter, &request).await?;
    Ok(Json(Conversations {
        conversations: listed.items.into_iter().map(Into::into).collect(),
        total: listed.total,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = LegacyMessages)]
struct Messages {
    messages: Vec<Message>,
    total: i64,
    conversation_id: Uuid,
}

/// Oldest first, like a chat transcript.
#[utoipa::path(
    get,
    path = "/api/conversations/{id}/messages",
    operation_id = "legacy_list_conversation_messages",
    tag = "original API",
    summary = "A conversation's messages, oldest first (original shape)",
    params(("id" = String, Path, description = "The conversation's id; anything that is not a known id is a 404"), super::openapi::PageParams),
    responses(
        (status = 200, body = Messages),
        (status = 404, description = "No such conversation", body = super::openapi::ErrorBody),
    ),
)]
async fn messages(
    State(state): State<AppState>,
    LegacyId(id): LegacyId,
    Pagination(page): Pagination,
) -> Result<Json<Messages>, ApiError> {
    let (messages, total) =
        service::conversations::messages(state.services(), id, SortOrder::Oldest, page).await?;
    Ok(Json(Messages {
        messages,
        total,
        conversation_id: id,
    }))
}
