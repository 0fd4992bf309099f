//! `/api/v1/conversations`: create, list, read, edit, delete, mark read, search and
//! statistics of conversations, and a conversation's messages.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, IdPath};
use super::messages::page;
use crate::domain::{
    Address, Conversation, ConversationPatch, ConversationStatus, NewConversation, SearchQuery,
    parse_channel,
};
use crate::store::{ConversationFilter, Page, SortOrder};

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

const NOT_FOUND: ApiError = ApiError::NotFound {
    resource: "conversation",
};

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::invalid("query", e.body_text()))
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
#[tracing::instrument(skip_all)]
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
    let (conversation, created) = state.store.create_conversation(&new).await?;
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
    limit: Option<String>,
    offset: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let page = page(q.limit.as_deref(), q.offset.as_deref())?;
    let filter = ConversationFilter {
        status: q
            .status
            .as_deref()
            .map(|s| {
                ConversationStatus::parse(s).ok_or_else(|| {
                    ApiError::invalid("status", "must be one of active, archived, closed")
                })
            })
            .transpose()?,
        channel: q
            .channel
            .as_deref()
            .map(|c| {
                parse_channel(c)
                    .ok_or_else(|| ApiError::invalid("channel", "must be one of phone, email"))
            })
            .transpose()?,
        participant: q
            .participant
            .as_deref()
            .map(|p| {
                Address::parse_any(p)
                    .map(|a| a.as_str().to_owned())
                    .map_err(|r| ApiError::invalid("participant", r))
            })
            .transpose()?,
    };
    let (conversations, total) = state.store.list_conversations(&filter, page).await?;
    Ok(Json(json!({
        "conversations": conversations,
        "total": total,
        "limit": page.limit,
        "offset": page.offset,
    })))
}

#[derive(Debug, Deserialize)]
pub struct GetQuery {
    include_messages: Option<String>,
    limit: Option<String>,
}

async fn get_one(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    q: Result<Query<GetQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let include = match q.include_messages.as_deref() {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(_) => {
            return Err(ApiError::invalid(
                "include_messages",
                "must be true or false",
            ));
        }
    };
    let conversation = state.store.get_conversation(id).await?.ok_or(NOT_FOUND)?;
    let mut body = serde_json::to_value(&conversation).map_err(|e| ApiError::Internal(e.into()))?;
    if include {
        let page = page(Some(q.limit.as_deref().unwrap_or(INCLUDED_MESSAGES)), None)?;
        // Deleted meanwhile: the conversation above is still a truthful answer.
        let (messages, _) = state
            .store
            .conversation_messages(id, SortOrder::Newest, page)
            .await?
            .unwrap_or_default();
        body["messages"] = json!(messages);
    }
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
pub struct MessagesQuery {
    order: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

/// Oldest first unless `order=desc`.
async fn messages(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    q: Result<Query<MessagesQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let page = page(q.limit.as_deref(), q.offset.as_deref())?;
    let order = match q.order.as_deref() {
        None | Some("asc") => SortOrder::Oldest,
        Some("desc") => SortOrder::Newest,
        Some(_) => return Err(ApiError::invalid("order", "must be asc or desc")),
    };
    let (messages, total) = state
        .store
        .conversation_messages(id, order, page)
        .await?
        .ok_or(NOT_FOUND)?;
    Ok(Json(json!({
        "conversation_id": id,
        "messages": messages,
        "total": total,
        "limit": page.limit,
        "offset": page.offset,
    })))
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

#[tracing::instrument(skip_all, fields(conversation_id = %id))]
async fn update(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<PatchRequest>,
) -> Result<Json<Conversation>, ApiError> {
    let patch = ConversationPatch::new(req.title, req.status.as_deref(), req.metadata)?;
    state
        .store
        .update_conversation(id, &patch)
        .await?
        .map(Json)
        .ok_or(NOT_FOUND)
}

#[tracing::instrument(skip_all, fields(conversation_id = %id))]
async fn remove(State(state): State<AppState>, IdPath(id): IdPath) -> Result<StatusCode, ApiError> {
    if state.store.delete_conversation(id).await? {
        tracing::info!(conversation_id = %id, "Conversation deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(NOT_FOUND)
    }
}

/// The conversation (now `unread_count: 0`) and `marked_read`, the messages just marked.
#[tracing::instrument(skip_all, fields(conversation_id = %id))]
async fn mark_read(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Value>, ApiError> {
    let (conversation, marked) = state
        .store
        .mark_conversation_read(id)
        .await?
        .ok_or(NOT_FOUND)?;
    let mut body = serde_json::to_value(&conversation).map_err(|e| ApiError::Internal(e.into()))?;
    body["marked_read"] = json!(marked);
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
pub struct SearchRequest {
    query: Option<String>,
    limit: Option<i64>,
}

/// Best match first; every hit carries its `rank` and `matching_messages`.
#[tracing::instrument(skip_all)]
async fn search(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<Json<Value>, ApiError> {
    let query = SearchQuery::parse(req.query.as_deref())?;
    let Page { limit, .. } = page(
        Some(&req.limit.unwrap_or(SEARCH_DEFAULT_LIMIT).to_string()),
        None,
    )?;
    let hits = state.store.search_conversations(&query, limit).await?;
    let conversations = hits
        .into_iter()
        .map(|hit| {
            let mut c = serde_json::to_value(&hit.conversation)?;
            c["rank"] = json!(hit.rank);
            c["matching_messages"] = json!(hit.matching_messages);
            Ok(c)
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(Json(json!({
        "query": query.text,
        "conversations": conversations,
        "total": conversations.len(),
        "limit": limit,
    })))
}

async fn statistics(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Value>, ApiError> {
    let stats = state
        .store
        .conversation_statistics(id)
        .await?
        .ok_or(NOT_FOUND)?;
    Ok(Json(json!(stats)))
}
