//! Signature checks for provider callbacks, exactly as the providers compute them.
//!
//! - Twilio: `X-Twilio-Signature` = base64(HMAC-SHA1(auth token, URL + sorted name/value
//!   pairs)). The URL is the public one Twilio called; a default port may or may not be in it.
//!   JSON bodies carry `bodySHA256` in the URL instead of parameters.
//! - SendGrid Event Webhook: ECDSA P-256/SHA-256 over `timestamp + raw body`, checked with the
//!   account's public key (base64 DER SubjectPublicKeyInfo).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Verifier;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::config::SendgridKey;

/// Twilio's signature for a form POST to `url` with `params`.
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // Sorted by name; repeated names keep their values sorted too.
    sorted.sort();
    // An HMAC takes a key of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return String::new();
    };
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// The URL as given, plus the same URL with its default port added or removed: Twilio may
/// have signed either form.
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    if let Ok(parsed) = url::Url::parse(url) {
        let default = match parsed.scheme() {
            "https" => 443,
            "http" => 80,
            _ => return out,
        };
        let host = parsed.host_str().unwrap_or_default();
        let rest = &url[url.find(host).map(|i| i + host.len()).unwrap_or(url.len())..];
        let scheme = parsed.scheme();
        let with_port = format!(":{default}");
        let variant = match rest.strip_prefix(&with_port) {
            Some(after) => format!("{scheme}://{host}{after}"),
            None if !rest.starts_with(':') => format!("{scheme}://{host}{with_port}{rest}"),
            None => return out,
        };
        if variant != url {
            out.push(variant);
        }
    }
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a Twilio form-encoded callback.
pub fn verify_twilio(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    provided: &str,
) -> bool {
    url_variants(url).iter().any(|u| {
        constant_time_eq(
            twilio_signature(auth_token, u, params).as_bytes(),
            provided.as_bytes(),
        )
    })
}

/// Checks a Twilio callback with a JSON body: the URL (carrying `bodySHA256`) is signed
/// alone, and the hash must match the raw body.
pub fn verify_twilio_json(auth_token: &str, url: &str, body: &[u8], provided: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let Some(expected_hash) = parsed
        .query_pairs()
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned())
    else {
        return false;
    };
    let actual: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    constant_time_eq(
        actual.as_bytes(),
        expected_hash.to_ascii_lowercase().as_bytes(),
    ) && verify_twilio(auth_token, url, &[], provided)
}

// The key is parsed with the settings (`config::webhooks`); the check lives beside the
// other signature checks.
impl SendgridKey {
    /// Checks `signature` (base64 DER ECDSA) over `timestamp + body`.
    pub fn verify(&self, timestamp: &str, body: &[u8], signature_b64: &str) -> bool {
        let Ok(der) = BASE64.decode(signature_b64.trim()) else {
            return false;
        };
        let Ok(signature) = Signature::from_der(&der) else {
            return false;
        };
        let mut payload = Vec::with_capacity(timestamp.len() + body.len());
        payload.extend_from_slice(timestamp.as_bytes());
        payload.extend_from_slice(body);
        self.verifying_key().verify(&payload, &signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWILIO_URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const TWILIO_TOKEN: &str = "12345";
    const TWILIO_EXPECTED: &str = "0/KCTR6DLpKmkAf8muzZqo1nDgQ=";

    fn twilio_params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn twilio_matches_the_published_test_vector() {
        assert_eq!(
            twilio_signature(TWILIO_TOKEN, TWILIO_URL, &twilio_params()),
            TWILIO_EXPECTED
        );
        assert!(verify_twilio(
            TWILIO_TOKEN,
            TWILIO_URL,
            &twilio_params(),
            TWILIO_EXPECTED
        ));
    }

    #[test]
    fn twilio_parameter_order_does_not_matter() {
        let mut reversed = twilio_params();
        reversed.reverse();
        assert!(verify_twilio(
            TWILIO_TOKEN,
            TWILIO_URL,
            &reversed,
            TWILIO_EXPECTED
        ));
    }

    #[test]
    fn twilio_rejects_any_change() {
        let mut changed_value = twilio_params();
        changed_value[2].1 = "1235".into();
        assert!(!verify_twilio(
            TWILIO_TOKEN,
            TWILIO_URL,
            &changed_value,
            TWILIO_EXPECTED
        ));
        let mut renamed = twilio_params();
        renamed[0].0 = "Callsid".into();
        assert!(!verify_twilio(
            TWILIO_TOKEN,
            TWILIO_URL,
            &renamed,
            TWILIO_EXPECTED
        ));
        assert!(!verify_twilio(
            TWILIO_TOKEN,
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &twilio_params(),
            TWILIO_EXPECTED
        ));
        assert!(!verify_twilio(
            "12346",
            TWILIO_URL,
            &twilio_params(),
            TWILIO_EXPECTED
        ));
        assert!(!verify_twilio(
            TWILIO_TOKEN,
            TWILIO_URL,
            &twilio_params(),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ"
        ));
        assert!(!verify_twilio(
            TWILIO_TOKEN,
            TWILIO_URL,
            &twilio_params(),
            ""
        ));
    }

    #[test]
    fn twilio_accepts_the_url_with_or_without_the_default_port() {
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let sig_with_port = twilio_signature(TWILIO_TOKEN, with_port, &twilio_params());
        assert!(verify_twilio(
            TWILIO_TOKEN,
            TWILIO_URL,
            &twilio_params(),
            &sig_with_port
        ));
        assert!(verify_twilio(
            TWILIO_TOKEN,
            with_port,
            &twilio_params(),
            TWILIO_EXPECTED
        ));
        // A non-default port is part of the URL and must match exactly.
        let odd = "https://mycompany.com:8443/myapp.php?foo=1&bar=2";
        assert!(!verify_twilio(
            TWILIO_TOKEN,
            odd,
            &twilio_params(),
            TWILIO_EXPECTED
        ));
    }

    #[test]
    fn twilio_json_bodies_are_checked_through_body_sha256() {
        let body = br#"{"MessageSid":"SM1"}"#;
        let hash: String = Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let url = format!("https://example.com/hook?bodySHA256={hash}");
        let sig = twilio_signature(TWILIO_TOKEN, &url, &[]);
        assert!(verify_twilio_json(TWILIO_TOKEN, &url, body, &sig));
        assert!(!verify_twilio_json(
            TWILIO_TOKEN,
            &url,
            br#"{"MessageSid":"SM2"}"#,
            &sig
        ));
        assert!(!verify_twilio_json(
            TWILIO_TOKEN,
            "https://example.com/hook",
            body,
            &sig
        ));
    }

    const SG_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    const SG_SIG: &str = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
    const SG_TS: &str = "1588788367";
    const SG_BODY: &str =
        r#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;

    #[test]
    fn sendgrid_matches_the_published_test_vector() {
        let key = SendgridKey::parse(SG_KEY).unwrap();
        assert!(key.verify(SG_TS, SG_BODY.as_bytes(), SG_SIG));
    }

    #[test]
    fn sendgrid_rejects_any_change() {
        let key = SendgridKey::parse(SG_KEY).unwrap();
        let mut body = SG_BODY.as_bytes().to_vec();
        body[5] ^= 1;
        assert!(
            !key.verify(SG_TS, &body, SG_SIG),
            "one changed byte in the body"
        );
        assert!(
            !key.verify("1588788368", SG_BODY.as_bytes(), SG_SIG),
            "another timestamp"
        );
        assert!(
            !key.verify(SG_TS, SG_BODY.as_bytes(), "MEUCIQ=="),
            "a broken signature"
        );
        assert!(!key.verify(SG_TS, SG_BODY.as_bytes(), "not base64!"));
        // Another valid key must not verify this signature.
        let other = p256::SecretKey::from_slice(&[7u8; 32])
            .unwrap()
            .public_key();
        let other_der = p256::pkcs8::EncodePublicKey::to_public_key_der(&other).unwrap();
        let other_key = SendgridKey::parse(&BASE64.encode(other_der.as_bytes())).unwrap();
        assert!(
            !other_key.verify(SG_TS, SG_BODY.as_bytes(), SG_SIG),
            "another key"
        );
    }

    #[test]
    fn sendgrid_keys_are_validated() {
        assert!(SendgridKey::parse("bm90IGEga2V5").is_err());
        assert!(SendgridKey::parse("%%%").is_err());
    }
}
