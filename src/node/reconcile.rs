//! Periodic reconciliation of a cluster node's caches with the store.
//!
//! Changes reach other nodes at once through invalidation messages, but a
//! node that was cut off (a partition, a restart of the sender mid-way)
//! misses them. Every `every`, each node re-reads memberships, API keys,
//! tiers and prices, so a missed change is corrected within that time.

use crate::catalog::Catalog;
use crate::identity::Directory;
use crate::identity::api_keys::ApiKeys;
use crate::store::{Store, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// How often a cluster node re-reads its caches.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// The caches a node keeps of the store.
pub struct Caches {
    pub store: Store,
    pub directory: Arc<Directory>,
    pub keys: ApiKeys,
    pub catalog: Arc<Catalog>,
}

impl Caches {
    /// Re-reads everything once.
    pub async fn reconcile(&self) -> Result<(), StoreError> {
        self.directory.replace_all(self.store.load_memberships().await?);
        self.keys.reload_all().await?;
        self.catalog.reload(&self.store).await
    }

    /// Reconciles every `every` until aborted.
    pub fn spawn(self, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the caches were just loaded
            loop {
                tick.tick().await;
                if let Err(err) = self.reconcile().await {
                    tracing::warn!(error = %err, "could not reconcile caches with the store; will retry");
                }
            }
        })
    }
}
