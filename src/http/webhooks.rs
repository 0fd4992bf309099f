//! Provider callbacks: `POST /api/v1/webhooks/twilio` and `POST /api/v1/webhooks/sendgrid`,
//! and the delivery log operators read (`GET /api/v1/webhook-deliveries`).
//!
//! Every call is verified before anything is stored, logged durably with its outcome, and
//! idempotent: replays answer 200 and change nothing. Work is bounded by a semaphore so a
//! storm of callbacks cannot take the connections the send path needs.

use axum::extract::{FromRequest, Multipart, OriginalUri, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiBytes, ApiQuery, Pagination};
use crate::domain::ValidationError;
use crate::service::inbound_email::{self, InboundEmailForm, InboundFile, InboundParseAuth};
use crate::service::webhook_intake::{self, SendgridEventsCall, TwilioCall};
use crate::service::{Context, ServiceError};
use crate::store::WebhookDelivery;

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

/// The media type, lower-case, without parameters.
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Status callbacks and inbound messages; answered with empty TwiML.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/twilio",
    operation_id = "twilio_webhook",
    tag = "provider webhooks",
    summary = "Twilio status callbacks and inbound SMS/MMS",
    description = "Twilio's form post: a status callback (`MessageSid`, `MessageStatus`, `ErrorCode`) \
                   moves the message forward; an inbound message (`From`, `To`, `Body`, `NumMedia`, \
                   `MediaUrl0`…) is stored. Replays are recognised and answered the same.",
    request_body(content = TwilioForm, content_type = "application/x-www-form-urlencoded"),
    security(("twilio_signature" = [])),
    responses(
        (status = 200, description = "Accepted (an empty TwiML answer)", content_type = "text/xml", body = String),
        (status = 403, description = "`invalid_signature`: the signature is missing or wrong", body = super::openapi::ErrorBody),
    ),
)]
async fn twilio_webhook(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    ApiBytes(body): ApiBytes,
) -> Result<Response, ApiError> {
    let call = TwilioCall {
        path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()),
        content_type: &content_type(&headers),
        signature: header(&headers, "x-twilio-signature"),
        body: &body,
    };
    webhook_intake::twilio(state.services(), call).await?;
    Ok((StatusCode::OK, [(CONTENT_TYPE, "text/xml")], TWIML_EMPTY).into_response())
}

/// The form fields of a Twilio callback (names as Twilio sends them).
#[derive(utoipa::ToSchema)]
#[schema(as = TwilioCallback)]
#[allow(dead_code)] // a schema of the form the intake reads
struct TwilioForm {
    #[schema(rename = "MessageSid")]
    message_sid: Option<String>,
    #[schema(rename = "MessageStatus")]
    message_status: Option<String>,
    #[schema(rename = "ErrorCode")]
    error_code: Option<String>,
    #[schema(rename = "From")]
    from: Option<String>,
    #[schema(rename = "To")]
    to: Option<String>,
    #[schema(rename = "Body")]
    body: Option<String>,
    #[schema(rename = "NumMedia")]
    num_media: Option<String>,
}

/// What a SendGrid post did: an inbound email stored, or a post of events applied.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // the schema of both answers
enum SendgridAnswer {
    Received(Received),
    Events(webhook_intake::EventSummary),
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = InboundEmailReceived)]
struct Received {
    status: &'static str,
    message_id: Uuid,
}

/// The Event Webhook (JSON) or Inbound Parse (multipart), told apart by content type.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/sendgrid",
    operation_id = "sendgrid_webhook",
    tag = "provider webhooks",
    summary = "SendGrid Event Webhook (JSON) and Inbound Parse (multipart)",
    description = "`application/json`: an array of Event Webhook events (`sg_message_id`, `event`, \
                   `timestamp`…), signed (sendgrid_signature). `multipart/form-data`: an Inbound Parse \
                   post of one email (up to 32 MB), protected by WEBHOOK_SECRET (basic auth or `?token=`).",
    request_body(content(
        (Vec<Object> = "application/json"),
        (Object = "multipart/form-data"),
    )),
    security(("sendgrid_signature" = []), ("inbound_parse_basic" = []), ("inbound_parse_token" = [])),
    responses(
        (status = 200, description = "Events applied (counts), or the inbound email stored", body = SendgridAnswer),
        (status = 403, description = "`invalid_signature` or `invalid_secret`", body = super::openapi::ErrorBody),
    ),
)]
async fn sendgrid_webhook(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<Vec<(String, String)>>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let ctx = state.services();
    match content_type(&headers).as_str() {
        "multipart/form-data" => {
            let auth = InboundParseAuth {
                query: &query,
                authorization: header(&headers, AUTHORIZATION.as_str()),
            };
            let message_id = inbound_email::receive(ctx, auth, read_form(request)).await?;
            let status = "received";
            Ok(Json(Received { status, message_id }).into_response())
        }
        "application/json" => {
            Ok(Json(sendgrid_events(ctx, &headers, request).await?).into_response())
        }
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

async fn sendgrid_events(
    ctx: Context<'_>,
    headers: &HeaderMap,
    request: Request,
) -> Result<webhook_intake::EventSummary, ApiError> {
    let body = axum::body::to_bytes(request.into_body(), INBOUND_PARSE_MAX_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let call = SendgridEventsCall {
        signature: header(headers, "x-twilio-email-event-webhook-signature"),
        timestamp: header(headers, "x-twilio-email-event-webhook-timestamp"),
        body: &body,
    };
    Ok(webhook_intake::sendgrid_events(ctx, call).await?)
}

/// The parts of an Inbound Parse post: files are the parts named `attachment…` that carry
/// a file name; every other part is a text field.
async fn read_form(request: Request) -> Result<InboundEmailForm, ServiceError> {
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| {
        ServiceError::invalid(
            "body",
            format!("not a valid multipart body: {}", e.body_text()),
        )
    })?;
    let mut form = InboundEmailForm::default();
    while let Some(field) = multipart.next_field().await.map_err(|e| {
        ServiceError::invalid("body", format!("broken multipart body: {}", e.body_text()))
    })? {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let data = field.bytes().await.map_err(|e| {
            let reason = format!("unreadable part: {}", e.body_text());
            ServiceError::Invalid(ValidationError::new(name.clone(), reason))
        })?;
        match filename {
            Some(filename) if name.starts_with("attachment") => form.files.push(InboundFile {
                filename,
                content_type,
                data: data.into(),
            }),
            _ => {
                form.fields
                    .insert(name, String::from_utf8_lossy(&data).into_owned());
            }
        }
    }
    Ok(form)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    /// `twilio` or `sendgrid`.
    #[param(pattern = "^(twilio|sendgrid)$")]
    provider: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WebhookDeliveries)]
struct Deliveries {
    deliveries: Vec<WebhookDelivery>,
    total: i64,
    limit: i64,
    offset: i64,
}

#[utoipa::path(
    get,
    path = "/api/v1/webhook-deliveries",
    operation_id = "list_webhook_deliveries",
    tag = "provider webhooks",
    summary = "The log of provider callbacks, newest first",
    params(DeliveriesQuery, super::openapi::PageParams),
    responses((status = 200, body = Deliveries)),
)]
async fn deliveries(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
    Pagination(page): Pagination,
) -> Result<Json<Deliveries>, ApiError> {
    let provider = match q.provider.as_deref() {
        None => None,
        Some(p @ ("twilio" | "sendgrid")) => Some(p),
        Some(_) => return Err(ApiError::invalid("provider", "must be twilio or sendgrid")),
    };
    let (deliveries, total) = webhook_intake::deliveries(state.services(), provider, page).await?;
    Ok(Json(Deliveries {
        deliveries,
        total,
        limit: page.limit,
        offset: page.offset,
    }))
}
