//! Attachment fetching for email: a message carries attachment URLs; email providers need
//! the bytes. Fetched by the worker at send time, within a total size limit, by a client
//! built from the one URL guard ([`crate::net::UrlGuard`]): unless
//! `ATTACHMENT_ALLOW_PRIVATE_URLS`, names that resolve to a loopback, private, link-local or
//! multicast address and redirects to such addresses are refused, and the message fails.

use std::time::Duration;

use reqwest::StatusCode;

use crate::net::{UrlGuard, UrlRefused};

use super::ProviderError;
use super::http::transport_error;

/// One fetched attachment.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

fn filename(url: &str, index: usize) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.path_segments()
                .and_then(|mut s| s.next_back().map(str::to_owned))
        })
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("attachment-{}", index + 1))
}

/// The client attachments are downloaded with: the guard's (DNS and redirects checked), with
/// the providers' timeouts.
pub fn client(guard: UrlGuard, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(guard
        .client_builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("messaging-service/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// The guard's refusal, if that is why the request failed (after DNS or on a redirect).
fn refused(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(r) = err.downcast_ref::<UrlRefused>() {
            return Some(r.to_string());
        }
        source = err.source();
    }
    None
}

/// Downloads every URL, in order. A missing file (4xx) fails the message; a server error or
/// a network failure is transient; more than `max_total` bytes in all fails the message.
pub async fn fetch_all(
    client: &reqwest::Client,
    urls: &[String],
    max_total: usize,
) -> Result<Vec<Attachment>, ProviderError> {
    let mut out = Vec::with_capacity(urls.len());
    let mut total = 0usize;
    for (i, url) in urls.iter().enumerate() {
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| match refused(&e) {
                Some(why) => ProviderError::Permanent {
                    code: "attachment_refused".into(),
                    message: format!("attachment {} refused: {why}", i + 1),
                },
                None => transport_error(&e),
            })?;
        let status = resp.status();
        if !status.is_success() {
            let message = format!("attachment {} could not be fetched: HTTP {status}", i + 1);
            return Err(
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    ProviderError::Transient {
                        code: "attachment_unavailable".into(),
                        message,
                        retry_after: None,
                    }
                } else {
                    ProviderError::Permanent {
                        code: "attachment_not_found".into(),
                        message,
                    }
                },
            );
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(&e))? {
            total += chunk.len();
            if total > max_total {
                return Err(ProviderError::Permanent {
                    code: "attachments_too_large".into(),
                    message: format!(
                        "attachments exceed {max_total} bytes in total (ATTACHMENT_MAX_BYTES)"
                    ),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        out.push(Attachment {
            filename: filename(url, i),
            content_type,
            bytes,
        });
    }
    Ok(out)
}

/// True when an email body looks like HTML rather than plain text.
pub fn looks_like_html(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    [
        "<html", "<body", "<p>", "<p ", "<br", "<div", "<table", "<a href", "<strong>", "<em>",
        "<h1", "<h2", "<ul", "<ol", "<span", "<img",
    ]
    .iter()
    .any(|tag| lower.contains(tag))
}

/// A readable plain-text rendering of an HTML body, for the text/plain alternative.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    for c in html.chars() {
        match (in_tag, c) {
            (false, '<') => {
                in_tag = true;
                tag.clear();
            }
            (true, '>') => {
                in_tag = false;
                let name = tag
                    .trim_start_matches('/')
                    .split(|c: char| c.is_whitespace() || c == '/')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if matches!(
                    name.as_str(),
                    "br" | "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3"
                ) && !out.ends_with('\n')
                {
                    out.push('\n');
                }
            }
            (true, c) => tag.push(c),
            (false, c) => out.push(c),
        }
    }
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .trim()
        .to_owned()
}

/// The text and (if any) HTML versions of an email: HTML given in `metadata.html`, or
/// detected in the body.
pub fn email_parts(body: Option<&str>, metadata: &serde_json::Value) -> (String, Option<String>) {
    let body = body.unwrap_or_default();
    if let Some(html) = metadata.get("html").and_then(|v| v.as_str()) {
        let text = if body.is_empty() {
            html_to_text(html)
        } else {
            body.to_owned()
        };
        return (text, Some(html.to_owned()));
    }
    if looks_like_html(body) {
        (html_to_text(body), Some(body.to_owned()))
    } else {
        (body.to_owned(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_detected_and_rendered_as_text() {
        let (text, html) = email_parts(
            Some("<p>Hello <strong>Ann</strong></p><p>Bye &amp; thanks</p>"),
            &serde_json::Value::Null,
        );
        assert_eq!(text, "Hello Ann\nBye & thanks");
        assert!(html.unwrap().starts_with("<p>"));
    }

    #[test]
    fn plain_text_stays_plain_and_given_html_wins() {
        let (text, html) = email_parts(Some("2 < 3 and 5 > 4"), &serde_json::Value::Null);
        assert_eq!(text, "2 < 3 and 5 > 4");
        assert!(html.is_none());
        let (text, html) = email_parts(Some("plain"), &serde_json::json!({"html": "<b>rich</b>"}));
        assert_eq!(
            (text.as_str(), html.as_deref()),
            ("plain", Some("<b>rich</b>"))
        );
    }

    #[test]
    fn filenames_come_from_the_url_path() {
        assert_eq!(
            filename("https://x.test/files/report.pdf?sig=1", 0),
            "report.pdf"
        );
        assert_eq!(filename("https://x.test/", 2), "attachment-3");
    }
}
