//! Listing: how far a list endpoint counts the rows its filter matches before it reports
//! an estimate instead.

use super::{ConfigError, Env};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingSettings {
    /// `LIST_COUNT_LIMIT` (default 10,000): `total` is exact while at most this many rows
    /// match; above it `total` is an estimate and `total_is_estimate` is true.
    pub count_limit: i64,
}

impl ListingSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let count_limit = env.positive("LIST_COUNT_LIMIT", 10_000)?;
        let count_limit = i64::try_from(count_limit)
            .ok()
            .filter(|n| *n < i64::MAX)
            .ok_or_else(|| ConfigError("LIST_COUNT_LIMIT is too large".into()))?;
        Ok(Self { count_limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_limit_defaults_to_ten_thousand_and_must_be_positive() {
        let parse = |pairs: &[(&str, &str)]| {
            ListingSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
        };
        assert_eq!(parse(&[]).map(|s| s.count_limit).ok(), Some(10_000));
        assert_eq!(
            parse(&[("LIST_COUNT_LIMIT", "3")])
                .map(|s| s.count_limit)
                .ok(),
            Some(3)
        );
        assert!(parse(&[("LIST_COUNT_LIMIT", "0")]).is_err());
        assert!(parse(&[("LIST_COUNT_LIMIT", "many")]).is_err());
    }
}
