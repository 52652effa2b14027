//! Cluster ownership fencing, Postgres flavour.

use super::PgStore;
use crate::entity::EntityKey;
use crate::store::{CounterDelta, StoreResult, fenced_rows};

impl PgStore {
    pub(in crate::store) async fn claim_entity(&self, entity: &EntityKey, node_id: &str) -> StoreResult<u64> {
        let epoch: i64 = sqlx::query_scalar(
            "INSERT INTO entity_owners (entity, owner, epoch) VALUES ($1, $2, 1) \
             ON CONFLICT (entity) DO UPDATE \
             SET owner = excluded.owner, epoch = entity_owners.epoch + 1, claimed_at = now() \
             RETURNING epoch",
        )
        .bind(entity.as_str())
        .bind(node_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(epoch).unwrap_or(0))
    }

    /// Adds the deltas whose epoch is still the entity's current one, in
    /// one statement; returns the entities whose deltas were refused. The
    /// owner rows are share-locked, so a concurrent claim waits for this
    /// write (or this write sees the claim) — never half of each.
    pub(in crate::store) async fn flush_fenced(&self, deltas: &[CounterDelta]) -> StoreResult<Vec<EntityKey>> {
        let rows = fenced_rows(deltas);
        let mut entities = Vec::with_capacity(rows.len());
        let mut windows = Vec::with_capacity(rows.len());
        let mut starts = Vec::with_capacity(rows.len());
        let mut counts = Vec::with_capacity(rows.len());
        let mut epochs = Vec::with_capacity(rows.len());
        for row in &rows {
            entities.push(row.entity.as_str());
            windows.push(row.window.as_str());
            starts.push(row.start);
            counts.push(row.delta);
            epochs.push(i64::try_from(row.epoch).unwrap_or(i64::MAX));
        }
        let written: Vec<String> = sqlx::query_scalar(
            "WITH d AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::int8[]) \
                        AS t(e, w, s, c, ep)), \
                  ok AS (SELECT d.e, d.w, d.s, d.c FROM d \
                         JOIN entity_owners o ON o.entity = d.e AND o.epoch = d.ep FOR SHARE OF o) \
             INSERT INTO entity_counters (entity, window_kind, window_start, count) \
             SELECT e, w, s, c FROM ok \
             ON CONFLICT (entity, window_kind, window_start) \
             DO UPDATE SET count = entity_counters.count + excluded.count \
             RETURNING entity",
        )
        .bind(&entities)
        .bind(&windows)
        .bind(&starts)
        .bind(&counts)
        .bind(&epochs)
        .fetch_all(&self.pool)
        .await?;
        let written: std::collections::HashSet<&str> = written.iter().map(String::as_str).collect();
        let mut refused: Vec<EntityKey> = rows
            .iter()
            .filter(|r| !written.contains(r.entity.as_str()))
            .map(|r| r.entity.clone())
            .collect();
        refused.dedup();
        Ok(refused)
    }
}
