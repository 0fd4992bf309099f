//! Webhook endpoints: create (with a fresh `whsec_` secret, shown once), list, read, edit,
//! delete, rotate the secret (the previous one keeps signing for 24 h), list attempts and
//! send a `test.ping`. URLs pass the SSRF guard at create and edit time; delivery checks
//! them again after DNS.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::{Context, ServiceError};
use crate::domain::event::{EventType, new_secret};
use crate::net::UrlGuard;
use crate::store::Page;
use crate::store::outbox::{AttemptRecord, Endpoint, EndpointPatch, NewEndpoint};

/// How long a rotated-out secret keeps signing alongside the new one.
pub const ROTATION_OVERLAP: time::Duration = time::Duration::hours(24);
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// A URL to receive events at.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewWebhookEndpoint)]
pub struct CreateEndpoint {
    /// A public http(s) URL (private, loopback and metadata addresses are refused unless
    /// EVENTS_ALLOW_PRIVATE_URLS).
    #[schema(value_type = String, pattern = "^https?://", example = "https://example.com/hooks/messaging")]
    pub url: Option<String>,
    /// The event types to receive; every type when absent.
    #[schema(value_type = Option<Vec<crate::domain::event::EventType>>, min_items = 1)]
    pub events: Option<Vec<String>>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// PATCH body: an absent field is unchanged; `null` clears `events` (every type) or
/// `description`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookEndpointChanges)]
pub struct UpdateEndpoint {
    /// A public http(s) URL.
    #[schema(value_type = Option<String>, pattern = "^https?://", nullable = false)]
    pub url: Option<String>,
    /// The event types to receive; `null` for every type.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<crate::domain::event::EventType>>, min_items = 1)]
    pub events: Option<Option<Vec<String>>>,
    /// `false` stops deliveries; `true` resumes them.
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Option<Option<String>>,
}

/// A field that is present, even as `null`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The endpoint with its secret: only in the answer to create.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WebhookEndpointWithSecret)]
pub struct WithSecret {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// The signing secret (`whsec_` + base64), shown only here: keep it.
    #[schema(pattern = "^whsec_[A-Za-z0-9+/=]+$")]
    pub secret: String,
}

/// A new secret; the previous one keeps signing (a second signature) until it expires.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = RotatedSecret)]
pub struct Rotated {
    /// The new signing secret, shown only here.
    #[schema(pattern = "^whsec_[A-Za-z0-9+/=]+$")]
    pub secret: String,
    #[serde(with = "time::serde::rfc3339")]
    pub previous_secret_expires_at: OffsetDateTime,
}

fn guard(ctx: Context<'_>) -> UrlGuard {
    UrlGuard::new(ctx.settings.events.allow_private_urls)
}

/// A URL the application may receive events at, or the 422 naming `field`.
pub fn check_url(ctx: Context<'_>, field: &'static str, raw: &str) -> Result<String, ServiceError> {
    guard(ctx)
        .check(raw)
        .map(|_| raw.trim().to_owned())
        .map_err(|e| ServiceError::invalid(field, e.to_string()))
}

fn check_events(events: Option<Vec<String>>) -> Result<Option<Vec<String>>, ServiceError> {
    let Some(events) = events else {
        return Ok(None);
    };
    if events.is_empty() {
        return Err(ServiceError::invalid(
            "events",
            "must list at least one event type (omit it for every type)",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let Some(t) = EventType::parse_subscribable(e.trim()) else {
            let known: Vec<&str> = EventType::SUBSCRIBABLE.iter().map(|t| t.as_str()).collect();
            return Err(ServiceError::invalid(
                "events",
                format!("unknown event type {e:?}; one of {}", known.join(", ")),
            ));
        };
        if !out.iter().any(|o| o == t.as_str()) {
            out.push(t.as_str().to_owned());
        }
    }
    Ok(Some(out))
}

fn check_description(d: Option<String>) -> Result<Option<String>, ServiceError> {
    match d {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_CHARS => Err(ServiceError::invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        )),
        other => Ok(other),
    }
}

pub async fn create(ctx: Context<'_>, req: CreateEndpoint) -> Result<WithSecret, ServiceError> {
    let url = req
        .url
        .as_deref()
        .ok_or_else(|| ServiceError::invalid("url", "is required"))?;
    let endpoint = NewEndpoint {
        id: Uuid::now_v7(),
        url: check_url(ctx, "url", url)?,
        events: check_events(req.events)?,
        description: check_description(req.description)?,
        secret: new_secret(),
    };
    let created = ctx.store.create_endpoint(&endpoint).await?;
    Ok(WithSecret {
        endpoint: created,
        secret: endpoint.secret,
    })
}

pub async fn list(ctx: Context<'_>) -> Result<Vec<Endpoint>, ServiceError> {
    Ok(ctx.store.list_endpoints().await?)
}

fn not_found() -> ServiceError {
    ServiceError::NotFound {
        resource: "webhook endpoint",
    }
}

pub async fn get(ctx: Context<'_>, id: Uuid) -> Result<Endpoint, ServiceError> {
    ctx.store.get_endpoint(id).await?.ok_or_else(not_found)
}

pub async fn update(
    ctx: Context<'_>,
    id: Uuid,
    req: UpdateEndpoint,
) -> Result<Endpoint, ServiceError> {
    let patch = EndpointPatch {
        url: req
            .url
            .as_deref()
            .map(|u| check_url(ctx, "url", u))
            .transpose()?,
        events: req.events.map(check_events).transpose()?,
        enabled: req.enabled,
        description: req.description.map(check_description).transpose()?,
    };
    ctx.store
        .update_endpoint(id, &patch)
        .await?
        .ok_or_else(not_found)
}

pub async fn delete(ctx: Context<'_>, id: Uuid) -> Result<(), ServiceError> {
    if ctx.store.delete_endpoint(id).await? {
        Ok(())
    } else {
        Err(not_found())
    }
}

pub async fn rotate_secret(ctx: Context<'_>, id: Uuid) -> Result<Rotated, ServiceError> {
    let secret = new_secret();
    let until = OffsetDateTime::now_utc() + ROTATION_OVERLAP;
    if !ctx.store.rotate_secret(id, &secret, until).await? {
        return Err(not_found());
    }
    Ok(Rotated {
        secret,
        previous_secret_expires_at: until,
    })
}

pub async fn attempts(
    ctx: Context<'_>,
    id: Uuid,
    page: Page,
) -> Result<(Vec<AttemptRecord>, i64), ServiceError> {
    get(ctx, id).await?;
    Ok(ctx.store.endpoint_attempts(id, page).await?)
}

/// Queues a `test.ping` for this endpoint; returns its event id.
pub async fn test(ctx: Context<'_>, id: Uuid) -> Result<String, ServiceError> {
    let endpoint = get(ctx, id).await?;
    let now = OffsetDateTime::now_utc();
    let payload = json!({
        "type": EventType::TestPing.as_str(),
        "timestamp": now.format(&Rfc3339).map_err(|e| ServiceError::Internal(e.into()))?,
        "data": { "endpoint_id": endpoint.id },
    });
    Ok(ctx.store.add_test_event(endpoint.id, &payload).await?)
}

/// A send's `status_callback`: an http(s) URL the guard allows, or the 422 naming it.
pub fn status_callback(
    ctx: Context<'_>,
    raw: Option<String>,
) -> Result<Option<String>, ServiceError> {
    raw.map(|u| check_url(ctx, "status_callback", &u))
        .transpose()
}
