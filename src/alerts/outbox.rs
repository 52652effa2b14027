//! The delivery outbox as the dispatcher sees it: claim due deliveries
//! under a lease, then record each outcome. The rows live in
//! `alert_deliveries`, written by the ledger in the same transaction as the
//! spend that fired the alert, so an alert is deliverable exactly when it
//! is durable. [`Store`] implements it; tests use an in-memory one
//! (`alerts::testing`). The job types are the store's.

pub use crate::limits::alerts::AlertKind;
pub use crate::store::{AlertFacts, ChannelKind, ChannelTarget, DeliveryJob};
use crate::store::{Store, StoreResult};
use async_trait::async_trait;
use std::time::Duration;
use uuid::Uuid;

/// The outbox operations the dispatcher needs. Every `mark_*` applies only
/// while `owner` still holds the lease (returns false otherwise: the lease
/// expired and another claim took the row over, which then decides).
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Claims up to `limit` pending deliveries whose `next_attempt_at` has
    /// come and whose lease (if any) has expired, for `lease`, counting an
    /// attempt on each.
    async fn claim(&self, owner: &str, lease: Duration, limit: usize) -> StoreResult<Vec<DeliveryJob>>;
    async fn mark_delivered(&self, id: Uuid, owner: &str) -> StoreResult<bool>;
    /// [`Outbox::mark_delivered`] for many at once (one write); returns how
    /// many were still leased to `owner`.
    async fn mark_delivered_many(&self, ids: &[Uuid], owner: &str) -> StoreResult<u64>;
    async fn mark_retry(&self, id: Uuid, owner: &str, next_attempt_at_ms: i64, error: &str) -> StoreResult<bool>;
    async fn mark_dead(&self, id: Uuid, owner: &str, error: &str) -> StoreResult<bool>;
    /// Deliveries still pending (the outbox depth gauge).
    async fn pending(&self) -> StoreResult<u64>;
    /// Drops every lease `owner` holds: a node starting again has nothing
    /// in flight, so its deliveries need not wait for their leases to run
    /// out (after a crash they are sent again at once).
    async fn release(&self, owner: &str) -> StoreResult<u64>;
}

#[async_trait]
impl Outbox for Store {
    async fn claim(&self, owner: &str, lease: Duration, limit: usize) -> StoreResult<Vec<DeliveryJob>> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self.claim_deliveries(owner, limit, lease_ms).await
    }

    async fn mark_delivered(&self, id: Uuid, owner: &str) -> StoreResult<bool> {
        Store::mark_delivered(self, id, owner).await
    }

    async fn mark_delivered_many(&self, ids: &[Uuid], owner: &str) -> StoreResult<u64> {
        Store::mark_delivered_many(self, ids, owner).await
    }

    async fn mark_retry(&self, id: Uuid, owner: &str, next_attempt_at_ms: i64, error: &str) -> StoreResult<bool> {
        Store::mark_retry(self, id, owner, next_attempt_at_ms, error).await
    }

    async fn mark_dead(&self, id: Uuid, owner: &str, error: &str) -> StoreResult<bool> {
        Store::mark_dead(self, id, owner, error).await
    }

    async fn pending(&self) -> StoreResult<u64> {
        self.outbox_depth().await
    }

    async fn release(&self, owner: &str) -> StoreResult<u64> {
        self.release_leases(owner).await
    }
}
