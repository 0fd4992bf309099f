//! Provider callbacks: `POST /api/v1/webhooks/twilio` and `POST /api/v1/webhooks/sendgrid`,
//! and the delivery log operators read (`GET /api/v1/webhook-deliveries`).
//!
//! Every call is verified before anything is stored, logged durably with its outcome, and
//! idempotent: replays answer 200 and change nothing. Work is bounded by a semaphore so a
//! storm of callbacks cannot take the connections the send path needs.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::AppState;
use super::error::ApiError;
use super::messages::page;
use crate::store::{EventOutcome, ProviderEvent, WebhookLogEntry};
use crate::webhook::signature::{verify_twilio, verify_twilio_json};
use crate::webhook::{sendgrid, twilio};

const INBOUND_PARSE_MAX_BYTES: usize = 32 * 1024 * 1024;
const TWIML_EMPTY: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/webhooks/twilio", post(twilio_webhook))
        // Inbound Parse posts whole emails, up to 30 MB.
        .route(
            "/api/v1/webhooks/sendgrid",
            post(sendgrid_webhook).layer(axum::extract::DefaultBodyLimit::max(
                INBOUND_PARSE_MAX_BYTES,
            )),
        )
        .route("/api/v1/webhook-deliveries", get(deliveries))
}

fn twiml() -> Response {
    (StatusCode::OK, [(CONTENT_TYPE, "text/xml")], TWIML_EMPTY).into_response()
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// Logs a refused call and answers 403. Nothing else is stored.
async fn reject(state: &AppState, provider: &'static str, reason: &str) -> ApiError {
    tracing::warn!(provider, reason, "webhook rejected");
    let entry = WebhookLogEntry {
        provider,
        kind: "unverified",
        dedupe_key: None,
        verified: false,
        outcome: "rejected".into(),
        message_id: None,
        detail: json!({ "reason": reason }),
    };
    if let Err(e) = state.store.log_webhook(&entry).await {
        tracing::warn!(error = %format!("{:#}", anyhow::Error::from(e)), "could not log a rejected webhook");
    }
    ApiError::Forbidden {
        code: "invalid_signature",
        message: format!("webhook refused: {reason}"),
    }
}

/// Applies receipts under the webhook concurrency limit.
async fn apply(state: &AppState, events: &[ProviderEvent]) -> Result<Vec<EventOutcome>, ApiError> {
    let _permit = state
        .webhook_permits
        .acquire()
        .await
        .map_err(|_| ApiError::Unavailable {
            dependency: "api",
            details: json!({ "reason": "shutting down" }),
        })?;
    Ok(state.store.apply_provider_events(events).await?)
}

#[tracing::instrument(skip_all, fields(provider = "twilio"))]
async fn twilio_webhook(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let settings = &state.settings.webhooks;
    let url = format!(
        "{}{}",
        settings.public_base_url,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let is_json = content_type(&headers) == "application/json";
    let params: Vec<(String, String)> = match content_type(&headers).as_str() {
        "application/x-www-form-urlencoded" => {
            url::form_urlencoded::parse(&body).into_owned().collect()
        }
        "application/json" => {
            let value: Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
            let object = value
                .as_object()
                .ok_or_else(|| ApiError::invalid("body", "must be a JSON object"))?;
            object
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        }
        _ => return Err(ApiError::UnsupportedMediaType),
    };

    if settings.verify_signatures {
        let Some(token) = &settings.twilio_auth_token else {
            return Err(reject(&state, "twilio", "TWILIO_AUTH_TOKEN is not configured").await);
        };
        let Some(signature) = headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
        else {
            return Err(reject(&state, "twilio", "X-Twilio-Signature is missing").await);
        };
        let valid = if is_json {
            verify_twilio_json(token.expose_secret(), &url, &body, signature)
        } else {
            verify_twilio(token.expose_secret(), &url, &params, signature)
        };
        if !valid {
            return Err(reject(&state, "twilio", "X-Twilio-Signature does not match").await);
        }
    }

    match twilio::parse(&params).map_err(|e| ApiError::invalid("body", e.0))? {
        twilio::TwilioCallback::Status(event) => {
            let sid = event.provider_message_id.clone();
            let status = event.event.clone();
            let outcome = apply(&state, std::slice::from_ref(&event)).await?;
            let outcome = outcome.first().map(|o| o.as_str()).unwrap_or("none");
            if outcome == EventOutcome::UnknownMessage.as_str() {
                tracing::warn!(sid = %sid, status = %status, "Twilio status callback for an unknown message");
            } else {
                tracing::info!(sid = %sid, status = %status, outcome, "Twilio status callback");
            }
            Ok(twiml())
        }
        twilio::TwilioCallback::Inbound(inbound) => {
            super::inbound::store_twilio_inbound(&state, inbound, settings.verify_signatures)
                .await?;
            Ok(twiml())
        }
    }
}

#[tracing::instrument(skip_all, fields(provider = "sendgrid"))]
async fn sendgrid_webhook(
    State(state): State<AppState>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    if content_type(&headers) == "multipart/form-data" {
        return super::inbound::sendgrid_inbound_parse(state, query, headers, request).await;
    }
    if content_type(&headers) != "application/json" {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body = axum::body::to_bytes(request.into_body(), INBOUND_PARSE_MAX_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let settings = &state.settings.webhooks;
    if settings.verify_signatures {
        let Some(key) = &settings.sendgrid_public_key else {
            return Err(reject(
                &state,
                "sendgrid",
                "SENDGRID_WEBHOOK_PUBLIC_KEY is not configured",
            )
            .await);
        };
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(signature), Some(timestamp)) = (
            header("x-twilio-email-event-webhook-signature"),
            header("x-twilio-email-event-webhook-timestamp"),
        ) else {
            return Err(reject(
                &state,
                "sendgrid",
                "signature or timestamp header is missing",
            )
            .await);
        };
        let Ok(ts) = timestamp.trim().parse::<i64>() else {
            return Err(reject(&state, "sendgrid", "the timestamp is not a number").await);
        };
        let skew = (OffsetDateTime::now_utc().unix_timestamp() - ts).unsigned_abs();
        if skew > settings.max_clock_skew.as_secs() {
            return Err(reject(&state, "sendgrid", "the timestamp is stale").await);
        }
        if !key.verify(timestamp.trim(), &body, signature) {
            return Err(reject(&state, "sendgrid", "the signature does not match").await);
        }
    }
    let value: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    let (events, skipped) =
        sendgrid::parse_events(&value).map_err(|reason| ApiError::invalid("body", reason))?;
    let outcomes = apply(&state, &events).await?;
    let count = |o: EventOutcome| outcomes.iter().filter(|x| **x == o).count();
    let summary = json!({
        "received": events.len() + skipped,
        "applied": count(EventOutcome::Applied),
        "recorded": count(EventOutcome::Recorded),
        "duplicate": count(EventOutcome::Duplicate),
        "unknown_message": count(EventOutcome::UnknownMessage),
        "skipped": skipped,
    });
    tracing::info!(summary = %summary, "SendGrid events");
    Ok((StatusCode::OK, Json(summary)).into_response())
}

#[derive(Debug, Deserialize)]
struct DeliveriesQuery {
    provider: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

async fn deliveries(
    State(state): State<AppState>,
    query: Result<Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let page = page(q.limit.as_deref(), q.offset.as_deref())?;
    let provider = match q.provider.as_deref() {
        None => None,
        Some(p @ ("twilio" | "sendgrid")) => Some(p),
        Some(_) => return Err(ApiError::invalid("provider", "must be twilio or sendgrid")),
    };
    let (deliveries, total) = state.store.webhook_deliveries(provider, page).await?;
    Ok(Json(
        json!({ "deliveries": deliveries, "total": total, "limit": page.limit, "offset": page.offset }),
    ))
}
