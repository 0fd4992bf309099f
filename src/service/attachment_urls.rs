//! Accept-time check of outbound attachment URLs: with `ATTACHMENT_ALLOW_PRIVATE_URLS=false`
//! (the production default) a URL whose host is a literal loopback, private, link-local,
//! multicast or metadata address (or a `localhost` name) is a 422 naming `attachments`. Names
//! are not resolved here; the worker's attachment client refuses them after DNS and on every
//! redirect (`provider::attachments::client`).

use super::ServiceError;
use crate::config::Settings;
use crate::net::UrlGuard;

/// The guard every attachment URL goes through, at accept time and at download time.
pub fn guard(settings: &Settings) -> UrlGuard {
    UrlGuard::new(settings.attachments.allow_private_urls)
}

pub fn check(settings: &Settings, urls: &[String]) -> Result<(), ServiceError> {
    let guard = guard(settings);
    for (i, url) in urls.iter().enumerate() {
        guard.check(url).map_err(|e| {
            ServiceError::invalid("attachments", format!("attachment {} {e}", i + 1))
        })?;
    }
    Ok(())
}
