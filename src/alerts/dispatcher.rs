//! The delivery loop of a node.
//!
//! Claims due deliveries (a batch, under a lease), sends them concurrently
//! (at most `--alert-concurrency` in flight) and records each outcome. It
//! sleeps until woken: by the ledger right after a commit that created
//! deliveries (so an alert leaves within milliseconds of the spend that
//! fired it), by a finished send (a slot is free), by a retry coming due
//! on this node, or at the latest after `--alert-poll-ms` (deliveries
//! created on other nodes, leases of nodes that died).

use super::backoff::{Backoff, Next};
use super::delivery::Attempt;
use super::outbox::{DeliveryJob, Outbox};
use super::{AlertConfig, Senders};
use crate::limits::calendar::now_ms;
use crate::store::MAX_DELIVERED_BATCH;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

/// How long a stopping dispatcher waits for the sends in flight: a
/// receiver that hangs must not hold up a node's shutdown for the whole
/// `--alert-timeout-ms`.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// Timing of the loop.
#[derive(Debug, Clone, Copy)]
pub struct DispatchSettings {
    pub lease: Duration,
    pub concurrency: usize,
    pub poll: Duration,
    pub backoff: Backoff,
}

impl DispatchSettings {
    pub fn from_config(config: &AlertConfig) -> DispatchSettings {
        DispatchSettings {
            lease: config.lease(),
            concurrency: usize::try_from(config.alert_concurrency).unwrap_or(64).max(1),
            poll: Duration::from_millis(config.alert_poll_ms),
            backoff: Backoff::new(Duration::from_millis(config.alert_retry_base_ms)),
        }
    }
}

/// A node's dispatcher, before it runs.
pub struct Dispatcher {
    outbox: Arc<dyn Outbox>,
    senders: Senders,
    /// The lease owner: the node id, stable across restarts, so a node
    /// that starts again can take back what it held when it died.
    owner: String,
    settings: DispatchSettings,
    wake: Arc<Notify>,
    /// Delivered ids on their way to [`record_delivered`]: set when the
    /// loop starts, taken when it ends (which ends the recorder).
    delivered: parking_lot::Mutex<Option<mpsc::UnboundedSender<Uuid>>>,
}

/// A running dispatcher.
pub struct DispatcherHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl DispatcherHandle {
    /// Stops claiming and gives the sends in flight [`STOP_GRACE`] to
    /// finish and be recorded; the rest are cut off. A delivery cut off
    /// keeps its lease: this node takes it back when it starts again (or
    /// another node when the lease runs out) and sends it again, with the
    /// same `webhook-id`.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(STOP_GRACE, &mut self.task).await.is_err() {
            // Dropping the loop's JoinSet aborts its sends.
            self.task.abort();
            let _ = self.task.await;
        }
    }
}

impl Dispatcher {
    /// `wake` is the `Notify` the ledger signals (`notify_one`) after a
    /// commit that created deliveries.
    pub fn new(
        outbox: Arc<dyn Outbox>,
        senders: Senders,
        node_id: &str,
        settings: DispatchSettings,
        wake: Arc<Notify>,
    ) -> Dispatcher {
        Dispatcher {
            outbox,
            senders,
            owner: node_id.to_string(),
            settings,
            wake,
            delivered: parking_lot::Mutex::new(None),
        }
    }

    pub fn spawn(self) -> DispatcherHandle {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(Arc::new(self).run(stopped));
        DispatcherHandle { stop, task }
    }

    async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let (delivered, to_record) = mpsc::unbounded_channel();
        *self.delivered.lock() = Some(delivered);
        let recorder = tokio::spawn(record_delivered(self.outbox.clone(), self.owner.clone(), to_record));
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        let mut in_flight = JoinSet::new();
        let mut depth_due = tokio::time::Instant::now();
        // Whatever this node held when it last stopped (or crashed) is not
        // in flight any more: send it again now rather than after the lease.
        match self.outbox.release(&self.owner).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deliveries = n, "took back alert deliveries leased before a restart"),
            Err(e) => tracing::warn!(error = %e, "could not release this node's old alert leases"),
        }
        loop {
            if *stopped.borrow() {
                break;
            }
            while in_flight.try_join_next().is_some() {}
            let free = slots.available_permits();
            let mut filled = false;
            if free > 0 {
                match self.outbox.claim(&self.owner, self.settings.lease, free).await {
                    Ok(jobs) => {
                        filled = jobs.len() == free;
                        for job in jobs {
                            let Ok(slot) = slots.clone().try_acquire_owned() else {
                                break;
                            };
                            let this = self.clone();
                            let slots = slots.clone();
                            in_flight.spawn(async move {
                                this.attempt(job).await;
                                drop(slot);
                                // Claim more once half the slots are free
                                // (or all, with one slot): a claim is a
                                // write, and one per finished send would
                                // double the outbox's writes in a burst.
                                if slots.available_permits() >= this.settings.concurrency.div_ceil(2) {
                                    this.wake.notify_one();
                                }
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "could not claim alert deliveries"),
                }
            }
            if tokio::time::Instant::now() >= depth_due {
                depth_due = tokio::time::Instant::now() + self.settings.poll;
                match self.outbox.pending().await {
                    Ok(depth) => metrics::gauge!("tollgate_alert_outbox_depth").set(depth as f64),
                    Err(e) => tracing::debug!(error = %e, "could not read the alert outbox depth"),
                }
            }
            if filled {
                // Every slot was used: more may be due. The next round
                // claims as soon as a send finishes (it wakes us).
                if slots.available_permits() > 0 {
                    continue;
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
                _ = stopped.changed() => {}
            }
        }
        while in_flight.join_next().await.is_some() {}
        // Every send is done: the recorder writes what is left and ends
        // once its sender is gone.
        self.delivered.lock().take();
        let _ = recorder.await;
    }

    /// One attempt of one delivery, and its outcome recorded.
    async fn attempt(&self, job: DeliveryJob) {
        let kind = job.channel.kind.as_str();
        let outcome = self.senders.send(&job, now_ms()).await;
        let now = now_ms();
        let outcome = match outcome {
            Attempt::Retry(error) => {
                let jitter = rand::rng().random::<f64>();
                match self.settings.backoff.next(job.created_at_ms, now, job.attempts, jitter) {
                    Next::RetryAt(at) => {
                        self.record(&job, self.outbox.mark_retry(job.id, &self.owner, at, &error).await);
                        self.wake_at(at - now);
                        Attempt::Retry(error)
                    }
                    Next::GiveUp => Attempt::Dead(format!("gave up after 24 h: {error}")),
                }
            }
            other => other,
        };
        metrics::counter!("tollgate_alert_deliveries_total", "channel_kind" => kind, "outcome" => outcome.label())
            .increment(1);
        match outcome {
            Attempt::Delivered => {
                let latency_ms = (now - job.alert.created_at_ms).max(0);
                metrics::histogram!("tollgate_alert_delivery_latency_seconds").record(latency_ms as f64 / 1000.0);
                // Written in batches by the recorder; if that were lost,
                // the lease runs out and the alert is sent again.
                let queued = self.delivered.lock().as_ref().is_some_and(|tx| tx.send(job.id).is_ok());
                if !queued {
                    self.record(&job, self.outbox.mark_delivered(job.id, &self.owner).await);
                }
            }
            Attempt::Dead(error) => {
                metrics::counter!("tollgate_alert_deliveries_dead_total").increment(1);
                tracing::warn!(delivery = %job.id, channel = %job.channel.id, attempts = job.attempts, error = %error, "alert delivery is dead");
                self.record(&job, self.outbox.mark_dead(job.id, &self.owner, &error).await);
            }
            Attempt::Retry(error) => {
                tracing::debug!(delivery = %job.id, channel = %job.channel.id, attempts = job.attempts, error = %error, "alert delivery will be retried");
            }
        }
    }

    /// Logs an outcome that could not be recorded. The lease then expires
    /// and the delivery is tried again: at least once, never lost.
    fn record(&self, job: &DeliveryJob, written: crate::store::StoreResult<bool>) {
        match written {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(delivery = %job.id, "alert delivery lease was lost before its outcome was recorded")
            }
            Err(e) => tracing::warn!(delivery = %job.id, error = %e, "could not record an alert delivery outcome"),
        }
    }

    /// Wakes the loop when a retry scheduled on this node comes due, so
    /// retries keep their backoff gaps instead of waiting for the poll.
    fn wake_at(&self, in_ms: i64) {
        let wake = self.wake.clone();
        let delay = Duration::from_millis(u64::try_from(in_ms).unwrap_or(0));
        if delay > self.settings.poll {
            return; // the poll comes first anyway
        }
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            wake.notify_one();
        });
    }
}

/// Writes delivered outcomes in batches: while one write is in flight the
/// next batch gathers (the ledger's group commit, for outcomes), so a
/// burst of a thousand deliveries costs a handful of transactions, not a
/// thousand. Ends when every sender is dropped and the queue is empty.
async fn record_delivered(outbox: Arc<dyn Outbox>, owner: String, mut ids: mpsc::UnboundedReceiver<Uuid>) {
    let mut batch = Vec::new();
    while ids.recv_many(&mut batch, MAX_DELIVERED_BATCH).await > 0 {
        match outbox.mark_delivered_many(&batch, &owner).await {
            Ok(marked) if marked as usize == batch.len() => {}
            Ok(marked) => tracing::info!(
                delivered = batch.len(),
                recorded = marked,
                "some alert delivery leases were lost before their outcome was recorded"
            ),
            Err(e) => {
                tracing::warn!(error = %e, deliveries = batch.len(), "could not record delivered alerts; they will be sent again")
            }
        }
        batch.clear();
    }
}
