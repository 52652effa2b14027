//! Postgres: many delivered alerts in one statement (see `store/delivered.rs`).

use super::PgStore;
use crate::store::StoreResult;
use uuid::Uuid;

impl PgStore {
    pub(in crate::store) async fn mark_delivered_many(&self, ids: &[Uuid], node: &str) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE alert_deliveries SET status = 'delivered', delivered_at = now(), last_error = NULL, \
                 lease_owner = NULL, lease_until = NULL \
             WHERE id = ANY($1) AND lease_owner = $2 AND status = 'pending'",
        )
        .bind(ids)
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
