//! Requests the service makes to URLs its clients name (email attachments, event webhook
//! endpoints, status callbacks): the one guard that keeps them from reaching addresses only
//! the server can reach — loopback, private networks, link-local (cloud metadata), multicast.
//!
//! Two checks, both from one [`UrlGuard`]:
//! - [`UrlGuard::check`] at accept time: the URL parses, is http(s), and its host is not a
//!   literal forbidden address or a `localhost` name (so the client gets a 422 at once);
//! - [`UrlGuard::client_builder`] at request time: an HTTP client whose DNS resolver refuses
//!   names that resolve to a forbidden address and whose redirect policy refuses redirects
//!   to forbidden literals, so a public-looking name or a redirect cannot get around it.
//!
//! With `allow_private` (development, tests, or the operator's explicit opt-in) both checks
//! only ask for a well-formed http(s) URL.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("must be an absolute URL: {0}")]
    Invalid(String),
    #[error("must be an http or https URL")]
    Scheme,
    #[error("must not point at a loopback, private, link-local or multicast address ({0})")]
    Private(String),
}

/// Whether a request may reach `ip`: false for loopback, unspecified, private (RFC 1918,
/// unique-local), shared (CGNAT), link-local (including the cloud metadata address),
/// multicast, broadcast, documentation, benchmarking and reserved ranges.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local (fc00::/7), includes fd00:ec2::254
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated) and ::/96
}

/// The guard, built once from configuration and shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlGuard {
    allow_private: bool,
}

impl UrlGuard {
    /// `allow_private`: let requests reach any address (development, tests, or an
    /// operator's explicit setting).
    pub fn new(allow_private: bool) -> Self {
        Self { allow_private }
    }

    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// The accept-time check: a well-formed http(s) URL whose host is not a literal
    /// forbidden address nor a `localhost` name. Names are resolved only when requested.
    pub fn check(&self, raw: &str) -> Result<Url, UrlRefused> {
        let url = Url::parse(raw.trim()).map_err(|e| UrlRefused::Invalid(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlRefused::Scheme);
        }
        if url.host().is_none() {
            return Err(UrlRefused::Invalid("no host".into()));
        }
        self.check_host(&url)?;
        Ok(url)
    }

    fn check_host(&self, url: &Url) -> Result<(), UrlRefused> {
        if self.allow_private {
            return Ok(());
        }
        let refused = |what: String| Err(UrlRefused::Private(what));
        match url.host() {
            Some(Host::Ipv4(ip)) if !is_public_v4(ip) => refused(ip.to_string()),
            Some(Host::Ipv6(ip)) if !is_public_v6(ip) => refused(ip.to_string()),
            Some(Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if name == "localhost" || name.ends_with(".localhost") {
                    refused(name)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// An HTTP client builder that enforces the guard on every connection: names resolving
    /// to a forbidden address fail to connect, redirects to forbidden literals are refused
    /// (at most 10 redirects), and no proxy from the environment is used (it would hide
    /// the destination). With `allow_private` it is a plain builder.
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        crate::provider::install_crypto_provider();
        let builder = reqwest::Client::builder();
        if self.allow_private {
            return builder;
        }
        let guard = *self;
        builder
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 10 {
                    return attempt.error("too many redirects");
                }
                match guard.check_host(attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(e) => attempt.error(e),
                }
            }))
    }
}

/// Resolves with the system resolver and refuses a name if any of its addresses is not
/// public (one forbidden address is enough: a rebinding name could pick it later).
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
                tracing::warn!(host = %host, address = %bad.ip(), "refused a request to a non-public address");
                return Err(Box::new(UrlRefused::Private(format!(
                    "{host} resolves to {}",
                    bad.ip()
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            if addrs.is_empty() {
                return Err(format!("{host} did not resolve").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_ranges_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "ff02::1",
        ] {
            let parsed: IpAddr = ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(!is_public(parsed), "{ip} should be refused");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let parsed: IpAddr = ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(is_public(parsed), "{ip} should be allowed");
        }
    }

    #[test]
    fn literal_hosts_are_checked_at_accept_time() {
        let strict = UrlGuard::new(false);
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:8080/x",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::1]/",
            "http://localhost/",
            "http://api.localhost./",
        ] {
            assert!(
                matches!(strict.check(url), Err(UrlRefused::Private(_))),
                "{url} should be refused"
            );
        }
        assert_eq!(strict.check("ftp://example.com/"), Err(UrlRefused::Scheme));
        assert!(matches!(
            strict.check("not a url"),
            Err(UrlRefused::Invalid(_))
        ));
        assert!(strict.check("https://example.com/a.pdf").is_ok());
        let open = UrlGuard::new(true);
        assert!(open.check("http://127.0.0.1:8080/x").is_ok());
        assert_eq!(open.check("file:///etc/passwd"), Err(UrlRefused::Scheme));
    }

    #[tokio::test]
    async fn the_client_refuses_names_that_resolve_to_private_addresses() {
        // A listener on loopback that must see no connection.
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("cannot bind a loopback listener: {e}"),
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let accepted = tokio::spawn(async move {
            tokio::time::timeout(std::time::Duration::from_millis(500), listener.accept())
                .await
                .is_ok()
        });
        let client = UrlGuard::new(false)
            .client_builder()
            .build()
            .unwrap_or_else(|e| panic!("client: {e}"));
        // `localhost` resolves to loopback: refused by the resolver, not by the literal check.
        let result = client
            .get(format!("http://localhost:{port}/secret"))
            .send()
            .await;
        assert!(result.is_err(), "the request should have been refused");
        assert_eq!(
            accepted.await.ok(),
            Some(false),
            "the listener saw a connection"
        );
    }
}
