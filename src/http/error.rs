//! The one error type of the HTTP layer. Every failure renders as
//! `{"error": code, "message": text, "details": {...}}` with a stable snake_case code;
//! unexpected errors become an opaque 500 whose cause is logged once, here.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::ValidationError;
use crate::ingest::IngestError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("the request body is too large")]
    PayloadTooLarge,
    #[error("invalid {}: {}", .0.field, .0.reason)]
    Validation(#[from] ValidationError),
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{resource} not found")]
    NotFound { resource: &'static str },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{dependency} is unavailable")]
    Unavailable {
        dependency: &'static str,
        details: Value,
    },
    #[error("an API key is required: send Authorization: Bearer <key>")]
    MissingApiKey,
    #[error("the API key is not valid")]
    InvalidApiKey,
    #[error("the API key has been revoked")]
    RevokedApiKey,
    #[error("the Host header names a host this service does not answer for")]
    HostNotAllowed,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Validation(ValidationError::new(field, reason))
    }

    fn parts(&self) -> (StatusCode, &'static str, Value) {
        match self {
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json", json!({})),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                json!({}),
            ),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                json!({}),
            ),
            Self::Validation(v) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_error",
                json!({ "field": v.field, "reason": v.reason }),
            ),
            Self::Forbidden { code, .. } => (StatusCode::FORBIDDEN, code, json!({})),
            Self::NotFound { resource } => (
                StatusCode::NOT_FOUND,
                "not_found",
                json!({ "resource": resource }),
            ),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, code, json!({})),
            Self::Unavailable {
                dependency,
                details,
            } => {
                let mut d = details.clone();
                if let Value::Object(map) = &mut d {
                    map.insert("dependency".into(), Value::from(*dependency));
                }
                (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", d)
            }
            Self::MissingApiKey => (StatusCode::UNAUTHORIZED, "missing_api_key", json!({})),
            Self::InvalidApiKey => (StatusCode::UNAUTHORIZED, "invalid_api_key", json!({})),
            Self::RevokedApiKey => (StatusCode::FORBIDDEN, "api_key_revoked", json!({})),
            Self::HostNotAllowed => (StatusCode::BAD_REQUEST, "invalid_host", json!({})),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                json!({}),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, details) = self.parts();
        let message = match &self {
            Self::Internal(cause) => {
                tracing::error!(error = %format!("{cause:#}"), "request failed with an internal error");
                "An unexpected error occurred".to_owned()
            }
            Self::Unavailable { .. } => {
                tracing::warn!(error = %self, "request refused: dependency unavailable");
                self.to_string()
            }
            other => other.to_string(),
        };
        (
            status,
            Json(json!({ "error": code, "message": message, "details": details })),
        )
            .into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %format!("{cause:#}"), "database unavailable");
                Self::Unavailable {
                    dependency: "database",
                    details: json!({}),
                }
            }
            StoreError::Other(cause) => Self::Internal(cause),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Unavailable => Self::Unavailable {
                dependency: "database",
                details: json!({}),
            },
            IngestError::ShuttingDown => Self::Unavailable {
                dependency: "api",
                details: json!({ "reason": "shutting down" }),
            },
            IngestError::Failed => Self::Internal(anyhow::anyhow!(
                "storing the message failed (cause logged by the writer)"
            )),
        }
    }
}
