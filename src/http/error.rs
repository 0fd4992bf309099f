//! The one error type of the HTTP layer. Every failure renders as
//! `{"error": code, "message": text, "details": {...}}` with a stable code from
//! [`ErrorCode`], the list of every code a client can see; unexpected errors become an
//! opaque 500 whose cause is logged once, here. Use-cases fail with a
//! [`ServiceError`], which becomes an `ApiError` through `From`, so a dependency outage is a
//! 503 on every route.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::ValidationError;
use crate::service::{Rejection, ServiceError};
use crate::store::StoreError;

/// Declares [`ErrorCode`] from one table: variant, HTTP status, wire spelling.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $status:ident, $text:literal;)+) => {
        /// Every error code a client can see, with the status it comes with. Listed once.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)+
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code as the `error` field spells it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)+
                }
            }

            pub const fn status(self) -> StatusCode {
                match self {
                    $(ErrorCode::$variant => StatusCode::$status,)+
                }
            }

            /// The code spelled `text`, if it is one.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|c| c.as_str() == text)
            }
        }
    };
}

error_codes! {
    /// The body is not JSON (or nests too deep).
    MalformedJson => BAD_REQUEST, "malformed_json";
    /// The `Host` header names a host this service does not answer for.
    InvalidHost => BAD_REQUEST, "invalid_host";
    MissingApiKey => UNAUTHORIZED, "missing_api_key";
    InvalidApiKey => UNAUTHORIZED, "invalid_api_key";
    ApiKeyRevoked => FORBIDDEN, "api_key_revoked";
    /// A provider webhook whose signature is missing or wrong.
    InvalidSignature => FORBIDDEN, "invalid_signature";
    /// An Inbound Parse post without the right `WEBHOOK_SECRET`.
    InvalidSecret => FORBIDDEN, "invalid_secret";
    /// The console in production without required API keys.
    ConsoleDisabled => FORBIDDEN, "console_disabled";
    NotFound => NOT_FOUND, "not_found";
    MethodNotAllowed => METHOD_NOT_ALLOWED, "method_not_allowed";
    /// An `Idempotency-Key` reused for a different request.
    IdempotencyConflict => CONFLICT, "idempotency_conflict";
    /// A retry of a message that is not failed.
    NotFailed => CONFLICT, "not_failed";
    /// A cancel of a message that is no longer scheduled.
    NotCancelable => CONFLICT, "not_cancelable";
    /// A status correction the message lifecycle does not allow.
    InvalidTransition => CONFLICT, "invalid_transition";
    PayloadTooLarge => PAYLOAD_TOO_LARGE, "payload_too_large";
    UnsupportedMediaType => UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type";
    /// Well-formed JSON of the wrong shape, or a value a rule refuses; names the field.
    ValidationError => UNPROCESSABLE_ENTITY, "validation_error";
    /// A send to an address on the suppression list (opted out, bounced, ...).
    RecipientSuppressed => UNPROCESSABLE_ENTITY, "recipient_suppressed";
    /// The rate limiter's refusal, spelled as the operations guide shows it.
    RateLimited => TOO_MANY_REQUESTS, "Rate limit exceeded";
    InternalError => INTERNAL_SERVER_ERROR, "internal_error";
    /// A dependency (the database, the queue) is down, or the service is stopping.
    ServiceUnavailable => SERVICE_UNAVAILABLE, "service_unavailable";
}

/// The rate limiter's message, as the operations guide shows it.
pub const RATE_LIMITED_MESSAGE: &str = "Too many requests. Please try again later.";

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
    /// `code` is one of the [`ErrorCode`] spellings answered with 403.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{resource} not found")]
    NotFound { resource: &'static str },
    /// A well-formed request a rule refuses with its own code and details.
    #[error("{message}")]
    Refused {
        code: ErrorCode,
        message: String,
        details: Value,
    },
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    #[error("this method is not allowed on this route")]
    MethodNotAllowed,
    #[error("{}", RATE_LIMITED_MESSAGE)]
    RateLimited,
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

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::MalformedJson(_) => ErrorCode::MalformedJson,
            Self::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Self::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            Self::Validation(_) => ErrorCode::ValidationError,
            Self::Forbidden { code, .. } => {
                let known = ErrorCode::parse(code).filter(|c| c.status() == StatusCode::FORBIDDEN);
                debug_assert!(known.is_some(), "{code} is not a listed 403 code");
                known.unwrap_or(ErrorCode::InvalidSignature)
            }
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::Conflict { code, .. } | Self::Refused { code, .. } => *code,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::RateLimited => ErrorCode::RateLimited,
            Self::Unavailable { .. } => ErrorCode::ServiceUnavailable,
            Self::MissingApiKey => ErrorCode::MissingApiKey,
            Self::InvalidApiKey => ErrorCode::InvalidApiKey,
            Self::RevokedApiKey => ErrorCode::ApiKeyRevoked,
            Self::HostNotAllowed => ErrorCode::InvalidHost,
            Self::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// The `details` object; `None` for the rate limiter, whose body is the guide's.
    fn details(&self) -> Option<Value> {
        Some(match self {
            Self::Validation(v) => json!({ "field": v.field, "reason": v.reason }),
            Self::NotFound { resource } => json!({ "resource": resource }),
            Self::Refused { details, .. } => details.clone(),
            Self::Unavailable {
                dependency,
                details,
            } => {
                let mut d = details.clone();
                if let Value::Object(map) = &mut d {
                    map.insert("dependency".into(), Value::from(*dependency));
                }
                d
            }
            Self::RateLimited => return None,
            _ => json!({}),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
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
        let body = match self.details() {
            Some(details) => {
                json!({ "error": code.as_str(), "message": message, "details": details })
            }
            None => json!({ "error": code.as_str(), "message": message }),
        };
        (code.status(), Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(v) => Self::Validation(v),
            ServiceError::MalformedJson(text) => Self::MalformedJson(text),
            ServiceError::UnsupportedMediaType => Self::UnsupportedMediaType,
            ServiceError::NotFound { resource } => Self::NotFound { resource },
            ServiceError::IdempotencyConflict { .. } => Self::Conflict {
                code: ErrorCode::IdempotencyConflict,
                message: e.to_string(),
            },
            ServiceError::Suppressed(s) => Self::Refused {
                code: ErrorCode::RecipientSuppressed,
                message: "the recipient is on the suppression list".into(),
                details: json!({ "field": "to", "reason": s.reason, "since": s.since.format(&time::format_description::well_known::Rfc3339).ok() }),
            },
            ServiceError::NotFailed { .. } => Self::Conflict {
                code: ErrorCode::NotFailed,
                message: e.to_string(),
            },
            ServiceError::NotCancelable { .. } => Self::Conflict {
                code: ErrorCode::NotCancelable,
                message: e.to_string(),
            },
            ServiceError::InvalidTransition(_) => Self::Conflict {
                code: ErrorCode::InvalidTransition,
                message: e.to_string(),
            },
            ServiceError::Rejected { rejection, .. } => Self::Forbidden {
                code: match rejection {
                    Rejection::Signature => ErrorCode::InvalidSignature.as_str(),
                    Rejection::Secret => ErrorCode::InvalidSecret.as_str(),
                },
                message: e.to_string(),
            },
            ServiceError::Unavailable { dependency, reason } => Self::Unavailable {
                dependency,
                details: match reason {
                    Some(reason) => json!({ "reason": reason }),
                    None => json!({}),
                },
            },
            ServiceError::Internal(cause) => Self::Internal(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_snake_case_or_the_guides_spelling_and_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code:?} listed twice");
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
            let snake = code
                .as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_');
            assert!(snake || *code == ErrorCode::RateLimited, "{code:?}");
        }
        assert!(ErrorCode::parse("console_disabled").is_some());
    }

    #[test]
    fn service_errors_keep_their_meaning_over_http() {
        let cases = [
            (
                ServiceError::database_unavailable(),
                ErrorCode::ServiceUnavailable,
            ),
            (ServiceError::shutting_down(), ErrorCode::ServiceUnavailable),
            (
                ServiceError::from(StoreError::Unavailable(anyhow::anyhow!("down"))),
                ErrorCode::ServiceUnavailable,
            ),
            (
                ServiceError::NotFailed {
                    status: crate::domain::MessageStatus::Sent,
                },
                ErrorCode::NotFailed,
            ),
            (
                ServiceError::IdempotencyConflict {
                    existing: uuid::Uuid::nil(),
                },
                ErrorCode::IdempotencyConflict,
            ),
            (
                ServiceError::Rejected {
                    rejection: Rejection::Secret,
                    reason: "wrong",
                },
                ErrorCode::InvalidSecret,
            ),
            (
                ServiceError::Rejected {
                    rejection: Rejection::Signature,
                    reason: "wrong",
                },
                ErrorCode::InvalidSignature,
            ),
            (
                ServiceError::invalid("to", "bad"),
                ErrorCode::ValidationError,
            ),
            (
                ServiceError::Internal(anyhow::anyhow!("bug")),
                ErrorCode::InternalError,
            ),
        ];
        for (service, code) in cases {
            let text = service.to_string();
            assert_eq!(ApiError::from(service).code(), code, "{text}");
        }
    }

    #[test]
    fn the_rate_limit_body_is_the_guides() {
        let e = ApiError::RateLimited;
        assert_eq!(e.code().status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.details(), None);
        assert_eq!(e.to_string(), RATE_LIMITED_MESSAGE);
    }
}
