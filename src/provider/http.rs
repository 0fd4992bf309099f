//! What the HTTP providers share: a client with timeouts, and the mapping of HTTP outcomes
//! to transient and permanent errors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::ProviderError;

/// A client whose every request (connection included) ends within `timeout`.
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    super::install_crypto_provider();
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("messaging-service/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// The wait a provider asked for: `Retry-After` (seconds or an HTTP date), else
/// `X-RateLimit-Reset` (unix seconds).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(raw) = text("retry-after") {
        if let Ok(secs) = raw.parse::<u64>() {
            return Some(Duration::from_secs(secs));
        }
        if let Ok(at) = httpdate::parse_http_date(raw) {
            return Some(at.duration_since(SystemTime::now()).unwrap_or_default());
        }
    }
    let reset: u64 = text("x-ratelimit-reset")?.parse().ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now)))
}

/// Classifies a non-success answer: 429, 408 and 5xx are worth retrying, other 4xx are not.
/// `code` and `message` are the provider's own when its error body had them.
pub fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    code: Option<String>,
    message: Option<String>,
) -> ProviderError {
    let code = code.unwrap_or_else(|| status.as_u16().to_string());
    let message = message.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("unexpected status")
            .to_owned()
    });
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
        || !status.is_client_error()
    {
        ProviderError::Transient {
            code,
            message,
            retry_after: retry_after(headers),
        }
    } else {
        ProviderError::Permanent { code, message }
    }
}

/// A request that got no answer: always worth retrying.
pub fn transport_error(e: &reqwest::Error) -> ProviderError {
    let (code, what) = if e.is_timeout() {
        ("timeout", "the provider did not answer in time")
    } else if e.is_connect() {
        ("connection_error", "could not connect to the provider")
    } else {
        ("request_error", "the request to the provider failed")
    };
    // The URL may carry an account id; keep the cause without it.
    let cause = e.without_url_ref();
    ProviderError::Transient {
        code: code.into(),
        message: format!("{what}: {cause}"),
        retry_after: None,
    }
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut s = self.to_string();
        if let Some(url) = self.url() {
            s = s.replace(url.as_str(), "<provider url>");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_dates_and_rate_limit_resets() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));

        let later = SystemTime::now() + Duration::from_secs(120);
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );

        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 30;
        let mut h = HeaderMap::new();
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&reset.to_string()).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d >= Duration::from_secs(29) && d <= Duration::from_secs(30),
            "{d:?}"
        );

        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn statuses_are_classified() {
        let h = HeaderMap::new();
        for s in [429, 500, 502, 503, 408] {
            let e = classify(StatusCode::from_u16(s).unwrap(), &h, None, None);
            assert!(matches!(e, ProviderError::Transient { .. }), "{s}");
        }
        for s in [400, 401, 403, 404, 406, 422] {
            let e = classify(StatusCode::from_u16(s).unwrap(), &h, None, None);
            assert!(matches!(e, ProviderError::Permanent { .. }), "{s}");
        }
    }
}
