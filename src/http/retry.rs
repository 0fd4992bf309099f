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
async fn retry(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Message>, ApiError> {
    let message = redrive::retry(state.store.as_ref(), state.queue.as_ref(), id).await?;
    Ok(Json(message))
}
