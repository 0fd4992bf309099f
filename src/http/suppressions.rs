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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// `phone` or `email`.
    #[param(pattern = "^(phone|email)$")]
    channel: Option<String>,
    #[param(value_type = Option<SuppressionReason>)]
    reason: Option<String>,
    /// One address (any formatting).
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

#[derive(Serialize, utoipa::ToSchema)]
struct SuppressionPage {
    suppressions: Vec<Suppression>,
    total: i64,
    limit: i64,
    offset: i64,
}

#[utoipa::path(
    get,
    path = "/api/v1/suppressions",
    operation_id = "list_suppressions",
    tag = "suppressions",
    summary = "The suppression list",
    params(ListQuery, super::openapi::PageParams),
    responses((status = 200, body = SuppressionPage)),
)]
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

/// An address to suppress.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = NewSuppression)]
pub struct AddRequest {
    #[schema(value_type = super::openapi::AddressText)]
    address: Option<String>,
    /// `manual` when absent.
    #[schema(value_type = Option<SuppressionReason>)]
    reason: Option<String>,
}

/// 201 with the new entry; 200 with the existing one if the address is already listed.
#[utoipa::path(
    post,
    path = "/api/v1/suppressions",
    operation_id = "add_suppression",
    tag = "suppressions",
    summary = "Add an address to the suppression list",
    request_body = AddRequest,
    responses(
        (status = 201, description = "Added", body = Suppression),
        (status = 200, description = "Already listed: the existing entry", body = Suppression),
    ),
)]
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
#[utoipa::path(
    delete,
    path = "/api/v1/suppressions/{address}",
    operation_id = "remove_suppression",
    tag = "suppressions",
    summary = "Lift a suppression",
    params(("address" = String, Path, description = "The address, URL-encoded (`%2B15551234567`, `jane%40example.com`)")),
    responses(
        (status = 204, description = "Lifted"),
        (status = 404, description = "The address was not listed", body = super::openapi::ErrorBody),
    ),
)]
async fn remove(
    State(state): State<AppState>,
    address: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path(address) =
        address.map_err(|_| ApiError::invalid("address", "must be URL-encoded UTF-8"))?;
    compliance::remove(state.services(), &address).await?;
    Ok(StatusCode::NO_CONTENT)
}
