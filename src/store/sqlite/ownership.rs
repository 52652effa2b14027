//! Cluster ownership fencing, SQLite flavour (a cluster runs on Postgres;
//! this keeps the two backends interchangeable and tested alike).

use super::SqliteStore;
use crate::entity::EntityKey;
use crate::store::{CounterDelta, StoreResult, fenced_rows};

impl SqliteStore {
    pub(in crate::store) async fn claim_entity(&self, entity: &EntityKey, node_id: &str) -> StoreResult<u64> {
        let epoch: i64 = sqlx::query_scalar(
            "INSERT INTO entity_owners (entity, owner, epoch) VALUES ($1, $2, 1) \
             ON CONFLICT (entity) DO UPDATE \
             SET owner = excluded.owner, epoch = epoch + 1, \
                 claimed_at = CAST(unixepoch('subsec') * 1000 AS INTEGER) \
             RETURNING epoch",
        )
        .bind(entity.as_str())
        .bind(node_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(epoch).unwrap_or(0))
    }

    /// Adds the deltas whose epoch is still current, in one write
    /// transaction; returns the entities whose deltas were refused.
    pub(in crate::store) async fn flush_fenced(&self, deltas: &[CounterDelta]) -> StoreResult<Vec<EntityKey>> {
        let rows = fenced_rows(deltas);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut refused = Vec::new();
        for row in &rows {
            let current: Option<i64> = sqlx::query_scalar("SELECT epoch FROM entity_owners WHERE entity = $1")
                .bind(row.entity.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if current.and_then(|e| u64::try_from(e).ok()) != Some(row.epoch) {
                if refused.last() != Some(&row.entity) {
                    refused.push(row.entity.clone());
                }
                continue;
            }
            sqlx::query(
                "INSERT INTO entity_counters (entity, window_kind, window_start, count) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (entity, window_kind, window_start) DO UPDATE SET count = count + excluded.count",
            )
            .bind(row.entity.as_str())
            .bind(row.window.as_str())
            .bind(row.start)
            .bind(row.delta)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(refused)
    }
}
