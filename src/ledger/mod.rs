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

mod batching;

pub use batching::BatchPolicy;

use crate::store::{Store, StoreError, UsageOutcome, UsageRow};
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

/// Largest number of events in one transaction.
pub const MAX_BATCH: usize = 1000;

/// Postgres: up to two transactions at once, the second only with a batch
/// of at least 32 events (see [`BatchPolicy`]). Measured with `oha -c 256`
/// (benches/README.md): one at a time gave 6 200 events/s at 127 events
/// per commit, two with this floor 8 700/s at 74, three with a floor of
/// 16 7 700/s at 49 (more Postgres CPU per event); Postgres's CPU per event
/// barely moved with batch size, so overlapping hides commit latency.
pub const POSTGRES_POLICY: BatchPolicy = BatchPolicy {
    max_batch: MAX_BATCH,
    concurrency: 2,
    overlap_min: 32,
};

/// SQLite: one writer.
pub const SQLITE_POLICY: BatchPolicy = BatchPolicy::serial(MAX_BATCH);

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
    reply: Reply,
}

type Reply = oneshot::Sender<Result<UsageOutcome, LedgerError>>;

/// Handle to the group-commit writer. Cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::Sender<Pending>,
    commits: Arc<Semaphore>,
    concurrency: u32,
    alerts_written: Arc<Notify>,
}

impl Ledger {
    /// Starts the writer with its batching policy.
    pub fn spawn(store: Store, policy: BatchPolicy) -> Ledger {
        let concurrency = u32::try_from(policy.concurrency.max(1)).unwrap_or(1);
        let (tx, rx) = mpsc::channel(policy.max_batch.max(1) * 8);
        let commits = Arc::new(Semaphore::new(concurrency as usize));
        let alerts_written = Arc::new(Notify::new());
        tokio::spawn(run(store, rx, policy, commits.clone(), alerts_written.clone()));
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

/// The writer: gathers events while commits are in flight and starts the
/// next one when the policy says so.
async fn run(
    store: Store,
    mut rx: mpsc::Receiver<Pending>,
    policy: BatchPolicy,
    commits: Arc<Semaphore>,
    alerts_written: Arc<Notify>,
) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
    let mut queue: Vec<Pending> = Vec::with_capacity(policy.max_batch);
    let mut in_flight = 0usize;
    let mut open = true;
    loop {
        while open && queue.len() < policy.max_batch {
            match rx.try_recv() {
                Ok(next) => queue.push(next),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => open = false,
            }
        }
        while policy.should_commit(in_flight, queue.len()) {
            let Ok(permit) = commits.clone().acquire_owned().await else {
                return;
            };
            let rest = queue.split_off(policy.take(queue.len()));
            let batch = std::mem::replace(&mut queue, rest);
            in_flight += 1;
            let (store, alerts_written, done) = (store.clone(), alerts_written.clone(), done_tx.clone());
            // The commit runs on its own task: a client that hangs up does
            // not cancel a transaction other events depend on.
            tokio::spawn(async move {
                commit(&store, batch, &alerts_written).await;
                drop(permit);
                let _ = done.send(());
            });
        }
        if !open && queue.is_empty() && in_flight == 0 {
            return;
        }
        tokio::select! {
            Some(()) = done_rx.recv() => in_flight -= 1,
            next = rx.recv(), if open && queue.len() < policy.max_batch => match next {
                Some(next) => queue.push(next),
                None => open = false,
            },
        }
    }
}

/// Commits one batch and answers every event in it.
async fn commit(store: &Store, batch: Vec<Pending>, alerts_written: &Notify) {
    let (rows, replies): (Vec<UsageRow>, Vec<Reply>) = batch.into_iter().map(|p| (p.row, p.reply)).unzip();
    let started = std::time::Instant::now();
    let result = tracing::Instrument::instrument(
        store.record_usage_batch(&rows),
        tracing::debug_span!("ledger_commit", events = rows.len()),
    )
    .await;
    metrics::histogram!("tollgate_ledger_commit_duration_seconds").record(started.elapsed().as_secs_f64());
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
            // Before the replies go out: the dispatcher is already on its
            // way when the caller hears back.
            alerts_written.notify_one();
        }
    }
    match result.map(|recorded| recorded.outcomes) {
        Ok(outcomes) if outcomes.len() == replies.len() => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
        }
        Ok(_) => {
            tracing::error!("ledger returned the wrong number of outcomes");
            let err = LedgerError::Store(Arc::new(StoreError::Corrupt {
                column: "model_usage",
                value: "outcome count mismatch".into(),
            }));
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
        Err(err) => {
            metrics::counter!("tollgate_ledger_commit_errors_total").increment(1);
            tracing::warn!(error = %err, events = rows.len(), "ledger commit failed");
            let err = LedgerError::Store(Arc::new(err));
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}
