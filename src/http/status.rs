//! `PATCH /api/v1/messages/{id}/status`: an operator's correction of a message's status.

use axum::extract::State;
use axum::routing::patch;
use axum::{Json, Router};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, IdPath};
use crate::domain::{Message, MessageStatus};
use crate::service::correct_status::{self, CorrectionRequest};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/messages/{id}/status", patch(correct))
}

/// An operator's correction of a message's status.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct StatusCorrection {
    /// The status to set; only moves the message lifecycle allows.
    #[schema(required = true, value_type = MessageStatus)]
    status: Option<String>,
    /// Why, kept in the message's events.
    #[schema(max_length = 500)]
    reason: Option<String>,
}

/// 200 with the corrected message; 409 `invalid_transition` when the lifecycle does not
/// allow the move from the message's current status.
#[utoipa::path(
    patch,
    path = "/api/v1/messages/{id}/status",
    operation_id = "correct_message_status",
    tag = "messages",
    summary = "Correct a message's status (operators)",
    params(("id" = uuid::Uuid, Path, description = "The message's id")),
    request_body = StatusCorrection,
    responses(
        (status = 200, description = "The corrected message; a `corrected` event records the move and the reason", body = Message),
        (status = 404, description = "No such message", body = super::openapi::ErrorBody),
        (status = 409, description = "`invalid_transition`: the lifecycle does not allow this move from the message's status", body = super::openapi::ErrorBody),
    ),
)]
async fn correct(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<StatusCorrection>,
) -> Result<Json<Message>, ApiError> {
    let request = CorrectionRequest {
        status: req.status,
        reason: req.reason,
    };
    let message = correct_status::correct(state.services(), id, &request).await?;
    Ok(Json(message))
}
