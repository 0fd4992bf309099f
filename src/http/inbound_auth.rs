//! The original JSON inbound routes (`POST /api/webhooks/sms`, `POST /api/webhooks/email`)
//! carry no provider signature: no real provider posts that format, the original's clients
//! and test tools do. In production they are therefore authenticated like every other `/api`
//! route — a valid API key — or with `WEBHOOK_SECRET` as the bearer token or the basic-auth
//! password; anything else is 401. Development and test keep them open.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use secrecy::ExposeSecret;

use crate::config::{Environment, Settings};

/// The original's inbound routes.
pub const LEGACY_INBOUND: [&str; 2] = ["/api/webhooks/sms", "/api/webhooks/email"];

/// Whether this request must be authenticated as a legacy inbound call.
pub fn guarded(settings: &Settings, path: &str) -> bool {
    settings.environment == Environment::Production
        && LEGACY_INBOUND.contains(&path.trim_end_matches('/'))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The request presents `WEBHOOK_SECRET` as `Bearer SECRET` or as the password of
/// `Basic user:SECRET`.
pub fn has_webhook_secret(settings: &Settings, headers: &HeaderMap) -> bool {
    let Some(secret) = &settings.webhooks.secret else {
        return false;
    };
    let secret = secret.expose_secret().as_bytes();
    if secret.is_empty() {
        return false;
    }
    let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    let token = token.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return constant_time_eq(token.as_bytes(), secret);
    }
    scheme.eq_ignore_ascii_case("basic")
        && base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .is_some_and(|pair| {
                pair.split_once(':')
                    .is_some_and(|(_, pass)| constant_time_eq(pass.as_bytes(), secret))
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;
    use axum::http::HeaderValue;

    fn settings(environment: &str, secret: Option<&str>) -> Settings {
        let mut pairs = vec![
            ("ENVIRONMENT", environment),
            ("SECRET_KEY", "a-test-secret-that-is-not-the-default"),
            ("ALLOWED_HOSTS", "127.0.0.1"),
            ("ALLOW_MOCK_PROVIDERS", "true"),
            (
                "STATUS_CALLBACK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8G",
            ),
        ];
        if let Some(s) = secret {
            pairs.push(("WEBHOOK_SECRET", s));
        }
        Settings::from_env(&Env::from_pairs(pairs)).expect("valid settings")
    }

    fn auth(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn only_the_legacy_inbound_routes_in_production_are_guarded() {
        let prod = settings("production", None);
        assert!(guarded(&prod, "/api/webhooks/sms"));
        assert!(guarded(&prod, "/api/webhooks/email/"));
        assert!(!guarded(&prod, "/api/v1/webhooks/twilio"));
        assert!(!guarded(
            &settings("development", None),
            "/api/webhooks/sms"
        ));
    }

    #[test]
    fn the_webhook_secret_is_accepted_as_bearer_or_basic_password() {
        let s = settings("production", Some("s3cret"));
        assert!(has_webhook_secret(&s, &auth("Bearer s3cret")));
        // base64("any:s3cret")
        assert!(has_webhook_secret(&s, &auth("Basic YW55OnMzY3JldA==")));
        assert!(!has_webhook_secret(&s, &auth("Bearer wrong")));
        assert!(!has_webhook_secret(&s, &HeaderMap::new()));
        let unset = settings("production", None);
        assert!(!has_webhook_secret(&unset, &auth("Bearer s3cret")));
    }
}
