//! Outbound attachment URLs: whether the worker may fetch from loopback, private,
//! link-local (cloud metadata) and multicast addresses.

use super::{ConfigError, Env, Environment};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentSettings {
    /// `ATTACHMENT_ALLOW_PRIVATE_URLS`: false by default in production (such URLs get 422 at
    /// accept time and fail at download time), true otherwise (development and tests fetch
    /// from local servers).
    pub allow_private_urls: bool,
}

impl AttachmentSettings {
    pub fn from_env(env: &Env, environment: Environment) -> Result<Self, ConfigError> {
        Ok(Self {
            allow_private_urls: env.flag(
                "ATTACHMENT_ALLOW_PRIVATE_URLS",
                environment != Environment::Production,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(environment: Environment, pairs: &[(&str, &str)]) -> AttachmentSettings {
        AttachmentSettings::from_env(&Env::from_pairs(pairs.iter().copied()), environment)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn private_urls_are_refused_by_default_in_production_only() {
        assert!(!parse(Environment::Production, &[]).allow_private_urls);
        assert!(parse(Environment::Development, &[]).allow_private_urls);
        assert!(parse(Environment::Test, &[]).allow_private_urls);
        let opted_in = [("ATTACHMENT_ALLOW_PRIVATE_URLS", "true")];
        assert!(parse(Environment::Production, &opted_in).allow_private_urls);
        let opted_out = [("ATTACHMENT_ALLOW_PRIVATE_URLS", "false")];
        assert!(!parse(Environment::Development, &opted_out).allow_private_urls);
    }
}
