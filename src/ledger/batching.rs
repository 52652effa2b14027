//! When the ledger starts a commit: the group-commit policy, as plain
//! logic (no async, no IO), so it can be property-tested.
//!
//! A database pays mostly per transaction (round trips, statement
//! execution, the WAL flush), little per row in a set-based batch. So a
//! commit starts as soon as none is in flight, taking everything queued;
//! events that arrive meanwhile gather into the next batch, and batches
//! grow with load. A second transaction may overlap the first only when
//! its batch is already large (`overlap_min`): then the database's commit
//! latency, not its per-transaction cost, is what limits throughput, and
//! overlapping two commits hides one's WAL flush behind the other's
//! statements. Starting small overlapping commits instead splits the
//! queue into many small transactions, which is what costs the most.

/// The policy's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Largest number of events in one transaction.
    pub max_batch: usize,
    /// Most transactions in flight at once.
    pub concurrency: usize,
    /// Smallest batch that may start while another commit is in flight.
    pub overlap_min: usize,
}

impl BatchPolicy {
    /// One writer (SQLite: one writer lock anyway).
    pub const fn serial(max_batch: usize) -> BatchPolicy {
        BatchPolicy {
            max_batch,
            concurrency: 1,
            overlap_min: max_batch,
        }
    }

    /// Whether a batch of `queued` events starts now, with `in_flight`
    /// commits running.
    pub fn should_commit(&self, in_flight: usize, queued: usize) -> bool {
        if queued == 0 || in_flight >= self.concurrency.max(1) {
            return false;
        }
        in_flight == 0 || queued >= self.overlap_min.min(self.max_batch)
    }

    /// How many of `queued` events the batch that starts now takes.
    pub fn take(&self, queued: usize) -> usize {
        queued.min(self.max_batch.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> impl Strategy<Value = BatchPolicy> {
        (1usize..2000, 1usize..8, 1usize..2000).prop_map(|(max_batch, concurrency, overlap_min)| BatchPolicy {
            max_batch,
            concurrency,
            overlap_min,
        })
    }

    proptest! {
        #[test]
        fn never_more_in_flight_than_allowed(p in policy(), in_flight in 0usize..10, queued in 0usize..5000) {
            if p.should_commit(in_flight, queued) {
                prop_assert!(in_flight < p.concurrency);
                prop_assert!(queued > 0);
            }
        }

        #[test]
        fn an_idle_ledger_commits_anything_queued(p in policy(), queued in 1usize..5000) {
            prop_assert!(p.should_commit(0, queued));
        }

        #[test]
        fn overlap_only_with_a_large_batch(p in policy(), in_flight in 1usize..10, queued in 1usize..5000) {
            if p.should_commit(in_flight, queued) {
                prop_assert!(queued >= p.overlap_min.min(p.max_batch));
            }
        }

        #[test]
        fn a_full_batch_overlaps_when_a_slot_is_free(p in policy(), queued in 0usize..5000) {
            let queued = queued.max(p.max_batch);
            for in_flight in 0..p.concurrency {
                prop_assert!(p.should_commit(in_flight, queued));
            }
        }

        #[test]
        fn a_batch_takes_at_most_max_batch_and_at_least_one(p in policy(), queued in 1usize..5000) {
            let n = p.take(queued);
            prop_assert!(n >= 1 && n <= p.max_batch && n <= queued);
        }
    }

    #[test]
    fn serial_never_overlaps() {
        let p = BatchPolicy::serial(1000);
        assert!(p.should_commit(0, 1));
        assert!(!p.should_commit(1, 1000));
        assert!(!p.should_commit(1, 5000));
    }
}
