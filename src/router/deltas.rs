//! Request-counter deltas waiting to be flushed.
//!
//! Actors add to this on every admission (and subtract on undo); the
//! flusher swaps it out every `flush_interval` and writes one batched
//! upsert. Deltas commute, so the order of flushes never matters. Sharded
//! to keep the lock an actor takes per check uncontended.

use crate::entity::EntityKey;
use crate::limits::entity::Admitted;
use crate::store::{CounterDelta, WindowKind};
use foldhash::fast::RandomState;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::BuildHasher;

const SHARDS: usize = 16;

/// One entity's pending rows, with the ownership epoch they are written
/// under (0 on a single node).
#[derive(Debug, Default)]
struct Entry {
    epoch: u64,
    rows: Vec<(WindowKind, i64, i64)>,
}

type Pending = HashMap<EntityKey, Entry, RandomState>;

/// Pending counter deltas, by entity.
#[derive(Debug)]
pub struct CounterDeltas {
    shards: Box<[Mutex<Pending>]>,
    hasher: RandomState,
}

impl Default for CounterDeltas {
    fn default() -> Self {
        CounterDeltas {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(RandomState::default())))
                .collect(),
            hasher: RandomState::default(),
        }
    }
}

impl CounterDeltas {
    fn shard(&self, key: &EntityKey) -> &Mutex<Pending> {
        let h = self.hasher.hash_one(key.as_str()) as usize;
        &self.shards[h % SHARDS]
    }

    /// Adds `delta` to a window's pending count.
    pub fn add(&self, key: &EntityKey, window: WindowKind, start_ms: i64, delta: i64, epoch: u64) {
        let mut shard = self.shard(key).lock();
        let entry = match shard.get_mut(key) {
            Some(entry) => entry,
            None => shard.entry(key.clone()).or_default(),
        };
        entry.epoch = entry.epoch.max(epoch);
        bump(&mut entry.rows, window, start_ms, delta);
    }

    /// Records one admission's request counts in both windows (or, with a
    /// negative `delta`, takes them back), under one lock.
    pub fn add_admission(&self, key: &EntityKey, admitted: &Admitted, delta: i64, epoch: u64) {
        let mut shard = self.shard(key).lock();
        let entry = match shard.get_mut(key) {
            Some(entry) => entry,
            None => shard.entry(key.clone()).or_default(),
        };
        entry.epoch = entry.epoch.max(epoch);
        for (window, start) in [
            (WindowKind::Day, admitted.day_start_ms),
            (WindowKind::Month, admitted.month_start_ms),
        ] {
            bump(&mut entry.rows, window, start, delta);
        }
    }

    /// The deltas pending for one entity (read by an actor that starts).
    pub fn pending(&self, key: &EntityKey) -> Vec<(WindowKind, i64, i64)> {
        self.shard(key)
            .lock()
            .get(key)
            .map(|e| e.rows.clone())
            .unwrap_or_default()
    }

    /// Takes everything pending, leaving it empty.
    pub fn take(&self) -> Vec<CounterDelta> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let taken = std::mem::take(&mut *shard.lock());
            for (entity, entry) in taken {
                push_rows(&mut out, &entity, entry);
            }
        }
        out
    }

    /// Takes what is pending for one entity (its ownership is moving: the
    /// old owner writes its own deltas before the new owner claims it).
    pub fn take_entity(&self, key: &EntityKey) -> Vec<CounterDelta> {
        let mut out = Vec::new();
        if let Some(entry) = self.shard(key).lock().remove(key) {
            push_rows(&mut out, key, entry);
        }
        out
    }

    /// Puts back deltas whose write failed, to be retried next flush.
    pub fn restore(&self, deltas: Vec<CounterDelta>) {
        for d in deltas {
            self.add(&d.entity, d.window, d.window_start_ms, d.delta, d.epoch);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.shards.iter().all(|s| s.lock().is_empty())
    }
}

fn push_rows(out: &mut Vec<CounterDelta>, entity: &EntityKey, entry: Entry) {
    for (window, window_start_ms, delta) in entry.rows {
        if delta != 0 {
            out.push(CounterDelta {
                entity: entity.clone(),
                window,
                window_start_ms,
                delta,
                epoch: entry.epoch,
            });
        }
    }
}

fn bump(rows: &mut Vec<(WindowKind, i64, i64)>, window: WindowKind, start_ms: i64, delta: i64) {
    match rows.iter_mut().find(|(w, s, _)| *w == window && *s == start_ms) {
        Some(row) => row.2 += delta,
        None => rows.push((window, start_ms, delta)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_add_up_and_drain() {
        let d = CounterDeltas::default();
        let k = EntityKey::user("u1").unwrap();
        d.add(&k, WindowKind::Day, 5, 1, 0);
        d.add(&k, WindowKind::Day, 5, 2, 0);
        d.add(&k, WindowKind::Month, 0, 3, 0);
        d.add(&k, WindowKind::Day, 5, -1, 0);
        assert_eq!(d.pending(&k), vec![(WindowKind::Day, 5, 2), (WindowKind::Month, 0, 3)]);
        let taken = d.take();
        assert_eq!(taken.len(), 2);
        assert!(d.is_empty());
        d.restore(taken);
        assert_eq!(d.pending(&k).len(), 2);
    }
}
