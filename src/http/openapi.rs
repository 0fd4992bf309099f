//! The API contract: the OpenAPI 3.1 document at `GET /openapi.json`, generated from the
//! handlers' `#[utoipa::path]` annotations (kept next to each handler) and the schemas
//! derived from the real types, and the docs page at `GET /docs` (Swagger UI, its assets
//! compiled into the binary). Both are public and off when `API_DOCS_ENABLED=false`.
//!
//! Documenting a new route: annotate its handler with `#[utoipa::path(...)]` (method, path,
//! tag, parameters, body, the responses particular to it) and add the handler to `paths(...)`
//! below. What every route shares is added here, by [`Conventions`]: the error responses any
//! request may get (400, 408, 429, 500, 503; 401/403 on `/api`; 413/415/422 where a body or
//! parameters are read), the `X-Request-ID` and `X-RateLimit-*` headers on every answer,
//! `Retry-After` on a 429, and the API-key security of `/api` routes. A unit test fails when
//! a route is served but not documented.

use std::borrow::Cow;

use axum::Json;
use axum::routing::get;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Schema};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use super::AppState;
use super::error::ErrorCode;
use events::{EventWebhooks, MessageEventBody, TestPingBody};

/// Where the document is served; the docs page reads it from there.
pub const DOCUMENT_PATH: &str = "/openapi.json";
/// The docs page (and its assets under `/docs/`).
pub const DOCS_PATH: &str = "/docs";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Messaging service",
        description = "One HTTP API for SMS, MMS and email: send, track, converse. \
                       Errors share one body: `{\"error\": code, \"message\": text, \"details\": {...}}`; \
                       `details.field` names the offending field of a 422.",
        license(name = "MIT", identifier = "MIT"),
    ),
    paths(
        super::messages::send,
        super::messages::list,
        super::messages::get_one,
        super::messages::events,
        super::retry::retry,
        super::schedule::cancel,
        super::suppressions::list,
        super::suppressions::add,
        super::suppressions::remove,
        super::status::correct,
        super::conversations::create,
        super::conversations::list,
        super::conversations::search,
        super::conversations::get_one,
        super::conversations::update,
        super::conversations::remove,
        super::conversations::messages,
        super::conversations::mark_read,
        super::conversations::statistics,
        super::webhooks::twilio_webhook,
        super::webhooks::sendgrid_webhook,
        super::webhooks::deliveries,
        super::endpoints::create,
        super::endpoints::list,
        super::endpoints::read,
        super::endpoints::update,
        super::endpoints::remove,
        super::endpoints::rotate_secret,
        super::endpoints::attempts,
        super::endpoints::test,
        super::legacy::send_sms,
        super::legacy::send_email,
        super::legacy::webhook_sms,
        super::legacy::webhook_email,
        super::legacy::conversations,
        super::legacy::messages,
        super::health::health,
        super::health::live,
        super::health::startup,
        super::health::ready,
        super::health::dependencies,
        crate::observability::metrics_text,
        document,
    ),
    components(schemas(ErrorBody, ErrorCode, MessageEventBody, TestPingBody)),
    modifiers(&Conventions, &EventWebhooks),
    tags(
        (name = "messages", description = "Sending messages and following them"),
        (name = "conversations", description = "Conversations: a pair of participants in one channel"),
        (name = "suppressions", description = "Addresses never sent to: opt-outs, bounces, complaints, manual entries"),
        (name = "webhook endpoints", description = "Where the application receives events (see `webhooks`), signed per Standard Webhooks"),
        (name = "events", description = "The events POSTed to webhook endpoints and status callbacks"),
        (name = "provider webhooks", description = "Callbacks from Twilio and SendGrid, verified by their signatures"),
        (name = "original API", description = "The original service's endpoints under /api, kept for its clients"),
        (name = "operations", description = "Health probes, metrics and this document"),
    ),
)]
pub struct ApiDoc;

/// The document, as served.
pub fn document_json() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// A participant's address as the API shows it: an E.164 phone number (sms, mms) or an email
/// address (email). Other spellings of a phone number (spaces, dashes) are normalised.
#[derive(ToSchema)]
#[schema(
    as = Address,
    pattern = r"^(\+[1-9][0-9]{7,14}|[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})$",
    example = "+15551234567"
)]
#[allow(dead_code)] // the schema of addresses in requests
pub struct AddressText(String);

/// `limit` and `offset` of a paged list (`super::extract::Pagination`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // the parameters `Pagination` reads
pub struct PageParams {
    /// Items per page (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Items to skip (default 0).
    #[param(minimum = 0)]
    offset: Option<i64>,
}

/// `limit`, `offset` and `cursor` of a list that also pages by cursor
/// (`super::extract::CursorPagination`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // the parameters `CursorPagination` reads
pub struct CursorPageParams {
    /// Items per page (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<i64>,
    /// Items to skip (default 0). Pages deep into a large list are faster by `cursor`.
    #[param(minimum = 0)]
    offset: Option<i64>,
    /// The `next_cursor` of the previous page: this page starts right after its last item,
    /// whatever was inserted since. Only with the same filters, and not with a non-zero
    /// `offset`.
    cursor: Option<String>,
}

/// The shared error body of every 4xx/5xx answer (a 429 has no `details`).
#[derive(ToSchema)]
#[schema(as = Error)]
#[allow(dead_code)] // a schema of the body `ApiError` renders
pub struct ErrorBody {
    error: ErrorCode,
    message: String,
    /// What the error is about: `field` and `reason` of a validation error, `resource` of a
    /// 404, `dependency` of a 503.
    #[schema(value_type = Option<Object>)]
    details: Option<serde_json::Value>,
}

impl PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "The error's stable code; each comes with one HTTP status.",
            ))
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl ToSchema for ErrorCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

/// `GET /openapi.json` and the docs page, or nothing when `API_DOCS_ENABLED=false`.
pub fn router(enabled: bool) -> axum::Router<AppState> {
    if !enabled {
        return axum::Router::new();
    }
    axum::Router::new()
        .route("/openapi.json", get(document))
        // No online validator badge: the page makes no request beyond this service.
        .merge(
            utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH).config(
                utoipa_swagger_ui::Config::from(DOCUMENT_PATH)
                    .try_it_out_enabled(true)
                    .validator_url("none"),
            ),
        )
}

/// The OpenAPI document of this service.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(document_json())
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
}

fn integer_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        ))
        .description(Some(description))
        .build()
}

/// What every operation shares: error answers, headers, security.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`messaging-service keys create`) as `Authorization: Bearer KEY`. \
                         Required on every /api route when REQUIRE_API_KEYS is true (always in production); \
                         a key that is sent is always checked (unknown: 401, revoked: 403).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "twilio_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Twilio-Signature",
                "Twilio's signature: base64 HMAC-SHA1, keyed with TWILIO_AUTH_TOKEN, of the full \
                 public URL (PUBLIC_BASE_URL + path and query) followed by the form's parameters \
                 sorted by name, each name immediately followed by its value.",
            ))),
        );
        components.add_security_scheme(
            "sendgrid_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Twilio-Email-Event-Webhook-Signature",
                "SendGrid Event Webhook: base64 ECDSA P-256 (SHA-256) signature, checked with \
                 SENDGRID_WEBHOOK_PUBLIC_KEY, of the X-Twilio-Email-Event-Webhook-Timestamp header \
                 followed by the raw body; timestamps outside the allowed clock skew are refused.",
            ))),
        );
        components.add_security_scheme(
            "inbound_parse_basic",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "SendGrid Inbound Parse: WEBHOOK_SECRET as the basic-auth password of the \
                         URL configured in SendGrid (https://user:SECRET@host/api/v1/webhooks/sendgrid).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "inbound_parse_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "SendGrid Inbound Parse: WEBHOOK_SECRET as `?token=SECRET`.",
            ))),
        );

        for (path, item) in openapi.paths.paths.iter_mut() {
            let client_api = super::auth::needs_key(path);
            let operations = [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.patch.as_mut(),
                item.delete.as_mut(),
            ];
            for op in operations.into_iter().flatten() {
                let has_body = op.request_body.is_some();
                let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let mut shared: Vec<(&str, &str)> = vec![
                    (
                        "400",
                        "The body is not JSON, or the Host header is not one this service answers for",
                    ),
                    (
                        "429",
                        "Rate limited (the body has no `details`); see Retry-After",
                    ),
                    (
                        "500",
                        "An unexpected error (its cause is logged, never shown)",
                    ),
                    (
                        "503",
                        "A dependency (database, queue) is down, or the service is stopping",
                    ),
                ];
                if client_api {
                    shared.push((
                        "401",
                        "No API key, or an unknown one, where keys are required",
                    ));
                    shared.push(("403", "The API key is revoked"));
                    op.security = Some(vec![
                        SecurityRequirement::new("api_key", Vec::<String>::new()),
                        SecurityRequirement::default(),
                    ]);
                }
                if has_body {
                    shared.push(("413", "The body is larger than allowed"));
                    shared.push(("415", "The body's Content-Type is not accepted here"));
                }
                if has_body || has_params {
                    shared.push(("422", "A value a rule refuses; `details.field` names it"));
                }
                for (status, description) in shared {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| RefOr::T(error_response(description)));
                }
                op.responses
                    .responses
                    .entry("408".to_owned())
                    .or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description("The request took longer than REQUEST_TIMEOUT")
                                .build(),
                        )
                    });
                for (status, response) in op.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if response.description.is_empty() {
                        response.description = match status.as_str() {
                            "200" => "OK",
                            "201" => "Created",
                            _ => "See the body",
                        }
                        .to_owned();
                    }
                    response.headers.insert(
                        "X-Request-ID".to_owned(),
                        RefOr::T(HeaderBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                            .description(Some(
                                "The request's id (the client's X-Request-ID, or a new UUID); in every log line of the request",
                            ))
                            .build()),
                    );
                    if !super::health::is_unlimited_probe(path) {
                        for (name, description) in [
                            ("X-RateLimit-Limit", "Requests allowed per window"),
                            ("X-RateLimit-Remaining", "Requests left in this window"),
                            ("X-RateLimit-Reset", "Seconds until the window resets"),
                        ] {
                            response
                                .headers
                                .insert(name.to_owned(), RefOr::T(integer_header(description)));
                        }
                    }
                    if status == "429" {
                        response.headers.insert(
                            "Retry-After".to_owned(),
                            RefOr::T(integer_header("Seconds to wait before trying again")),
                        );
                    }
                }
            }
        }
    }
}

mod events;

#[cfg(test)]
mod tests;
