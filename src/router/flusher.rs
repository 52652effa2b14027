//! The counter flusher: every `flush_interval` it writes all pending
//! request-counter deltas in one batched upsert.
//!
//! A crash loses at most one interval of request counts, never money (money
//! goes through the ledger, which acknowledges only after commit).

use super::deltas::CounterDeltas;
use crate::store::{Store, StoreResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

#[derive(Debug)]
pub struct Flusher {
    deltas: Arc<CounterDeltas>,
    store: Store,
    /// Held while a batch is between the accumulator and the store, and by
    /// an actor reading its start-up state, so neither sees a delta twice
    /// or not at all.
    in_flight: Mutex<()>,
}

impl Flusher {
    pub fn new(deltas: Arc<CounterDeltas>, store: Store) -> Self {
        Flusher {
            deltas,
            store,
            in_flight: Mutex::new(()),
        }
    }

    /// Writes everything pending. On failure the deltas go back to the
    /// accumulator and are retried by the next flush.
    pub async fn flush(&self) -> StoreResult<usize> {
        let _guard = self.in_flight.lock().await;
        let batch = self.deltas.take();
        if batch.is_empty() {
            return Ok(0);
        }
        match self.store.flush_counters(&batch).await {
            Ok(()) => {
                metrics::counter!("tollgate_counter_deltas_flushed_total").increment(batch.len() as u64);
                Ok(batch.len())
            }
            Err(err) => {
                self.deltas.restore(batch);
                Err(err)
            }
        }
    }

    /// Taken by an entity actor while it reads its stored state.
    pub async fn read_guard(&self) -> MutexGuard<'_, ()> {
        self.in_flight.lock().await
    }

    /// Flushes every `interval` until the task is aborted.
    pub fn spawn(self: Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(err) = self.flush().await {
                    metrics::counter!("tollgate_counter_flush_errors_total").increment(1);
                    tracing::warn!(error = %err, "counter flush failed; will retry");
                }
            }
        })
    }
}
