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
use super::extract::{ApiJson, ApiQuery, IdPath, Pagination, page};
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

#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    participants: Option<Vec<String>>,
    channel: Option<String>,
    title: Option<String>,
    metadata: Option<Value>,
}

/// 201 with a new conversation; 200 with the existing one when the pair already has one
/// on that channel (creating is idempotent).
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

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    channel: Option<String>,
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

#[derive(Serialize)]
struct ConversationPage {
    conversations: Vec<Conversation>,
    total: i64,
    limit: i64,
    offset: i64,
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
    Pagination(page): Pagination,
) -> Result<Json<ConversationPage>, ApiError> {
    let filter = ConversationFilter::try_from(q)?;
    let (conversations, total) = service::list(state.services(), &filter, page).await?;
    Ok(Json(ConversationPage {
        conversations,
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}

#[derive(Debug, Deserialize)]
pub struct GetQuery {
    include_messages: Option<String>,
    limit: Option<String>,
}

/// A conversation with what a route adds to it, in one serializer: its fields first.
#[derive(Serialize)]
struct With<T: Serialize> {
    #[serde(flatten)]
    conversation: Conversation,
    #[serde(flatten)]
    extra: T,
}

#[derive(Serialize)]
struct IncludedMessages {
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<Vec<Message>>,
}

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

#[derive(Debug, Deserialize)]
pub struct MessagesQuery {
    order: Option<String>,
}

#[derive(Serialize)]
struct ConversationMessages {
    conversation_id: Uuid,
    messages: Vec<Message>,
    total: i64,
    limit: i64,
    offset: i64,
}

/// Oldest first unless `order=desc`.
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

#[derive(Debug, Deserialize)]
pub struct PatchRequest {
    #[serde(default, deserialize_with = "present")]
    title: Option<Value>,
    status: Option<String>,
    metadata: Option<Value>,
}

async fn update(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<PatchRequest>,
) -> Result<Json<Conversation>, ApiError> {
    let patch = ConversationPatch::new(req.title, req.status.as_deref(), req.metadata)?;
    Ok(Json(service::update(state.services(), id, &patch).await?))
}

async fn remove(State(state): State<AppState>, IdPath(id): IdPath) -> Result<StatusCode, ApiError> {
    service::delete(state.services(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct MarkedRead {
    marked_read: u64,
}

/// The conversation (now `unread_count: 0`) and `marked_read`, the messages just marked.
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

#[derive(Debug, Deserialize)]
pub struct SearchRequest {
    query: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize)]
struct Ranked {
    rank: f64,
    matching_messages: i64,
}

#[derive(Serialize)]
struct SearchResults {
    query: String,
    conversations: Vec<With<Ranked>>,
    total: usize,
    limit: i64,
}

/// Best match first; every hit carries its `rank` and `matching_messages`.
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

async fn statistics(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<ConversationStatistics>, ApiError> {
    Ok(Json(service::statistics(state.services(), id).await?))
}
