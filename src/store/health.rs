//! The store's health, known from real outcomes and a cheap periodic probe.
//!
//! Every store call on the request path is bounded by `--db-timeout-ms`.
//! Calls that could not reach the database (a refused or broken
//! connection, a pool that found no connection, a deadline that passed)
//! count as misses; a few in a row mark the store down, and while it is
//! down calls fail at once with [`StoreError::Unavailable`] instead of
//! queueing on a dead pool (a 503 `store_unavailable` at the edge). The
//! probe keeps running while down, and its first success marks it up.
//!
//! The verdict itself ([`Verdict`]) is pure and property-tested; the
//! shared [`StoreHealth`] is its thin, thread-safe shell.

use super::{StoreError, StoreResult};
use parking_lot::Mutex;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Default `--db-timeout-ms`: long enough for a group commit of a
/// thousand usage rows or a cold load under load (tens of ms), short
/// enough that a caller that got a 503 still has time to retry.
pub const DEFAULT_DB_TIMEOUT_MS: u64 = 1000;

/// How often the probe asks the database `SELECT 1`. Recovery is noticed
/// within this (plus one deadline), far inside the 5 s the issue allows.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// What one store call says about reachability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The database answered (success, or an error it reported itself:
    /// a constraint, a full disk, a read-only file).
    Answered,
    /// The database could not be reached in time.
    Unreachable,
}

impl Outcome {
    /// Classifies a store result.
    pub fn of<T>(result: &StoreResult<T>) -> Outcome {
        match result {
            Err(err) if is_unreachable(err) => Outcome::Unreachable,
            _ => Outcome::Answered,
        }
    }
}

/// Errors that mean "the database is not there", as opposed to "the
/// database said no".
fn is_unreachable(err: &StoreError) -> bool {
    match err {
        StoreError::Timeout(_) | StoreError::Unavailable => true,
        StoreError::Database(e) => match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // Postgres: class 08 is "connection exception"; 57P01..57P03
            // are "terminating connection" (shutdown) and "cannot connect
            // now" (starting up or in recovery).
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => false,
        },
        StoreError::Migrate(_) | StoreError::UnsupportedUrl(_) | StoreError::Corrupt { .. } => false,
    }
}

/// Pure verdict: up or down, from the outcomes seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    up: bool,
    /// Unreachable outcomes in a row (reset by any answer).
    misses: u32,
}

impl Default for Verdict {
    fn default() -> Self {
        Verdict { up: true, misses: 0 }
    }
}

impl Verdict {
    /// Misses in a row that mark the store down. More than one, so a
    /// single slow statement does not fail everything; few enough that an
    /// outage under load is noticed within about one deadline (many calls
    /// time out together), and without load within a few probes.
    pub const MISSES_TO_DOWN: u32 = 3;

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Takes one outcome in; returns the new state if it changed.
    pub fn observe(&mut self, outcome: Outcome) -> Option<bool> {
        let was = self.up;
        match outcome {
            Outcome::Answered => {
                self.misses = 0;
                self.up = true;
            }
            Outcome::Unreachable => {
                self.misses = self.misses.saturating_add(1);
                if self.misses >= Self::MISSES_TO_DOWN {
                    self.up = false;
                }
            }
        }
        (self.up != was).then_some(self.up)
    }
}

/// The shared health of one store (one per pool; clones of a `Store`
/// share it).
#[derive(Debug)]
pub struct StoreHealth {
    verdict: Mutex<Verdict>,
    /// `verdict.up`, readable without the lock (every gated call reads it).
    up: AtomicBool,
    timeout: Duration,
}

impl StoreHealth {
    pub fn new(timeout: Duration) -> Self {
        metrics::gauge!("tollgate_store_up").set(1.0);
        StoreHealth {
            verdict: Mutex::new(Verdict::default()),
            up: AtomicBool::new(true),
            timeout,
        }
    }

    /// The bound on every database wait of the request path.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// `Err(Unavailable)` at once while the store is down.
    pub fn fail_fast(&self) -> StoreResult<()> {
        if self.is_up() {
            Ok(())
        } else {
            metrics::counter!("tollgate_store_fail_fast_total").increment(1);
            Err(StoreError::Unavailable)
        }
    }

    /// Runs `work` unless the store is down, within the deadline, and
    /// learns from its outcome.
    pub async fn gated<T>(&self, work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        self.fail_fast()?;
        self.timed(work).await
    }

    /// Runs `work` (which makes gated store calls of its own, and may wait
    /// for a lock before them) unless the store is down, all of it within
    /// one deadline. Learns nothing itself: the calls inside do.
    pub async fn within<T>(&self, work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        self.fail_fast()?;
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.timeout)))
    }

    /// Runs `work` within the deadline and learns from its outcome, down
    /// or not (the probe's way in).
    pub async fn timed<T>(&self, work: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let result = match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => {
                metrics::counter!("tollgate_store_timeouts_total").increment(1);
                Err(StoreError::Timeout(self.timeout))
            }
        };
        self.observe(Outcome::of(&result));
        result
    }

    fn observe(&self, outcome: Outcome) {
        // One uncontended lock per store call (not per check): cheap.
        let changed = self.verdict.lock().observe(outcome);
        if let Some(up) = changed {
            self.up.store(up, Ordering::Relaxed);
            metrics::gauge!("tollgate_store_up").set(if up { 1.0 } else { 0.0 });
            if up {
                tracing::info!("store reachable again");
            } else {
                metrics::counter!("tollgate_store_outages_total").increment(1);
                tracing::warn!("store unreachable: cold loads and usage fail fast until it answers");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn outcome() -> impl Strategy<Value = Outcome> {
        prop_oneof![Just(Outcome::Answered), Just(Outcome::Unreachable)]
    }

    proptest! {
        /// Down exactly when the last `MISSES_TO_DOWN` outcomes were all
        /// misses; the first answer brings it back; a change is reported
        /// exactly when the state flips.
        #[test]
        fn down_iff_the_latest_outcomes_are_all_misses(outcomes in proptest::collection::vec(outcome(), 0..40)) {
            let mut verdict = Verdict::default();
            let mut trailing_misses = 0u32;
            for o in outcomes {
                let before = verdict.is_up();
                let changed = verdict.observe(o);
                trailing_misses = if o == Outcome::Unreachable { trailing_misses + 1 } else { 0 };
                prop_assert_eq!(verdict.is_up(), trailing_misses < Verdict::MISSES_TO_DOWN);
                prop_assert_eq!(changed, (verdict.is_up() != before).then_some(verdict.is_up()));
            }
        }
    }

    #[test]
    fn refusals_by_the_database_are_answers_not_outages() {
        let answered: StoreResult<()> = Err(StoreError::Corrupt {
            column: "c",
            value: "v".into(),
        });
        assert_eq!(Outcome::of(&answered), Outcome::Answered);
        let row_missing: StoreResult<()> = Err(StoreError::Database(sqlx::Error::RowNotFound));
        assert_eq!(Outcome::of(&row_missing), Outcome::Answered);
        let pool: StoreResult<()> = Err(StoreError::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(Outcome::of(&pool), Outcome::Unreachable);
        let late: StoreResult<()> = Err(StoreError::Timeout(Duration::from_millis(1)));
        assert_eq!(Outcome::of(&late), Outcome::Unreachable);
    }

    #[tokio::test]
    async fn a_hung_call_ends_at_the_deadline_and_misses_mark_it_down() {
        let health = StoreHealth::new(Duration::from_millis(50));
        for _ in 0..Verdict::MISSES_TO_DOWN {
            let hung = health.gated(std::future::pending::<StoreResult<()>>()).await;
            assert!(matches!(hung, Err(StoreError::Timeout(_))), "{hung:?}");
        }
        assert!(!health.is_up());
        // Down: refused without running the work at all.
        let refused = health.gated(async { Ok(()) }).await;
        assert!(matches!(refused, Err(StoreError::Unavailable)), "{refused:?}");
        assert!(!health.is_up());
        // The probe's first success flips it back.
        health.timed(async { Ok(()) }).await.expect("probe");
        assert!(health.is_up());
        health.gated(async { Ok(()) }).await.expect("up again");
    }
}
