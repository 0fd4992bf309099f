//! Assembling each channel's provider from the settings: adapters in failover order behind
//! circuit breakers, then per-sender pacing.

use std::sync::{Arc, Once};

use tracing::warn;

use super::failover::FailoverProvider;
use super::mock::MockProvider;
use super::pacing::{PacedProvider, Pacer, PacingRules};
use super::sendgrid::SendgridProvider;
use super::smtp::SmtpProvider;
use super::twilio::TwilioProvider;
use super::{Provider, Providers};
use crate::config::Settings;
use crate::config::providers::ProviderKind;

/// Chooses ring as the process's TLS crypto (the only one compiled in). Idempotent; called
/// at the top of `main` and by every client constructor.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first, which is fine too.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn adapter(
    kind: ProviderKind,
    settings: &Settings,
    mock: &Arc<MockProvider>,
) -> anyhow::Result<Arc<dyn Provider>> {
    let p = &settings.providers;
    let missing = |what: &str| anyhow::anyhow!("{what} is not configured");
    Ok(match kind {
        ProviderKind::Mock => mock.clone(),
        ProviderKind::Twilio => Arc::new(TwilioProvider::new(
            p.twilio.clone().ok_or_else(|| missing("Twilio"))?,
            p.public_base_url.as_deref(),
            p.request_timeout,
        )?),
        ProviderKind::Sendgrid => Arc::new(
            SendgridProvider::new(
                p.sendgrid.clone().ok_or_else(|| missing("SendGrid"))?,
                p.request_timeout,
                p.attachment_max_bytes,
                crate::service::attachment_urls::guard(settings),
            )?
            .with_reconcile_wait(settings.reconcile.sendgrid_wait),
        ),
        ProviderKind::Smtp => Arc::new(SmtpProvider::new(
            p.smtp_url.as_ref().ok_or_else(|| missing("SMTP_URL"))?,
            p.request_timeout,
            p.attachment_max_bytes,
            crate::service::attachment_urls::guard(settings),
        )?),
    })
}

/// The providers of every channel as configured, paced through `pacer` (a `RedisPacer`
/// shared by all workers, or a `LocalPacer` in a single process).
pub fn build_providers(settings: &Settings, pacer: Arc<dyn Pacer>) -> anyhow::Result<Providers> {
    let p = &settings.providers;
    let mock = Arc::new(MockProvider::from_settings(&settings.mock_provider)?);
    let chain = |kinds: &[ProviderKind]| -> anyhow::Result<Arc<dyn Provider>> {
        let members = kinds
            .iter()
            .map(|k| adapter(*k, settings, &mock))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Arc::new(FailoverProvider::new(
            members,
            p.breaker_threshold,
            p.breaker_cooldown,
        )))
    };
    let real = |kinds: &[ProviderKind]| kinds.iter().any(|k| *k != ProviderKind::Mock);
    let rules = PacingRules::new(
        p.pacing.clone(),
        p.pacing.enabled.unwrap_or(real(&p.sms)),
        p.pacing.enabled.unwrap_or(real(&p.email)),
    );
    let paced = |inner: Arc<dyn Provider>| -> Arc<dyn Provider> {
        Arc::new(PacedProvider::new(inner, pacer.clone(), rules.clone()))
    };
    if p.sms.contains(&ProviderKind::Twilio) && p.public_base_url.is_none() {
        warn!(
            "PUBLIC_BASE_URL is not set: Twilio will not be asked for status callbacks, so messages stay `sent`"
        );
    }
    let phone = paced(chain(&p.sms)?);
    Ok(Providers {
        sms: phone.clone(),
        mms: phone,
        email: paced(chain(&p.email)?),
    })
}
