//! The counter flusher: every `flush_interval` it writes all pending
//! request-counter deltas in one batched upsert.
//!
//! A crash loses at most one interval of request counts, never money (money
//! goes through the ledger, which acknowledges only after commit). While
//! the database is down, each flush fails at once and its deltas go back to
//! the accumulator, so a crash during an outage loses the counts since the
//! outage began (see README, "When the database is down").

use super::deltas::CounterDeltas;
use crate::entity::EntityKey;
use crate::store::{CounterDelta, Store, StoreError, StoreResult};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// Told which entities' deltas the store refused because another node
/// has claimed them since (cluster mode): their actors here are stale.
pub type FencedHandler = Arc<dyn Fn(Vec<EntityKey>) + Send + Sync>;

/// Counter rows per statement: one interval's worth at full speed (tens
/// of ms to write), so that a backlog flushed after an outage never makes
/// one statement long enough to pass `--db-timeout-ms`.
const FLUSH_CHUNK: usize = 10_000;

pub struct Flusher {
    deltas: Arc<CounterDeltas>,
    store: Store,
    /// Held while a batch is between the accumulator and the store, and by
    /// an actor reading its start-up state, so neither sees a delta twice
    /// or not at all.
    in_flight: Mutex<()>,
    on_fenced: std::sync::OnceLock<FencedHandler>,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Flusher {
    pub fn new(deltas: Arc<CounterDeltas>, store: Store) -> Self {
        Flusher {
            deltas,
            store,
            in_flight: Mutex::new(()),
            on_fenced: std::sync::OnceLock::new(),
        }
    }

    /// Sets who is told about fenced-off entities (once).
    pub fn on_fenced(&self, handler: FencedHandler) {
        let _ = self.on_fenced.set(handler);
    }

    /// Writes one entity's pending deltas now (its ownership is moving).
    pub async fn flush_entity(&self, key: &EntityKey) -> StoreResult<()> {
        let _guard = self.in_flight.lock().await;
        let batch = self.deltas.take_entity(key);
        if batch.is_empty() {
            return Ok(());
        }
        self.write(batch).await
    }

    /// Writes a batch in chunks of [`FLUSH_CHUNK`], each one statement
    /// within the store's deadline (after an outage the backlog can be far
    /// larger than one interval's). On a failure the unwritten rest goes
    /// back to the accumulator.
    async fn write(&self, batch: Vec<CounterDelta>) -> StoreResult<()> {
        let mut chunk = batch;
        while !chunk.is_empty() {
            let rest = chunk.split_off(chunk.len().min(FLUSH_CHUNK));
            if let Err(err) = self.write_chunk(chunk).await {
                self.deltas.restore(rest);
                return Err(err);
            }
            chunk = rest;
        }
        Ok(())
    }

    /// Writes one chunk; deltas the fence refused are written again without
    /// it (they count requests that really were admitted, and dropping
    /// them would let a stale owner admit more after reloading), and their
    /// entities are reported so this node stops serving them.
    async fn write_chunk(&self, batch: Vec<CounterDelta>) -> StoreResult<()> {
        let fenced = match self.store.flush_counters(&batch).await {
            Ok(fenced) => fenced,
            Err(err) => {
                self.deltas.restore(batch);
                return Err(err);
            }
        };
        if fenced.is_empty() {
            return Ok(());
        }
        let late: Vec<CounterDelta> = batch
            .into_iter()
            .filter(|d| fenced.contains(&d.entity))
            .map(|d| CounterDelta { epoch: 0, ..d })
            .collect();
        let result = self.store.flush_counters(&late).await.map(|_| ());
        if result.is_err() {
            self.deltas.restore(late);
        }
        self.report_fenced(fenced);
        result
    }

    fn report_fenced(&self, fenced: Vec<EntityKey>) {
        if fenced.is_empty() {
            return;
        }
        metrics::counter!("tollgate_fenced_entities_total").increment(fenced.len() as u64);
        tracing::warn!(
            entities = fenced.len(),
            "counter deltas refused: another node owns these entities now"
        );
        if let Some(handler) = self.on_fenced.get() {
            handler(fenced);
        }
    }

    /// Writes everything pending. On failure the deltas go back to the
    /// accumulator and are retried by the next flush.
    ///
    /// The work runs on a blocking-pool thread: gathering and encoding tens
    /// of thousands of rows is milliseconds of CPU, which on an async worker
    /// would stall every connection that worker serves (it showed up as a
    /// p99 spike every flush interval). On its own thread the OS scheduler
    /// interleaves it with request handling instead.
    pub async fn flush(self: &Arc<Self>) -> StoreResult<usize> {
        let this = self.clone();
        let handle = tokio::runtime::Handle::current();
        match tokio::task::spawn_blocking(move || handle.block_on(this.flush_here())).await {
            Ok(result) => result,
            // The blocking task panicked or was cancelled at shutdown: run
            // inline so a final flush still happens.
            Err(_) => self.flush_here().await,
        }
    }

    async fn flush_here(&self) -> StoreResult<usize> {
        let _guard = self.in_flight.lock().await;
        let batch = self.deltas.take();
        if batch.is_empty() {
            return Ok(0);
        }
        let n = batch.len();
        let started = std::time::Instant::now();
        self.write(batch).await?;
        metrics::histogram!("tollgate_window_flush_duration_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("tollgate_window_flush_rows").record(n as f64);
        metrics::counter!("tollgate_window_deltas_flushed_total").increment(n as u64);
        Ok(n)
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
                match self.flush().await {
                    Ok(_) => {}
                    // Known outage: the deltas wait here (the store's
                    // health has logged it once).
                    Err(StoreError::Unavailable) => {}
                    Err(err) => {
                        metrics::counter!("tollgate_window_flush_errors_total").increment(1);
                        tracing::warn!(error = %err, "counter flush failed; will retry");
                    }
                }
                metrics::gauge!("tollgate_window_deltas_pending_entities").set(self.deltas.pending_entities() as f64);
            }
        })
    }
}
