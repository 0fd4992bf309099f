//! Webhook endpoints the application receives events at:
//! `/api/v1/webhook-endpoints[/{id}[/rotate-secret|/attempts|/test]]`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, IdPath, Pagination};
use crate::service::webhook_endpoints::{self, CreateEndpoint, UpdateEndpoint};
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

async fn create(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<CreateEndpoint>,
) -> Result<impl IntoResponse, ApiError> {
    let created = webhook_endpoints::create(state.services(), req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Serialize)]
struct Endpoints {
    endpoints: Vec<Endpoint>,
}

async fn list(State(state): State<AppState>) -> Result<Json<Endpoints>, ApiError> {
    let endpoints = webhook_endpoints::list(state.services()).await?;
    Ok(Json(Endpoints { endpoints }))
}

async fn read(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(webhook_endpoints::get(state.services(), id).await?))
}

async fn update(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    ApiJson(req): ApiJson<UpdateEndpoint>,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(
        webhook_endpoints::update(state.services(), id, req).await?,
    ))
}

async fn remove(State(state): State<AppState>, IdPath(id): IdPath) -> Result<StatusCode, ApiError> {
    webhook_endpoints::delete(state.services(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate_secret(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(
        webhook_endpoints::rotate_secret(state.services(), id).await?,
    ))
}

#[derive(Serialize)]
struct Attempts {
    attempts: Vec<AttemptRecord>,
    total: i64,
    limit: i64,
    offset: i64,
}

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

async fn test(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<impl IntoResponse, ApiError> {
    let event_id = webhook_endpoints::test(state.services(), id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "event_id": event_id }))))
}
