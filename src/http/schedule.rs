//! `POST /api/v1/messages/{id}/cancel`: cancel a scheduled send before it is due.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};

use super::AppState;
use super::error::ApiError;
use super::extract::IdPath;
use crate::domain::Message;
use crate::service::schedule;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/messages/{id}/cancel", post(cancel))
}

/// 200 with the message, now `canceled`; 409 `not_cancelable` unless it was `scheduled`.
#[utoipa::path(
    post,
    path = "/api/v1/messages/{id}/cancel",
    operation_id = "cancel_message",
    tag = "messages",
    summary = "Cancel a scheduled send before it is due",
    params(("id" = uuid::Uuid, Path, description = "The message's id")),
    responses(
        (status = 200, description = "The message, now canceled", body = Message),
        (status = 404, description = "No such message", body = super::openapi::ErrorBody),
        (status = 409, description = "`not_cancelable`: the message is no longer scheduled", body = super::openapi::ErrorBody),
    ),
)]
async fn cancel(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Message>, ApiError> {
    Ok(Json(schedule::cancel(state.services(), id).await?))
}
