//! Webhook endpoints the application receives events at:
//! `/api/v1/webhook-endpoints[/{id}[/rotate-secret|/attempts|/test]]`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, IdPath, Pagination};
use crate::service::webhook_endpoints::{
    self, CreateEndpoint, Rotated, UpdateEndpoint, WithSecret,
};
use crate::store::outbox::{AttemptRecord, Endpoint};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/webhook-endpoints", post(create).get(list))
        .route(
            "/api/v1/webhook-endpoints/{id}",
            get(read).patch(update).delete(remove),
        )
        .route(
            "/api/v1/webhook-endpoints/{id}/rotate-secret",
            post(rotate_secret),
        )
        .route("/api/v1/webhook-endpoints/{id}/attempts", get(attempts))
        .route("/api/v1/webhook-endpoints/{id}/test", post(test))
}

/// 201 with the endpoint and its signing secret, shown only in this answer. The URL must be
/// a public http(s) URL; the events are those listed in `webhooks` of this document.
#[utoipa::path(
    post,
    path = "/api/v1/webhook-endpoints",
    operation_id = "create_webhook_endpoint",
    tag = "webhook endpoints",
    summary = "Add a webhook endpoint",
    request_body = CreateEndpoint,
    responses(
        (status = 201, description = "Created; `secret` signs its events", body = WithSecret, links(
            ("GetEndpoint" = (operation_id = "get_webhook_endpoint", parameters(("id" = "$response.body#/id")), description = "The endpoint")),
            ("TestEndpoint" = (operation_id = "test_webhook_endpoint", parameters(("id" = "$response.body#/id")), description = "Send it a test.ping")),
        )),
    ),
)]
async fn create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateEndpoint>,
) -> Result<(StatusCode, Json<WithSecret>), ApiError> {
    let created = webhook_endpoints::create(state.services(), req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WebhookEndpoints)]
struct Endpoints {
    endpoints: Vec<Endpoint>,
}

#[utoipa::path(
    get,
    path = "/api/v1/webhook-endpoints",
    operation_id = "list_webhook_endpoints",
    tag = "webhook endpoints",
    summary = "Every webhook endpoint (without secrets)",
    responses((status = 200, body = Endpoints)),
)]
async fn list(State(state): State<AppState>) -> Result<Json<Endpoints>, ApiError> {
    let endpoints = webhook_endpoints::list(state.services()).await?;
    Ok(Json(Endpoints { endpoints }))
}

#[utoipa::path(
    get,
    path = "/api/v1/webhook-endpoints/{id}",
    operation_id = "get_webhook_endpoint",
    tag = "webhook endpoints",
    summary = "One webhook endpoint (without its secret)",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 200, body = Endpoint),
        (status = 404, description = "No such endpoint", body = super::openapi::ErrorBody),
    ),
)]
async fn read(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(webhook_endpoints::get(state.services(), id).await?))
}

/// Absent fields are unchanged; `null` clears `events` (every type) or `description`.
#[utoipa::path(
    patch,
    path = "/api/v1/webhook-endpoints/{id}",
    operation_id = "update_webhook_endpoint",
    tag = "webhook endpoints",
    summary = "Change a webhook endpoint",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    request_body = UpdateEndpoint,
    responses(
        (status = 200, description = "The endpoint as changed", body = Endpoint),
        (status = 404, description = "No such endpoint", body = super::openapi::ErrorBody),
    ),
)]
async fn update(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<UpdateEndpoint>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(
        webhook_endpoints::update(state.services(), id, req).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/api/v1/webhook-endpoints/{id}",
    operation_id = "delete_webhook_endpoint",
    tag = "webhook endpoints",
    summary = "Delete a webhook endpoint",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such endpoint", body = super::openapi::ErrorBody),
    ),
)]
async fn remove(State(state): State<AppState>, IdPath(id): IdPath) -> Result<StatusCode, ApiError> {
    webhook_endpoints::delete(state.services(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new secret, shown only in this answer; for 24 hours events carry a signature with
/// each secret, so receivers can switch without losing events.
#[utoipa::path(
    post,
    path = "/api/v1/webhook-endpoints/{id}/rotate-secret",
    operation_id = "rotate_webhook_endpoint_secret",
    tag = "webhook endpoints",
    summary = "Rotate an endpoint's signing secret",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The new secret", body = Rotated),
        (status = 404, description = "No such endpoint", body = super::openapi::ErrorBody),
    ),
)]
async fn rotate_secret(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Rotated>, ApiError> {
    Ok(Json(
        webhook_endpoints::rotate_secret(state.services(), id).await?,
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WebhookAttempts)]
struct Attempts {
    attempts: Vec<AttemptRecord>,
    total: i64,
    limit: i64,
    offset: i64,
}

/// Newest first.
#[utoipa::path(
    get,
    path = "/api/v1/webhook-endpoints/{id}/attempts",
    operation_id = "list_webhook_endpoint_attempts",
    tag = "webhook endpoints",
    summary = "The delivery attempts made to an endpoint",
    params(("id" = Uuid, Path, description = "The endpoint's id"), super::openapi::PageParams),
    responses(
        (status = 200, body = Attempts),
        (status = 404, description = "No such endpoint", body = super::openapi::ErrorBody),
    ),
)]
async fn attempts(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    Pagination(page): Pagination,
) -> Result<Json<Attempts>, ApiError> {
    let (attempts, total) = webhook_endpoints::attempts(state.services(), id, page).await?;
    Ok(Json(Attempts {
        attempts,
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}

/// The id of a queued `test.ping`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = TestEventQueued)]
struct TestQueued {
    /// The event's id, sent as its `webhook-id` header.
    #[schema(example = "evt_6f1c2b0e8d7a4c1f9e3b5a7d2c4e6f80")]
    event_id: String,
}

/// Queues a `test.ping` event for this endpoint only; its attempts are listed with the
/// others.
#[utoipa::path(
    post,
    path = "/api/v1/webhook-endpoints/{id}/test",
    operation_id = "test_webhook_endpoint",
    tag = "webhook endpoints",
    summary = "Send a test.ping to an endpoint",
    params(("id" = Uuid, Path, description = "The endpoint's id")),
    responses(
        (status = 202, description = "Queued", body = TestQueued),
        (status = 404, description = "No such endpoint", body = super::openapi::ErrorBody),
    ),
)]
async fn test(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let event_id = webhook_endpoints::test(state.services(), id).await?;
    Ok((StatusCode::ACCEPTED, Json(TestQueued { event_id })))
}
