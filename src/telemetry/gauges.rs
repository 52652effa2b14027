//! Gauges read from their source when Prometheus scrapes, instead of being
//! kept up to date on every change: the pool's connections, the cluster's
//! members, and — at most every [`OVER_BUDGET_EVERY`], since it is a query
//! — the entities over budget.

use crate::limits::calendar::{Period, now_ms};
use crate::node::ClusterNode;
use crate::store::Store;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How often `tollgate_entities_over_budget` is recounted.
pub const OVER_BUDGET_EVERY: Duration = Duration::from_secs(30);

/// The longest a scrape waits for that count (a slow or unreachable store
/// must not make `/metrics` slow; the gauge keeps its last value).
const OVER_BUDGET_TIMEOUT: Duration = Duration::from_millis(500);

/// When the over-budget count was last taken.
#[derive(Debug, Default)]
pub struct ScrapeGauges {
    over_budget_at: Mutex<Option<Instant>>,
}

impl ScrapeGauges {
    /// Sets every scrape-time gauge.
    pub async fn refresh(&self, store: &Store, cluster: &ClusterNode) {
        let backend = store.backend();
        let pool = store.pool_stats();
        metrics::gauge!("tollgate_db_pool_connections", "backend" => backend, "state" => "in_use")
            .set(f64::from(pool.in_use()));
        metrics::gauge!("tollgate_db_pool_connections", "backend" => backend, "state" => "idle")
            .set(f64::from(pool.idle));
        metrics::gauge!("tollgate_db_pool_max_connections", "backend" => backend).set(f64::from(pool.max));
        for (status, n) in cluster.members_by_status() {
            metrics::gauge!("tollgate_cluster_members", "status" => status).set(n as f64);
        }
        // One scrape at a time recounts; others keep the last value.
        let Ok(mut at) = self.over_budget_at.try_lock() else {
            return;
        };
        if at.is_some_and(|t| t.elapsed() < OVER_BUDGET_EVERY) {
            return;
        }
        *at = Some(Instant::now());
        let period = Period::containing(now_ms());
        match tokio::time::timeout(OVER_BUDGET_TIMEOUT, store.entities_over_budget(period)).await {
            Ok(Ok(n)) => metrics::gauge!("tollgate_entities_over_budget").set(n as f64),
            Ok(Err(err)) => tracing::debug!(error = %err, "could not count entities over budget"),
            Err(_) => tracing::debug!("counting entities over budget timed out"),
        }
    }
}
