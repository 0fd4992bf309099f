//! `PATCH /api/v1/messages/{id}/status`: an operator's correction of a message's status.

use axum::extract::State;
use axum::routing::patch;
use axum::{Json, Router};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, IdPath};
use crate::domain::Message;
use crate::service::correct_status::{self, CorrectionRequest};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/messages/{id}/status", patch(correct))
}

#[derive(Debug, Deserialize)]
pub struct StatusCorrection {
    status: Option<String>,
    reason: Option<String>,
}

/// 200 with the corrected message; 409 `invalid_transition` when the lifecycle does not
/// allow the move from the message's current status.
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
