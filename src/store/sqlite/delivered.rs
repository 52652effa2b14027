//! SQLite: many delivered alerts in one statement (see `store/delivered.rs`).

use super::SqliteStore;
use crate::store::{StoreError, StoreResult};
use uuid::Uuid;

impl SqliteStore {
    pub(in crate::store) async fn mark_delivered_many(&self, ids: &[Uuid], node: &str) -> StoreResult<u64> {
        let ids: Vec<String> = ids.iter().map(|id| id.hyphenated().to_string()).collect();
        let ids = serde_json::to_string(&ids).map_err(|e| StoreError::Corrupt {
            column: "alert_deliveries.id",
            value: e.to_string(),
        })?;
        let done = sqlx::query(concat!(
            "UPDATE alert_deliveries SET status = 'delivered', last_error = NULL, delivered_at = ",
            now_ms_sql!(),
            ", lease_owner = NULL, lease_until = NULL \
             WHERE id IN (SELECT value FROM json_each($1)) AND lease_owner = $2 AND status = 'pending'"
        ))
        .bind(ids)
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
