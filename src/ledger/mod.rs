//! The usage ledger's group commit.
//!
//! `POST /v1/usage` is acknowledged only after its row is in `model_usage`
//! and the spend rows are incremented, in one transaction. Many concurrent
//! events share one transaction: while a commit is in flight the next
//! batch gathers, so batching adapts to load with no fixed delay.
//!
//! A commit that fired budget alerts also wrote their pending deliveries
//! (same transaction); the ledger then wakes the alert dispatcher through
//! [`Ledger::alerts_written`], so delivery starts right after the commit
//! rather than at the dispatcher's next poll.

use crate::store::{Store, StoreError, UsageOutcome, UsageRow};
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

/// Largest number of events in one transaction.
pub const MAX_BATCH: usize = 1000;

/// Why an event was not recorded. Nothing was acknowledged; the client may
/// retry with the same `event_id`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error("the ledger could not commit: {0}")]
    Store(Arc<StoreError>),
    #[error("the ledger is shutting down")]
    Closed,
}

struct Pending {
    row: UsageRow,
    reply: oneshot::Sender<Result<UsageOutcome, LedgerError>>,
}

/// Handle to the group-commit writer. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Pending>,
    commits: Arc<Semaphore>,
    concurrency: u32,
    alerts_written: Arc<Notify>,
}

impl Ledger {
    /// Starts the writer. `concurrency` transactions may be in flight at
    /// once (1 for SQLite, which has one writer anyway).
    pub fn spawn(store: Store, concurrency: u32) -> Ledger {
        let concurrency = concurrency.max(1);
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        let commits = Arc::new(Semaphore::new(concurrency as usize));
        let alerts_written = Arc::new(Notify::new());
        tokio::spawn(run(store, rx, commits.clone(), alerts_written.clone()));
        Ledger {
            tx,
            commits,
            concurrency,
            alerts_written,
        }
    }

    /// Notified after every commit that created alert deliveries. The
    /// dispatcher waits on it (`notified()`); a notification that arrives
    /// while it is busy is kept (one permit), so none is lost.
    pub fn alerts_written(&self) -> Arc<Notify> {
        self.alerts_written.clone()
    }

    /// Records one event; returns once it is durable (or known duplicate).
    pub async fn record(&self, row: UsageRow) -> Result<UsageOutcome, LedgerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { row, reply })
            .await
            .map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    /// Waits until no commit is in flight (shutdown).
    pub async fn drain(&self) {
        if let Ok(all) = self.commits.acquire_many(self.concurrency).await {
            drop(all);
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Pending>, commits: Arc<Semaphore>, alerts_written: Arc<Notify>) {
    while let Some(first) = rx.recv().await {
        // Wait for a commit slot first, so events keep gathering meanwhile.
        let Ok(permit) = commits.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let store = store.clone();
        let alerts_written = alerts_written.clone();
        // The commit runs on its own task: a client that hangs up does not
        // cancel a transaction other events depend on.
        tokio::spawn(async move {
            let rows: Vec<UsageRow> = batch.iter().map(|p| p.row.clone()).collect();
            let started = std::time::Instant::now();
            let result = tracing::Instrument::instrument(
                store.record_usage_batch(&rows),
                tracing::debug_span!("ledger_commit", events = rows.len()),
            )
            .await;
            metrics::histogram!("tollgate_ledger_commit_duration_seconds").record(started.elapsed().as_secs_f64());
            drop(permit);
            metrics::histogram!("tollgate_ledger_batch_size").record(rows.len() as f64);
            if let Ok(recorded) = &result {
                let fired = recorded.alerts;
                if fired.threshold > 0 {
                    metrics::counter!("tollgate_alerts_fired_total", "kind" => "threshold").increment(fired.threshold);
                }
                if fired.overage > 0 {
                    metrics::counter!("tollgate_alerts_fired_total", "kind" => "overage").increment(fired.overage);
                }
                if fired.deliveries > 0 {
                    // Before the replies go out: the dispatcher is already
                    // on its way when the caller hears back.
                    alerts_written.notify_one();
                }
            }
            match result.map(|recorded| recorded.outcomes) {
                Ok(outcomes) if outcomes.len() == batch.len() => {
                    for (pending, outcome) in batch.into_iter().zip(outcomes) {
                        let _ = pending.reply.send(Ok(outcome));
                    }
                }
                Ok(_) => {
                    tracing::error!("ledger returned the wrong number of outcomes");
                    let err = LedgerError::Store(Arc::new(StoreError::Corrupt {
                        column: "model_usage",
                        value: "outcome count mismatch".into(),
                    }));
                    for pending in batch {
                        let _ = pending.reply.send(Err(err.clone()));
                    }
                }
                Err(err) => {
                    metrics::counter!("tollgate_ledger_commit_errors_total").increment(1);
                    tracing::warn!(error = %err, events = rows.len(), "ledger commit failed");
                    let err = LedgerError::Store(Arc::new(err));
                    for pending in batch {
                        let _ = pending.reply.send(Err(err.clone()));
                    }
                }
            }
        });
    }
}
