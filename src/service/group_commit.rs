//! Group commit: callers hand jobs to a few writer tasks over one channel, and each writer
//! takes everything waiting (up to a group) in one call and writes it at once. While one
//! group is written the next gathers, so the number of writes follows the store's commit
//! rate instead of the number of callers. The send path (`ingest`) and the worker's
//! outcomes (`worker::OutcomeWriters`) write this way.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Mutex, mpsc};

/// Starts `writers` tasks (at least one) that pass each group of up to `max_group` waiting
/// jobs to `write`, and returns the channel the jobs go in. The tasks stop when every
/// sender is dropped.
pub fn start<J, W, F>(writers: usize, max_group: usize, write: W) -> mpsc::Sender<J>
where
    J: Send + 'static,
    W: Fn(Vec<J>) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let writers = writers.max(1);
    let (tx, rx) = mpsc::channel(max_group * writers * 4);
    let rx = Arc::new(Mutex::new(rx));
    for _ in 0..writers {
        let (rx, write) = (rx.clone(), write.clone());
        tokio::spawn(async move {
            loop {
                // Waits for the first job, then takes everything already waiting in one
                // call; the lock is held only while this writer is idle.
                let mut jobs = Vec::new();
                if rx.lock().await.recv_many(&mut jobs, max_group).await == 0 {
                    return;
                }
                write(jobs).await;
            }
        });
    }
    tx
}
