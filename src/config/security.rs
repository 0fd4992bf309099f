//! Security settings: rate limiting, API keys, trusted proxies and allowed hosts.

use std::net::IpAddr;
use std::time::Duration;

use super::{ConfigError, Env, Environment};

#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Requests one client may make to one endpoint per `period`.
    pub requests: u32,
    pub period: Duration,
}

/// An IP address or a CIDR block (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(raw: &str) -> Option<Self> {
        let (addr, prefix) = match raw.split_once('/') {
            Some((a, p)) => (
                a.trim().parse::<IpAddr>().ok()?,
                Some(p.trim().parse::<u8>().ok()?),
            ),
            None => (raw.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Self { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4 peers may show up as IPv4-mapped IPv6 addresses on a dual-stack socket.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// One `ALLOWED_HOSTS` entry: `api.example.com`, `.example.com` (the domain and its
/// subdomains) or `*` (any host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Any,
    Exact(String),
    Domain(String),
}

impl HostPattern {
    fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim().to_ascii_lowercase();
        if raw == "*" {
            return Some(Self::Any);
        }
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        };
        match raw.strip_prefix('.') {
            Some(domain) if valid(domain) => Some(Self::Domain(domain.to_owned())),
            None if valid(&raw) => Some(Self::Exact(raw)),
            _ => None,
        }
    }

    /// `host` is the Host header without its port, lower-cased.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(h) => h == host,
            Self::Domain(d) => {
                host == d
                    || (host.ends_with(d.as_str()) && host[..host.len() - d.len()].ends_with('.'))
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct SecuritySettings {
    pub rate_limit: RateLimitSettings,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Empty means any host (allowed outside production only).
    pub allowed_hosts: Vec<HostPattern>,
    /// Every `/api` route needs a valid API key (always so in production).
    pub require_api_keys: bool,
    /// How long an API instance trusts its last lookup of a key (0: look up every time).
    pub api_key_cache_ttl: Duration,
}

impl SecuritySettings {
    pub(super) fn from_env(env: &Env, environment: Environment) -> Result<Self, ConfigError> {
        let production = environment == Environment::Production;
        let requests: u32 = env.parse("RATE_LIMIT_REQUESTS", 100, "a positive integer")?;
        if requests == 0 {
            return Err(ConfigError("RATE_LIMIT_REQUESTS must be at least 1".into()));
        }
        let period = env.seconds("RATE_LIMIT_PERIOD", 60.0)?;
        if period < Duration::from_millis(1) {
            return Err(ConfigError(
                "RATE_LIMIT_PERIOD must be greater than 0".into(),
            ));
        }
        let rate_limit = RateLimitSettings {
            enabled: env.flag("RATE_LIMIT_ENABLED", true)?,
            requests,
            period,
        };

        let trusted_proxies = list(env, "TRUSTED_PROXIES")
            .map(|raw| {
                IpNet::parse(raw).ok_or_else(|| {
                    ConfigError(format!(
                        "TRUSTED_PROXIES entry {raw:?} is not an IP address or CIDR block"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        let allowed_hosts = list(env, "ALLOWED_HOSTS")
            .map(|raw| {
                HostPattern::parse(raw).ok_or_else(|| {
                    ConfigError(format!("ALLOWED_HOSTS entry {raw:?} is not a host name"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if production && allowed_hosts.is_empty() {
            return Err(ConfigError(
                "ALLOWED_HOSTS must list the host names clients use (e.g. api.example.com, or * for any) when ENVIRONMENT=production".into(),
            ));
        }

        let require_api_keys = env.flag("REQUIRE_API_KEYS", production)?;
        if production && !require_api_keys {
            return Err(ConfigError(
                "REQUIRE_API_KEYS cannot be false when ENVIRONMENT=production".into(),
            ));
        }

        Ok(Self {
            rate_limit,
            trusted_proxies,
            allowed_hosts,
            require_api_keys,
            api_key_cache_ttl: env.seconds("API_KEY_CACHE_TTL", 5.0)?,
        })
    }
}

fn list<'a>(env: &'a Env, name: &str) -> impl Iterator<Item = &'a str> {
    env.raw(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks_contain_their_addresses_only() {
        let net = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(
            net.contains(ip("::ffff:10.1.0.9")),
            "IPv4-mapped peers match"
        );
        let single = IpNet::parse("192.168.1.5").unwrap();
        assert!(single.contains(ip("192.168.1.5")));
        assert!(!single.contains(ip("192.168.1.6")));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(IpNet::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(IpNet::parse("10.0.0.0/33").is_none());
        assert!(IpNet::parse("example.com").is_none());
    }

    #[test]
    fn host_patterns_match_exact_names_and_subdomains() {
        let exact = HostPattern::parse("API.example.com").unwrap();
        assert!(exact.matches("api.example.com"));
        assert!(!exact.matches("evil.example.com"));
        let domain = HostPattern::parse(".example.com").unwrap();
        assert!(domain.matches("example.com"));
        assert!(domain.matches("api.example.com"));
        assert!(!domain.matches("badexample.com"));
        assert!(HostPattern::parse("*").unwrap().matches("anything"));
        assert!(HostPattern::parse("bad host").is_none());
    }
}
