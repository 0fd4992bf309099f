//! `messaging-service keys create|list|revoke`: API key administration for operators.

use std::io::Write;

use anyhow::Context;
use uuid::Uuid;

use crate::domain::NewApiKey;
use crate::store::ApiKeyStore;

/// Creates a key and prints it; the key is not stored and cannot be shown again.
pub async fn create(
    store: &dyn ApiKeyStore,
    name: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let (key, new) = NewApiKey::generate(name)
        .map_err(|e| anyhow::anyhow!("invalid {}: {}", e.field, e.reason))?;
    let stored = store
        .create_api_key(&new)
        .await
        .context("storing the API key")?;
    writeln!(out, "Created API key {} ({})", stored.id, stored.name)?;
    writeln!(out)?;
    writeln!(out, "    {key}")?;
    writeln!(out)?;
    writeln!(
        out,
        "Store it now: it is not kept and cannot be shown again. Send it as `Authorization: Bearer <key>`."
    )?;
    Ok(())
}

/// Lists keys: id, name, the key's first characters, created, status. Never the key.
pub async fn list(store: &dyn ApiKeyStore, out: &mut dyn Write) -> anyhow::Result<()> {
    let keys = store.list_api_keys().await.context("listing API keys")?;
    if keys.is_empty() {
        writeln!(
            out,
            "No API keys. Create one with `messaging-service keys create --name NAME`."
        )?;
        return Ok(());
    }
    let fmt = time::format_description::well_known::Rfc3339;
    writeln!(
        out,
        "{:<36}  {:<24}  {:<14}  {:<20}  STATUS",
        "ID", "NAME", "PREFIX", "CREATED"
    )?;
    for k in keys {
        let created = k.created_at.replace_nanosecond(0).unwrap_or(k.created_at);
        let status = match k.revoked_at {
            Some(at) => format!(
                "revoked {}",
                at.replace_nanosecond(0)
                    .unwrap_or(at)
                    .format(&fmt)
                    .unwrap_or_default()
            ),
            None => "active".to_owned(),
        };
        let name: String = k.name.chars().take(24).collect();
        writeln!(
            out,
            "{:<36}  {:<24}  {:<14}  {:<20}  {status}",
            k.id,
            name,
            format!("{}…", k.prefix),
            created.format(&fmt).unwrap_or_default(),
        )?;
    }
    Ok(())
}

/// Revokes a key by id; requests with it get 403 from then on.
pub async fn revoke(store: &dyn ApiKeyStore, id: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let id = Uuid::parse_str(id.trim()).map_err(|_| {
        anyhow::anyhow!("{id:?} is not a key id (see `messaging-service keys list`)")
    })?;
    match store
        .revoke_api_key(id)
        .await
        .context("revoking the API key")?
    {
        Some(k) => {
            writeln!(out, "Revoked API key {} ({})", k.id, k.name)?;
            Ok(())
        }
        None => anyhow::bail!("no API key with id {id} (see `messaging-service keys list`)"),
    }
}
