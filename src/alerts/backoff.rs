//! When to try a failed delivery again: exponential backoff with jitter,
//! for at most 24 hours after the delivery was created. Pure: the caller
//! passes the time and the random draw.

use std::time::Duration;

/// Each gap is this factor times the previous one (before jitter).
const FACTOR: u32 = 2;

/// The longest wait between two attempts: a receiver that is down for a
/// day is still tried every hour, not once at the end.
pub const DEFAULT_CAP: Duration = Duration::from_secs(3600);

/// How long after its creation a delivery is given up (marked dead).
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(24 * 3600);

/// The retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The nominal gap after the first failed attempt.
    pub base: Duration,
    pub cap: Duration,
    pub horizon: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try again at this time (Unix ms).
    RetryAt(i64),
    /// The next attempt would fall beyond the horizon: mark dead.
    GiveUp,
}

impl Backoff {
    pub fn new(base: Duration) -> Backoff {
        Backoff {
            base,
            cap: DEFAULT_CAP,
            horizon: DEFAULT_HORIZON,
        }
    }

    /// The nominal gap after `attempts` failed attempts (1 = the first):
    /// `base × 2^(attempts-1)`, at most `cap`.
    pub fn nominal(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(40);
        let factor = FACTOR.checked_pow(exp).unwrap_or(u32::MAX);
        self.base.checked_mul(factor).unwrap_or(self.cap).min(self.cap)
    }

    /// The gap with "equal jitter": uniformly in `[nominal/2, nominal]`
    /// (`jitter` in `[0, 1)`). Half the gap is random, so receivers that
    /// failed together are not retried together; the other half keeps
    /// every gap at least as long as the one before (below the cap).
    pub fn delay(&self, attempts: u32, jitter: f64) -> Duration {
        let nominal = self.nominal(attempts);
        let half = nominal / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// After `attempts` failed attempts at `now_ms` of a delivery created at
    /// `created_at_ms`: when to try again, or give up.
    pub fn next(&self, created_at_ms: i64, now_ms: i64, attempts: u32, jitter: f64) -> Next {
        let delay = i64::try_from(self.delay(attempts, jitter).as_millis()).unwrap_or(i64::MAX);
        let at = now_ms.saturating_add(delay);
        let horizon = i64::try_from(self.horizon.as_millis()).unwrap_or(i64::MAX);
        if at.saturating_sub(created_at_ms) > horizon {
            Next::GiveUp
        } else {
            Next::RetryAt(at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_from_the_base_up_to_the_cap() {
        let b = Backoff::new(Duration::from_secs(1));
        assert_eq!(b.nominal(1), Duration::from_secs(1));
        assert_eq!(b.nominal(2), Duration::from_secs(2));
        assert_eq!(b.nominal(5), Duration::from_secs(16));
        assert_eq!(b.nominal(13), DEFAULT_CAP);
        assert_eq!(b.nominal(u32::MAX), DEFAULT_CAP);
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(4));
    }

    #[test]
    fn a_day_of_hourly_retries_then_dead() {
        let b = Backoff::new(Duration::from_secs(1));
        let created = 0;
        let (mut now, mut attempts) = (0i64, 1u32);
        while let Next::RetryAt(at) = b.next(created, now, attempts, 0.999) {
            assert!(at > now);
            now = at;
            attempts += 1;
        }
        // 12 doubling gaps (~1.1 h) then about 22 hourly ones.
        assert!((30..=40).contains(&attempts), "{attempts} attempts");
        assert!(now <= 24 * 3600 * 1000);
    }

    proptest! {
        /// Below the cap every gap is at least the previous one, whatever
        /// the jitter; no gap exceeds the cap or is shorter than half the
        /// nominal one.
        #[test]
        fn gaps_grow_and_stay_bounded(base_ms in 1u64..120_000, attempts in 1u32..60, j1 in 0.0f64..1.0, j2 in 0.0f64..1.0) {
            let b = Backoff::new(Duration::from_millis(base_ms));
            let this = b.delay(attempts, j1);
            let next = b.delay(attempts + 1, j2);
            prop_assert!(this <= b.cap && next <= b.cap);
            prop_assert!(this >= b.nominal(attempts) / 2);
            if b.nominal(attempts + 1) < b.cap {
                prop_assert!(next >= this, "{:?} then {:?}", this, next);
            }
        }

        /// A retry is never scheduled beyond the horizon, and one is
        /// always scheduled while the horizon is a full cap away.
        #[test]
        fn the_horizon_holds(base_ms in 1u64..120_000, attempts in 1u32..60, created in 0i64..1_000_000_000, elapsed in 0i64..(2 * 86_400_000), j in 0.0f64..1.0) {
            let b = Backoff::new(Duration::from_millis(base_ms));
            let now = created + elapsed;
            match b.next(created, now, attempts, j) {
                Next::RetryAt(at) => {
                    prop_assert!(at >= now);
                    prop_assert!(at - created <= 86_400_000);
                }
                Next::GiveUp => prop_assert!(elapsed > 86_400_000 - 3_600_000),
            }
        }
    }
}
