//! `POST /api/v1/messages/{id}/retry`: put a failed message back in line.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};

use super::AppState;
use super::error::ApiError;
use super::extract::IdPath;
use crate::domain::{Message, MessageStatus};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/messages/{id}/retry", post(retry))
}

#[tracing::instrument(skip_all, fields(message_id = %id))]
async fn retry(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Message>, ApiError> {
    let not_failed = |status: MessageStatus| ApiError::Conflict {
        code: "not_failed",
        message: format!("the message is {status}; only a failed message can be retried"),
    };
    let current = state
        .store
        .get_message(id)
        .await?
        .ok_or(ApiError::NotFound {
            resource: "message",
        })?;
    if current.status != MessageStatus::Failed {
        return Err(not_failed(current.status));
    }
    let done = crate::dlq::redrive(state.store.as_ref(), state.queue.as_ref(), &[id])
        .await
        .map_err(ApiError::Internal)?;
    match done.messages.into_iter().next() {
        Some(message) => Ok(Json(message)),
        // Someone else retried it between our read and our update.
        None => {
            let now = state.store.get_message(id).await?;
            Err(not_failed(now.map_or(MessageStatus::Pending, |m| m.status)))
        }
    }
}
