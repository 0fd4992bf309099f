//! Early receipts: how long a receipt that matched no message yet is kept for the outcome
//! write that records its provider id.

use std::time::Duration;

use super::{ConfigError, Env};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptSettings {
    /// `UNMATCHED_RECEIPT_TTL` (seconds, default one hour): kept receipts older than this
    /// are purged.
    pub unmatched_ttl: Duration,
}

impl ReceiptSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let unmatched_ttl = env.seconds("UNMATCHED_RECEIPT_TTL", 3600.0)?;
        if unmatched_ttl.is_zero() {
            return Err(ConfigError(
                "UNMATCHED_RECEIPT_TTL must be greater than 0".into(),
            ));
        }
        Ok(Self { unmatched_ttl })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_defaults_to_an_hour_and_must_be_positive() {
        let parse = |pairs: &[(&str, &str)]| {
            ReceiptSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
        };
        assert_eq!(
            parse(&[]).map(|s| s.unmatched_ttl).ok(),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            parse(&[("UNMATCHED_RECEIPT_TTL", "90")])
                .map(|s| s.unmatched_ttl)
                .ok(),
            Some(Duration::from_secs(90))
        );
        assert!(parse(&[("UNMATCHED_RECEIPT_TTL", "0")]).is_err());
        assert!(parse(&[("UNMATCHED_RECEIPT_TTL", "soon")]).is_err());
    }
}
