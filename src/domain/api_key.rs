//! API keys: random, shown once, known afterwards only by their SHA-256 hash.

use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::ValidationError;

/// Every key starts with this, so a leaked key is recognisable in logs and scanners.
pub const KEY_PREFIX: &str = "msk_";
/// Characters of the key kept in clear to tell keys apart.
const SHOWN_CHARS: usize = KEY_PREFIX.len() + 8;
const MAX_NAME_CHARS: usize = 100;
/// Longest bearer token worth hashing; anything longer is not one of ours.
pub const MAX_KEY_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl ApiKey {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// A key about to be stored: its hash, never the key.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
}

impl NewApiKey {
    /// A fresh random key (244 random bits from the OS) and what to store about it.
    pub fn generate(name: &str) -> Result<(String, Self), ValidationError> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.contains(char::is_control)
        {
            return Err(ValidationError::new(
                "name",
                format!("must be 1 to {MAX_NAME_CHARS} printable characters"),
            ));
        }
        let key = format!(
            "{KEY_PREFIX}{}{}",
            Uuid::new_v4().simple(),
            Uuid::new_v4().simple()
        );
        let new = Self {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            prefix: key[..SHOWN_CHARS].to_owned(),
            key_hash: hash_key(&key),
        };
        Ok((key, new))
    }
}

/// Hex SHA-256 of a presented key. Keys carry 244 random bits, so a fast hash is enough:
/// there is nothing to brute-force.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_unique_and_only_their_hash_is_kept() {
        let (a, new_a) = NewApiKey::generate("billing").unwrap();
        let (b, _) = NewApiKey::generate("billing").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(KEY_PREFIX));
        assert_eq!(a.len(), KEY_PREFIX.len() + 64);
        assert_eq!(new_a.key_hash, hash_key(&a));
        assert_ne!(new_a.key_hash, a);
        assert!(a.starts_with(&new_a.prefix));
        assert_eq!(new_a.prefix.len(), SHOWN_CHARS);
    }

    #[test]
    fn names_must_be_short_printable_text() {
        assert!(NewApiKey::generate("  ").is_err());
        assert!(NewApiKey::generate("a\nb").is_err());
        assert!(NewApiKey::generate(&"x".repeat(101)).is_err());
        assert_eq!(NewApiKey::generate(" ci ").unwrap().1.name, "ci");
    }
}
