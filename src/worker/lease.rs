//! Keeping a claim while its messages are in flight: the lease (on the database's clock) is
//! renewed on a timer until the batch is settled, so a slow provider call is never mistaken
//! for a dead worker.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::debug;
use uuid::Uuid;

use crate::store::Store;

/// Renews the lease of one claim every third of `lease` until dropped.
pub struct LeaseKeeper {
    task: JoinHandle<()>,
}

impl LeaseKeeper {
    pub fn start(store: Arc<dyn Store>, token: Uuid, lease: Duration) -> Self {
        let every = (lease / 3).max(Duration::from_millis(50));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.renew_leases(&[token], lease).await {
                    // Everything settled: nothing left to hold.
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) => {
                        debug!(error = %format!("{e:#}"), "could not renew a lease; will try again")
                    }
                }
            }
        });
        Self { task }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
