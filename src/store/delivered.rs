//! Recording many delivered alerts in one statement (the dispatcher's
//! group commit of outcomes). A burst of alerts otherwise costs one write
//! transaction per delivery, and on SQLite every one of them waits for the
//! single writer behind the ledger's commits.

use super::{Store, StoreResult};
use uuid::Uuid;

/// Most ids in one statement.
pub const MAX_DELIVERED_BATCH: usize = 500;

impl Store {
    /// Marks the claimed deliveries `ids` delivered, each only if `node`
    /// still holds its lease (like [`Store::mark_delivered`]); returns how
    /// many were marked. Callers pass at most [`MAX_DELIVERED_BATCH`].
    pub async fn mark_delivered_many(&self, ids: &[Uuid], node: &str) -> StoreResult<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        dispatch!(self, s => s.mark_delivered_many(ids, node).await)
    }
}
