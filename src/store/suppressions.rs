//! The suppression list and its audit trail: adding and lifting entries (each change
//! recorded with its cause in the same transaction), the send path's batched lookup, and
//! the operators' listing. Row decoding and the list query are written once here.

use async_trait::async_trait;

use super::query::{Bind, Condition, Listing, Sort};
use super::rows::StoredRow;
use super::{Page, StoreResult};
use crate::domain::compliance::{
    Keyword, SuppressedAddress, Suppression, SuppressionCause, SuppressionChange,
    SuppressionReason, keyword_change,
};
use crate::domain::{ChannelFamily, NewMessage};

/// Which entries a listing shows.
#[derive(Debug, Clone, Default)]
pub struct SuppressionFilter {
    pub channel: Option<ChannelFamily>,
    pub reason: Option<SuppressionReason>,
    /// One normalised address.
    pub address: Option<String>,
}

/// What adding an address did.
#[derive(Debug, Clone, PartialEq)]
pub enum Suppressed {
    /// Newly on the list.
    Added(Suppression),
    /// Already on the list: the entry is unchanged (its first reason and time stand).
    Existing(Suppression),
}

impl Suppressed {
    pub fn entry(&self) -> &Suppression {
        match self {
            Self::Added(s) | Self::Existing(s) => s,
        }
    }
}

#[async_trait]
pub trait SuppressionStore: Send + Sync + 'static {
    /// Puts `address` on the list for `reason` unless it is there already; an addition is
    /// recorded in the audit trail with its cause, in the same transaction.
    async fn suppress(
        &self,
        address: &SuppressedAddress,
        reason: SuppressionReason,
        cause: &SuppressionCause,
    ) -> StoreResult<Suppressed>;

    /// Takes `address` off the list (recorded with its cause); `None` if it was not on it.
    async fn unsuppress(
        &self,
        address: &SuppressedAddress,
        cause: &SuppressionCause,
    ) -> StoreResult<Option<Suppression>>;

    /// The entries among `addresses` (normalised), in one query on the primary key.
    async fn find_suppressions(&self, addresses: &[String]) -> StoreResult<Vec<Suppression>>;

    /// A page of entries, newest first, with the total matching the filter.
    async fn list_suppressions(
        &self,
        filter: &SuppressionFilter,
        page: Page,
    ) -> StoreResult<(Vec<Suppression>, i64)>;

    /// Every change to one address, oldest first.
    async fn suppression_history(&self, address: &str) -> StoreResult<Vec<SuppressionChange>>;
}

/// For each key, the entry it is under, if any: one query for all of them (none when there
/// is no key).
pub async fn suppressions_of(
    store: &dyn SuppressionStore,
    keys: &[Option<SuppressedAddress>],
) -> StoreResult<Vec<Option<Suppression>>> {
    let addresses = lookup_addresses(keys);
    if addresses.is_empty() {
        return Ok(vec![None; keys.len()]);
    }
    let found = store.find_suppressions(&addresses).await?;
    Ok(matched(keys, &found))
}

/// The distinct addresses of `keys`, as the list is looked up by.
pub fn lookup_addresses(keys: &[Option<SuppressedAddress>]) -> Vec<String> {
    let mut addresses: Vec<String> = keys
        .iter()
        .flatten()
        .map(|k| k.as_str().to_owned())
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    addresses
}

/// For each key, the entry among `found` it is under, if any.
pub fn matched(
    keys: &[Option<SuppressedAddress>],
    found: &[Suppression],
) -> Vec<Option<Suppression>> {
    keys.iter()
        .map(|k| {
            k.as_ref()
                .and_then(|k| found.iter().find(|s| s.address == k.as_str()).cloned())
        })
        .collect()
}

/// One list change a stored keyword message makes, applied in the transaction that stores
/// the message (so a keyword is never stored without its effect, nor applied twice).
pub(crate) struct KeywordChange {
    pub address: SuppressedAddress,
    pub opt_out: bool,
    pub cause: SuppressionCause,
}

/// The changes the messages of a batch about to be stored (`fresh`) ask for, in batch order.
pub(crate) fn keyword_changes(batch: &[NewMessage], fresh: &[bool]) -> Vec<KeywordChange> {
    batch
        .iter()
        .zip(fresh)
        .filter(|(_, fresh)| **fresh)
        .filter_map(|(m, _)| {
            let (address, word) = keyword_change(m.direction, m.kind, &m.from, m.body.as_deref())?;
            Some(KeywordChange {
                address,
                opt_out: word == Keyword::OptOut,
                cause: SuppressionCause::Keyword(m.id),
            })
        })
        .collect()
}

pub(crate) const SUPPRESSION_COLUMNS: &str = "address, channel, reason, since";

pub(crate) const SUPPRESSION_EVENT_COLUMNS: &str =
    "id, address, channel, action, reason, cause, cause_ref, created_at";

pub(crate) fn suppression<R: StoredRow>(row: &R) -> anyhow::Result<Suppression> {
    Ok(Suppression {
        address: row.get("address")?,
        channel: row.named("channel", ChannelFamily::parse)?,
        reason: row.named("reason", SuppressionReason::parse)?,
        since: row.instant("since")?,
    })
}

pub(crate) fn suppression_change<R: StoredRow>(row: &R) -> anyhow::Result<SuppressionChange> {
    let reason: Option<String> = row.get("reason")?;
    Ok(SuppressionChange {
        id: row.get("id")?,
        address: row.get("address")?,
        channel: row.named("channel", ChannelFamily::parse)?,
        action: row.get("action")?,
        reason: reason.as_deref().and_then(SuppressionReason::parse),
        cause: row.get("cause")?,
        cause_ref: row.get("cause_ref")?,
        created_at: row.instant("created_at")?,
    })
}

/// The listing, newest first.
pub(crate) fn listing(f: &SuppressionFilter, page: Page) -> Listing {
    let text = |s: &str| Bind::Text(s.to_owned());
    let mut conditions = Vec::new();
    if let Some(c) = f.channel {
        conditions.push(Condition::Eq("channel", text(c.as_str())));
    }
    if let Some(r) = f.reason {
        conditions.push(Condition::Eq("reason", text(r.as_str())));
    }
    if let Some(a) = &f.address {
        conditions.push(Condition::Eq("address", text(a)));
    }
    Listing {
        table: "suppressions",
        columns: SUPPRESSION_COLUMNS,
        conditions,
        order: &[Sort::Desc("since"), Sort::Asc("address")],
        window: super::Window::exact(page),
    }
}
