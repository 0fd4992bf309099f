//! Keeping the full-text index's pending list short.
//!
//! A new message's search document goes into the GIN index's pending list (`fastupdate`):
//! cheap to append to, and searches read the list as well as the index, so search is exact
//! the moment a message is stored. The list has to be merged into the index proper, and if
//! nothing else does it, the insert that fills the list does, holding its whole batch (and
//! every send request waiting on it) for as long as the merge takes: a p99 of about 200 ms
//! at a steady half-rate load, on 2 cores. The API process, the one that stores new
//! messages, merges the list every second instead. Several at once take turns; on a store
//! without such an index this does nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::store::Store;

/// How often the pending list is merged: at 15,000 messages a second a second's worth is a
/// few MB, well under the list's limit.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// Merges the pending list every [`INTERVAL`] until `shutdown`.
pub fn spawn(store: Arc<dyn Store>, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = store.maintain_search_index().await {
                debug!(error = %format!("{e:#}"), "merging the search index's pending list failed; will try again");
            }
        }
    })
}
