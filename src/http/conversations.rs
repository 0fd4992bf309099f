//! `/api/v1/conversations`: create, list, read, edit, delete, mark read, search and
//! statistics of conversations, and a conversation's messages.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, CursorPagination, IdPath, Pagination, page};
use crate::domain::{
    Address, Conversation, ConversationPatch, ConversationStatistics, ConversationStatus, Message,
    NewConversation, SearchQuery, parse_channel,
};
use crate::service::conversations as service;
use crate::store::{ConversationFilter, SortOrder};

/// Messages shown by `GET /conversations/{id}?include_messages=true` unless `limit` says.
const INCLUDED_MESSAGES: &str = "20";
const SEARCH_DEFAULT_LIMIT: i64 = 20;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/conversations", post(create).get(list))
        .route("/api/v1/conversations/", post(create).get(list))
        .route("/api/v1/conversations/search", post(search))
        .route(
            "/api/v1/conversations/{id}",
            get(get_one).patch(update).delete(remove),
        )
        .route("/api/v1/conversations/{id}/messages", get(messages))
        .route("/api/v1/conversations/{id}/read", post(mark_read))
        .route("/api/v1/conversations/{id}/statistics", get(statistics))
}

/// A conversation to open (or find, if the pair already talks in this channel family).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = NewConversation)]
pub struct CreateRequest {
    /// Exactly two addresses of one family: E.164 phone numbers or email addresses.
    #[schema(value_type = Vec<super::openapi::AddressText>, min_items = 2, max_items = 2)]
    participants: Option<Vec<String>>,
    /// `phone` (or `sms`, `mms`) or `email`; taken from the addresses when absent.
    #[schema(pattern = "^(phone|sms|mms|email)$")]
    channel: Option<String>,
    /// One line.
    #[schema(max_length = 200)]
    title: Option<String>,
    /// A JSON object (numbers within ±1e300).
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// 201 with a new conversation; 200 with the existing one when the pair already has one
/// on that channel (creating is idempotent).
#[utoipa::path(
    post,
    path = "/api/v1/conversations",
    operation_id = "create_conversation",
    tag = "conversations",
    summary = "Open a conversation (also served at /api/v1/conversations/)",
    request_body = CreateRequest,
    responses(
        (status = 201, description = "Opened", body = Conversation),
        (status = 200, description = "The pair already had a conversation in this channel: that one", body = Conversation),
    ),
)]
async fn create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<Conversation>), ApiError> {
    let new = NewConversation::new(
        req.participants,
        req.channel.as_deref(),
        req.title,
        req.metadata,
    )?;
    let (conversation, created) = service::open(state.services(), &new).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(conversation)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(value_type = Option<ConversationStatus>)]
    status: Option<String>,
    /// `phone` or `email`.
    #[param(pattern = "^(phone|email)$")]
    channel: Option<String>,
    /// A phone number or email address taking part.
    participant: Option<String>,
}

impl TryFrom<ListQuery> for ConversationFilter {
    type Error = ApiError;

    fn try_from(q: ListQuery) -> Result<Self, ApiError> {
        let status = q.status.as_deref().map(|s| {
            ConversationStatus::parse(s).ok_or_else(|| {
                ApiError::invalid("status", "must be one of active, archived, closed")
            })
        });
        let channel = q.channel.as_deref().map(|c| {
            parse_channel(c)
                .ok_or_else(|| ApiError::invalid("channel", "must be one of phone, email"))
        });
        let participant = q.participant.as_deref().map(|p| {
            Address::parse_any(p)
                .map(|a| a.as_str().to_owned())
                .map_err(|r| ApiError::invalid("participant", r))
        });
        Ok(ConversationFilter {
            status: status.transpose()?,
            channel: channel.transpose()?,
            participant: participant.transpose()?,
        })
    }
}

#[derive(Serialize, utoipa::ToSchema)]
struct ConversationPage {
    conversations: Vec<Conversation>,
    /// Exact while at most `LIST_COUNT_LIMIT` (default 10,000) match; above, an estimate
    /// (`total_is_estimate`).
    total: i64,
    /// `total` is an estimate: more than `LIST_COUNT_LIMIT` match.
    total_is_estimate: bool,
    limit: i64,
    offset: i64,
    /// Pass as `cursor` for the page after this one; null after the last page.
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/conversations",
    operation_id = "list_conversations",
    tag = "conversations",
    summary = "Conversations, most recent first (also served at /api/v1/conversations/)",
    params(ListQuery, super::openapi::CursorPageParams),
    responses(
        (status = 200, body = ConversationPage),
        (status = 422, description = "`validation_error`: a bad filter, `limit` or `offset`, or a `cursor` that is garbled, from another filter, or given with a non-zero `offset`", body = super::openapi::ErrorBody),
    ),
)]
async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
    CursorPagination(request): CursorPagination,
) -> Result<Json<ConversationPage>, ApiError> {
    let filter = ConversationFilter::try_from(q)?;
    let listed = service::list(state.services(), &filter, &request).await?;
    Ok(Json(ConversationPage {
        conversations: listed.items,
        total: listed.total,
        total_is_estimate: listed.total_is_estimate,
        limit: request.page.limit,
        offset: request.page.offset,
        next_cursor: listed.next_cursor,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetQuery {
    /// Include the latest messages.
    #[param(value_type = Option<bool>)]
    include_messages: Option<String>,
    /// How many messages to include (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// A conversation with what a route adds to it, in one serializer: its fields first.
#[derive(Serialize, utoipa::ToSchema)]
struct With<T: Serialize> {
    #[serde(flatten)]
    conversation: Conversation,
    #[serde(flatten)]
    extra: T,
}

#[derive(Serialize, utoipa::ToSchema)]
struct IncludedMessages {
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<Message>>,
}

#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}",
    operation_id = "get_conversation",
    tag = "conversations",
    summary = "One conversation",
    params(("id" = Uuid, Path, description = "The conversation's id"), GetQuery),
    responses(
        (status = 200, body = With<IncludedMessages>),
        (status = 404, description = "No such conversation", body = super::openapi::ErrorBody),
    ),
)]
async fn get_one(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<GetQuery>,
) -> Result<Json<With<IncludedMessages>>, ApiError> {
    let included = match q.include_messages.as_deref() {
        None | Some("false" | "0") => None,
        Some("true" | "1") => Some(page(
            Some(q.limit.as_deref().unwrap_or(INCLUDED_MESSAGES)),
            None,
        )?),
        Some(_) => {
            return Err(ApiError::invalid(
                "include_messages",
                "must be true or false",
            ));
        }
    };
    let (conversation, messages) = service::get(state.services(), id, included).await?;
    Ok(Json(With {
        conversation,
        extra: IncludedMessages { messages },
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// `asc` (oldest first, the default) or `desc`.
    #[param(pattern = "^(asc|desc)$")]
    order: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ConversationMessages {
    conversation_id: Uuid,
    messages: Vec<Message>,
    total: i64,
    limit: i64,
    offset: i64,
}

/// Oldest first unless `order=desc`.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/messages",
    operation_id = "list_conversation_messages",
    tag = "conversations",
    summary = "A conversation's messages",
    params(("id" = Uuid, Path, description = "The conversation's id"), MessagesQuery, super::openapi::PageParams),
    responses(
        (status = 200, body = ConversationMessages),
        (status = 404, description = "No such conversation", body = super::openapi::ErrorBody),
    ),
)]
async fn messages(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiQuery(q): ApiQuery<MessagesQuery>,
    Pagination(page): Pagination,
) -> Result<Json<ConversationMessages>, ApiError> {
    let order = match q.order.as_deref() {
        None | Some("asc") => SortOrder::Oldest,
        Some("desc") => SortOrder::Newest,
        Some(_) => return Err(ApiError::invalid("order", "must be asc or desc")),
    };
    let (messages, total) = service::messages(state.services(), id, order, page).await?;
    Ok(Json(ConversationMessages {
        conversation_id: id,
        messages,
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(Value::Null)`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// What to change; absent fields are kept.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ConversationChanges)]
pub struct PatchRequest {
    /// One line, or null to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 200)]
    title: Option<Value>,
    #[schema(value_type = Option<ConversationStatus>)]
    status: Option<String>,
    /// A JSON object (numbers within ±1e300); replaces the stored one.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

#[utoipa::path(
    patch,
    path = "/api/v1/conversations/{id}",
    operation_id = "update_conversation",
    tag = "conversations",
    summary = "Change a conversation's title, status or metadata",
    params(("id" = Uuid, Path, description = "The conversation's id")),
    request_body = PatchRequest,
    responses(
        (status = 200, body = Conversation),
        (status = 404, description = "No such conversation", body = super::openapi::ErrorBody),
    ),
)]
async fn update(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<PatchRequest>,
) -> Result<Json<Conversation>, ApiError> {
    let patch = ConversationPatch::new(req.title, req.status.as_deref(), req.metadata)?;
    Ok(Json(service::update(state.services(), id, &patch).await?))
}

#[utoipa::path(
    delete,
    path = "/api/v1/conversations/{id}",
    operation_id = "delete_conversation",
    tag = "conversations",
    summary = "Delete a conversation and its messages",
    params(("id" = Uuid, Path, description = "The conversation's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such conversation", body = super::openapi::ErrorBody),
    ),
)]
async fn remove(State(state): State<AppState>, IdPath(id): IdPath) -> Result<StatusCode, ApiError> {
    service::delete(state.services(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
struct MarkedRead {
    marked_read: u64,
}

/// The conversation (now `unread_count: 0`) and `marked_read`, the messages just marked.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/read",
    operation_id = "mark_conversation_read",
    tag = "conversations",
    summary = "Mark a conversation's inbound messages read",
    params(("id" = Uuid, Path, description = "The conversation's id")),
    responses(
        (status = 200, description = "The conversation and how many messages were marked", body = With<MarkedRead>),
        (status = 404, description = "No such conversation", body = super::openapi::ErrorBody),
    ),
)]
async fn mark_read(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<With<MarkedRead>>, ApiError> {
    let (conversation, marked_read) = service::mark_read(state.services(), id).await?;
    Ok(Json(With {
        conversation,
        extra: MarkedRead { marked_read },
    }))
}

/// A full-text search over message bodies and subjects.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = ConversationSearch)]
pub struct SearchRequest {
    #[schema(required = true, min_length = 1, max_length = 200)]
    query: Option<String>,
    /// Most conversations returned (default 20).
    #[schema(minimum = 1, maximum = 100)]
    limit: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct Ranked {
    rank: f64,
    matching_messages: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
struct SearchResults {
    query: String,
    conversations: Vec<With<Ranked>>,
    total: usize,
    limit: i64,
}

/// Best match first; every hit carries its `rank` and `matching_messages`.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/search",
    operation_id = "search_conversations",
    tag = "conversations",
    summary = "Search conversations by their messages' text",
    request_body = SearchRequest,
    responses((status = 200, body = SearchResults)),
)]
async fn search(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<Json<SearchResults>, ApiError> {
    let query = SearchQuery::parse(req.query.as_deref())?;
    let limit = req.limit.unwrap_or(SEARCH_DEFAULT_LIMIT).to_string();
    let limit = page(Some(&limit), None)?.limit;
    let hits = service::search(state.services(), &query, limit).await?;
    let conversations: Vec<With<Ranked>> = hits
        .into_iter()
        .map(|hit| With {
            conversation: hit.conversation,
            extra: Ranked {
                rank: hit.rank,
                matching_messages: hit.matching_messages,
            },
        })
        .collect();
    Ok(Json(SearchResults {
        query: query.text,
        total: conversations.len(),
        conversations,
        limit,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}/statistics",
    operation_id = "get_conversation_statistics",
    tag = "conversations",
    summary = "A conversation's totals",
    params(("id" = Uuid, Path, description = "The conversation's id")),
    responses(
        (status = 200, body = ConversationStatistics),
        (status = 404, description = "No such conversation", body = super::openapi::ErrorBody),
    ),
)]
async fn statistics(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<ConversationStatistics>, ApiError> {
    Ok(Json(service::statistics(state.services(), id).await?))
}
