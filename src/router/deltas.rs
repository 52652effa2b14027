//! Request-counter deltas waiting to be flushed.
//!
//! Actors add to this on every admission (and subtract on undo); the
//! flusher swaps it out every `flush_interval` and writes one batched
//! upsert. Deltas commute, so the order of flushes never matters. Sharded
//! to keep the lock an actor takes per check uncontended.
//!
//! While the database is down, deltas pile up here until it returns. They
//! aggregate per (entity, window), and no entity can start without the
//! database, so the pile is naturally bounded by the entities that were
//! resident; a hard cap on the number of entities pending backs that up
//! (deltas of an entity past the cap are dropped and counted in
//! `tollgate_window_deltas_dropped_total`: its actor still counts right in
//! memory, only the stored count falls short).

use crate::entity::EntityKey;
use crate::limits::entity::Admitted;
use crate::store::{CounterDelta, WindowKind};
use foldhash::fast::RandomState;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};

const SHARDS: usize = 16;

/// Least cap on entities with pending deltas: ten times the default
/// `--max-entities`, so that a flush interval's churn (entities that
/// passivated, others that loaded) never meets it. An entry is about
/// 150 bytes, so this is at most about 150 MB.
pub const MIN_MAX_PENDING_ENTITIES: usize = 10 * crate::config::DEFAULT_MAX_ENTITIES as usize;

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
    /// Entities with an entry (kept beside the shards so that the cap
    /// costs one atomic read, and only when an entity is added).
    entities: AtomicUsize,
    max_entities: usize,
}

impl Default for CounterDeltas {
    fn default() -> Self {
        Self::with_cap(MIN_MAX_PENDING_ENTITIES)
    }
}

impl CounterDeltas {
    /// An empty accumulator holding deltas of at most `max_entities`.
    pub fn with_cap(max_entities: usize) -> Self {
        CounterDeltas {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(RandomState::default())))
                .collect(),
            hasher: RandomState::default(),
            entities: AtomicUsize::new(0),
            max_entities,
        }
    }

    fn shard(&self, key: &EntityKey) -> &Mutex<Pending> {
        let h = self.hasher.hash_one(key.as_str()) as usize;
        &self.shards[h % SHARDS]
    }

    /// `key`'s entry in a locked shard, created if there is room.
    fn entry<'a>(&self, shard: &'a mut Pending, key: &EntityKey) -> Option<&'a mut Entry> {
        if shard.contains_key(key) {
            return shard.get_mut(key);
        }
        if self.entities.load(Ordering::Relaxed) >= self.max_entities {
            metrics::counter!("tollgate_window_deltas_dropped_total").increment(1);
            return None;
        }
        self.entities.fetch_add(1, Ordering::Relaxed);
        Some(shard.entry(key.clone()).or_default())
    }

    /// Entities with deltas waiting to be written.
    pub fn pending_entities(&self) -> usize {
        self.entities.load(Ordering::Relaxed)
    }

    /// Adds `delta` to a window's pending count.
    pub fn add(&self, key: &EntityKey, window: WindowKind, start_ms: i64, delta: i64, epoch: u64) {
        let mut shard = self.shard(key).lock();
        let Some(entry) = self.entry(&mut shard, key) else {
            return;
        };
        entry.epoch = entry.epoch.max(epoch);
        bump(&mut entry.rows, window, start_ms, delta);
    }

    /// Records one admission's request counts in both windows (or, with a
    /// negative `delta`, takes them back), under one lock.
    pub fn add_admission(&self, key: &EntityKey, admitted: &Admitted, delta: i64, epoch: u64) {
        let mut shard = self.shard(key).lock();
        let Some(entry) = self.entry(&mut shard, key) else {
            return;
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
            self.entities.fetch_sub(taken.len(), Ordering::Relaxed);
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
            self.entities.fetch_sub(1, Ordering::Relaxed);
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

    use proptest::prelude::*;

    proptest! {
        /// Under the cap every delta is kept and adds up per window; past
        /// it, entities already pending keep adding up and new ones are
        /// dropped whole; the entity count always matches what `take` gives.
        #[test]
        fn the_cap_bounds_entities_and_keeps_what_it_admits(
            cap in 1usize..6,
            adds in proptest::collection::vec((0u8..10, 0i64..3, -5i64..6), 0..60),
        ) {
            let d = CounterDeltas::with_cap(cap);
            let mut admitted: Vec<u8> = Vec::new();
            let mut expected: HashMap<(u8, i64), i64> = HashMap::new();
            for (entity, start, delta) in adds {
                let key = EntityKey::user(&format!("u{entity}")).unwrap();
                d.add(&key, WindowKind::Day, start, delta, 0);
                if admitted.contains(&entity) || admitted.len() < cap {
                    if !admitted.contains(&entity) {
                        admitted.push(entity);
                    }
                    *expected.entry((entity, start)).or_default() += delta;
                }
                prop_assert_eq!(d.pending_entities(), admitted.len());
            }
            let mut taken: HashMap<(u8, i64), i64> = HashMap::new();
            for row in d.take() {
                let entity: u8 = row.entity.as_str().trim_start_matches("user:u").parse().unwrap();
                *taken.entry((entity, row.window_start_ms)).or_default() += row.delta;
            }
            expected.retain(|_, v| *v != 0);
            prop_assert_eq!(taken, expected);
            prop_assert_eq!(d.pending_entities(), 0);
        }
    }
}
