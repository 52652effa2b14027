//! An in-memory [`Outbox`] for tests of the dispatcher and the senders
//! without a database: the same claim and lease rules as the store.

use super::outbox::{DeliveryJob, Outbox};
use crate::limits::calendar::now_ms;
use crate::store::StoreResult;
use async_trait::async_trait;
use parking_lot::Mutex;
use std::time::Duration;
use uuid::Uuid;

/// A delivery's state in the memory outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub job: DeliveryJob,
    /// `pending`, `delivered` or `dead`.
    pub status: &'static str,
    pub next_attempt_at_ms: i64,
    pub lease: Option<(String, i64)>,
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
pub struct MemoryOutbox {
    rows: Mutex<Vec<Row>>,
}

impl MemoryOutbox {
    /// Adds a pending delivery, due now. `job.attempts` should be 0.
    pub fn push(&self, job: DeliveryJob) {
        self.rows.lock().push(Row {
            job,
            status: "pending",
            next_attempt_at_ms: 0,
            lease: None,
            last_error: None,
        });
    }

    pub fn rows(&self) -> Vec<Row> {
        self.rows.lock().clone()
    }

    fn with_leased<T>(&self, id: Uuid, owner: &str, f: impl FnOnce(&mut Row) -> T) -> Option<T> {
        let mut rows = self.rows.lock();
        let row = rows.iter_mut().find(|r| r.job.id == id && r.status == "pending")?;
        match &row.lease {
            Some((o, _)) if o == owner => {
                row.lease = None;
                Some(f(row))
            }
            _ => None,
        }
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn claim(&self, owner: &str, lease: Duration, limit: usize) -> StoreResult<Vec<DeliveryJob>> {
        let now = now_ms();
        let until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let mut rows = self.rows.lock();
        let mut due: Vec<&mut Row> = rows
            .iter_mut()
            .filter(|r| {
                r.status == "pending" && r.next_attempt_at_ms <= now && r.lease.as_ref().is_none_or(|(_, u)| *u < now)
            })
            .collect();
        due.sort_by_key(|r| r.next_attempt_at_ms);
        Ok(due
            .into_iter()
            .take(limit)
            .map(|r| {
                r.lease = Some((owner.to_string(), until));
                r.job.attempts += 1;
                r.job.clone()
            })
            .collect())
    }

    async fn mark_delivered(&self, id: Uuid, owner: &str) -> StoreResult<bool> {
        Ok(self.with_leased(id, owner, |r| r.status = "delivered").is_some())
    }

    async fn mark_delivered_many(&self, ids: &[Uuid], owner: &str) -> StoreResult<u64> {
        let mut marked = 0;
        for id in ids {
            marked += u64::from(self.with_leased(*id, owner, |r| r.status = "delivered").is_some());
        }
        Ok(marked)
    }

    async fn mark_retry(&self, id: Uuid, owner: &str, next_attempt_at_ms: i64, error: &str) -> StoreResult<bool> {
        Ok(self
            .with_leased(id, owner, |r| {
                r.next_attempt_at_ms = next_attempt_at_ms;
                r.last_error = Some(error.to_string());
            })
            .is_some())
    }

    async fn mark_dead(&self, id: Uuid, owner: &str, error: &str) -> StoreResult<bool> {
        Ok(self
            .with_leased(id, owner, |r| {
                r.status = "dead";
                r.last_error = Some(error.to_string());
            })
            .is_some())
    }

    async fn release(&self, owner: &str) -> StoreResult<u64> {
        let mut released = 0;
        for row in self.rows.lock().iter_mut() {
            if row.lease.as_ref().is_some_and(|(o, _)| o == owner) {
                row.lease = None;
                released += 1;
            }
        }
        Ok(released)
    }

    async fn pending(&self) -> StoreResult<u64> {
        Ok(self.rows.lock().iter().filter(|r| r.status == "pending").count() as u64)
    }
}
