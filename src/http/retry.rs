//! `POST /api/v1/messages/{id}/retry`: put a failed message back in line.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};

use super::AppState;
use super::error::ApiError;
use super::extract::IdPath;
use crate::domain::Message;
use crate::service::redrive;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/messages/{id}/retry", post(retry))
}

/// 200 with the message, now `pending`; 409 unless it was `failed`.
#[utoipa::path(
    post,
    path = "/api/v1/messages/{id}/retry",
    operation_id = "retry_message",
    tag = "messages",
    summary = "Put a failed message back in line",
    params(("id" = uuid::Uuid, Path, description = "The message's id")),
    responses(
        (status = 200, description = "The message, now pending and queued", body = Message),
        (status = 404, description = "No such message", body = super::openapi::ErrorBody),
        (status = 409, description = "`not_failed`: only a failed message can be retried", body = super::openapi::ErrorBody),
    ),
)]
async fn retry(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Message>, ApiError> {
    let message = redrive::retry(state.store.as_ref(), state.queue.as_ref(), id).await?;
    Ok(Json(message))
}
