//! `/api/v1/suppressions`: the suppression list — list with filters, add, remove.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Pagination};
use crate::domain::compliance::{Suppression, SuppressionReason};
use crate::domain::parse_channel;
use crate::service::compliance;
use crate::store::{Suppressed, SuppressionFilter};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/suppressions", get(list).post(add))
        .route("/api/v1/suppressions/{address}", delete(remove))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    channel: Option<String>,
    reason: Option<String>,
    address: Option<String>,
}

impl TryFrom<ListQuery> for SuppressionFilter {
    type Error = ApiError;

    fn try_from(q: ListQuery) -> Result<Self, ApiError> {
        Ok(SuppressionFilter {
            channel: q
                .channel
                .as_deref()
                .map(|c| {
                    parse_channel(c)
                        .ok_or_else(|| ApiError::invalid("channel", "must be phone or email"))
                })
                .transpose()?,
            reason: q
                .reason
                .as_deref()
                .map(|r| {
                    SuppressionReason::parse(r).ok_or_else(|| {
                        ApiError::invalid(
                            "reason",
                            "must be one of opted_out, bounced, complained, unsubscribed, manual",
                        )
                    })
                })
                .transpose()?,
            address: q
                .address
                .as_deref()
                .map(|a| compliance::parse_address("address", a).map(|a| a.as_str().to_owned()))
                .transpose()?,
        })
    }
}

#[derive(Serialize)]
struct SuppressionPage {
    suppressions: Vec<Suppression>,
    total: i64,
    limit: i64,
    offset: i64,
}

async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
    Pagination(page): Pagination,
) -> Result<Json<SuppressionPage>, ApiError> {
    let filter = SuppressionFilter::try_from(q)?;
    let (suppressions, total) = compliance::list(state.services(), &filter, page).await?;
    Ok(Json(SuppressionPage {
        suppressions,
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}

#[derive(Debug, Deserialize)]
pub struct AddRequest {
    address: Option<String>,
    reason: Option<String>,
}

/// 201 with the new entry; 200 with the existing one if the address is already listed.
async fn add(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<AddRequest>,
) -> Result<(StatusCode, Json<Suppression>), ApiError> {
    let done = compliance::add(
        state.services(),
        req.address.as_deref(),
        req.reason.as_deref(),
    )
    .await?;
    Ok(match done {
        Suppressed::Added(s) => (StatusCode::CREATED, Json(s)),
        Suppressed::Existing(s) => (StatusCode::OK, Json(s)),
    })
}

/// 204 once lifted; 404 if the address was not on the list. The address is URL-encoded
/// (`%2B15551234567`, `jane%40example.com`).
async fn remove(
    State(state): State<AppState>,
    address: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(address) =
        address.map_err(|_| ApiError::invalid("address", "must be URL-encoded UTF-8"))?;
    compliance::remove(state.services(), &address).await?;
    Ok(StatusCode::NO_CONTENT)
}
