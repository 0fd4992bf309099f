//! Provider callback settings: the public URL signatures are computed over, the Twilio
//! token and the SendGrid Event Webhook key, the Inbound Parse secret, what to do with
//! inbound attachments. The SendGrid key is parsed here, at start-up, so a bad key stops the
//! service; `webhook::signature` checks signatures with it.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey;
use secrecy::SecretString;

use super::{ConfigError, Env, Environment};

/// What to do with files attached to inbound email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundAttachments {
    /// Record name, type and size only.
    Drop,
    /// Also write the content under this directory.
    Store(std::path::PathBuf),
}

/// Verifying and accepting provider callbacks.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The public base URL providers call (e.g. `https://api.example.com`); Twilio signs
    /// the full URL it used, which is not what a proxy forwards.
    pub public_base_url: String,
    pub twilio_auth_token: Option<SecretString>,
    /// Base64 DER public key of the SendGrid Event Webhook.
    pub sendgrid_public_key: Option<SendgridKey>,
    /// Protects the SendGrid Inbound Parse URL (basic auth password or `?token=`).
    pub secret: Option<SecretString>,
    /// Off only outside production: accept unsigned callbacks (development against fakes).
    pub verify_signatures: bool,
    pub inbound_attachments: InboundAttachments,
    /// Event Webhook timestamps older (or newer) than this are refused as replays.
    pub max_clock_skew: Duration,
}

/// A SendGrid Event Webhook verification key (`SENDGRID_WEBHOOK_PUBLIC_KEY`), parsed once
/// at start-up. `webhook::signature` adds the check (`SendgridKey::verify`).
#[derive(Clone)]
pub struct SendgridKey(VerifyingKey);

impl std::fmt::Debug for SendgridKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SendgridKey(..)")
    }
}

impl SendgridKey {
    /// Parses the base64 DER public key shown in SendGrid's settings.
    pub fn parse(base64_der: &str) -> Result<Self, &'static str> {
        let der = BASE64
            .decode(base64_der.trim())
            .map_err(|_| "is not valid base64")?;
        VerifyingKey::from_public_key_der(&der)
            .map(Self)
            .map_err(|_| "is not a P-256 public key (base64 DER)")
    }

    /// The P-256 key itself.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }
}

impl WebhookSettings {
    /// `public_base_url` is `PUBLIC_BASE_URL` as the provider settings parsed it; signatures are
    /// checked against the local address when it is unset.
    pub fn from_env(
        env: &Env,
        environment: Environment,
        port: u16,
        public_base_url: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let public_base_url = public_base_url
            .map(str::to_owned)
            .unwrap_or_else(|| format!("http://localhost:{port}"));
        let verify_signatures = env.flag("WEBHOOK_VERIFY_SIGNATURES", true)?;
        if environment == Environment::Production && !verify_signatures {
            return Err(ConfigError(
                "WEBHOOK_VERIFY_SIGNATURES=false is refused when ENVIRONMENT=production".into(),
            ));
        }
        let sendgrid_public_key = env
            .raw("SENDGRID_WEBHOOK_PUBLIC_KEY")
            .map(|k| {
                SendgridKey::parse(k)
                    .map_err(|reason| ConfigError(format!("SENDGRID_WEBHOOK_PUBLIC_KEY {reason}")))
            })
            .transpose()?;
        let inbound_attachments = match env
            .string("INBOUND_ATTACHMENTS", "drop")
            .to_ascii_lowercase()
            .as_str()
        {
            "drop" => InboundAttachments::Drop,
            "store" => InboundAttachments::Store(
                env.string("INBOUND_ATTACHMENT_DIR", "data/attachments")
                    .into(),
            ),
            other => {
                return Err(ConfigError(format!(
                    "INBOUND_ATTACHMENTS={other:?} must be drop or store"
                )));
            }
        };
        Ok(Self {
            public_base_url,
            twilio_auth_token: env
                .raw("TWILIO_AUTH_TOKEN")
                .map(|t| SecretString::from(t.to_owned())),
            sendgrid_public_key,
            secret: env
                .raw("WEBHOOK_SECRET")
                .map(|t| SecretString::from(t.to_owned())),
            verify_signatures,
            inbound_attachments,
            max_clock_skew: env.seconds("WEBHOOK_MAX_CLOCK_SKEW", 300.0)?,
        })
    }
}
