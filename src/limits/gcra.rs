//! The optional per-minute burst limit, as a GCRA (generic cell rate
//! algorithm): one timestamp per entity, no per-request memory.
//!
//! With a rate of `rpm` per minute and a burst of `rpm`, the emission
//! interval is `T = 60 s / rpm`. A request of weight `n` is allowed if the
//! theoretical arrival time after it, minus the burst allowance, is not in
//! the future.

const MINUTE_NS: i128 = 60_000_000_000;

/// GCRA state: the theoretical arrival time, in Unix nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Gcra {
    tat_ns: i128,
}

impl Gcra {
    fn interval_ns(rpm: u32) -> i128 {
        MINUTE_NS / i128::from(rpm.max(1))
    }

    /// The TAT after admitting `n` at `now`, or how long until it would be
    /// allowed (ms, at least 1).
    pub fn check(&self, rpm: u32, n: u64, now_ms: i64) -> Result<i128, i64> {
        let now = i128::from(now_ms) * 1_000_000;
        let t = Self::interval_ns(rpm);
        let burst = t * i128::from(rpm.max(1));
        let new_tat = self.tat_ns.max(now) + t * i128::from(n);
        let allow_at = new_tat - burst;
        if allow_at > now {
            let wait_ms = (allow_at - now + 999_999) / 1_000_000;
            Err(i64::try_from(wait_ms).unwrap_or(i64::MAX).max(1))
        } else {
            Ok(new_tat)
        }
    }

    /// Records an admission computed by [`Gcra::check`].
    pub fn commit(&mut self, new_tat: i128) {
        self.tat_ns = new_tat;
    }

    /// Takes back `n` requests (a multi-entity check that was refused
    /// elsewhere). Never moves the TAT below `now`.
    pub fn remove(&mut self, rpm: u32, n: u64, now_ms: i64) {
        let now = i128::from(now_ms) * 1_000_000;
        let back = self.tat_ns - Self::interval_ns(rpm) * i128::from(n);
        self.tat_ns = back.max(now.min(self.tat_ns));
    }

    /// Requests currently "in the bucket" (for reporting `used`).
    pub fn used(&self, rpm: u32, now_ms: i64) -> u64 {
        let now = i128::from(now_ms) * 1_000_000;
        let ahead = (self.tat_ns - now).max(0);
        let t = Self::interval_ns(rpm);
        u64::try_from((ahead + t - 1) / t)
            .unwrap_or(u64::MAX)
            .min(u64::from(rpm))
    }

    /// When the bucket is fully refilled (ms).
    pub fn resets_at(&self, now_ms: i64) -> i64 {
        let tat_ms = i64::try_from(self.tat_ns / 1_000_000).unwrap_or(i64::MAX);
        tat_ms.max(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_burst_of_rpm_then_one_per_interval() {
        let mut g = Gcra::default();
        let now = 1_000_000;
        for _ in 0..6 {
            let tat = g.check(6, 1, now).expect("burst");
            g.commit(tat);
        }
        let wait = g.check(6, 1, now).expect_err("over burst");
        assert_eq!(wait, 10_000);
        assert!(g.check(6, 1, now + 10_000).is_ok());
    }

    proptest! {
        /// Over any span of time, admitted requests never exceed
        /// rpm + span/interval (the burst plus the refill).
        #[test]
        fn never_admits_more_than_rate_plus_burst(rpm in 1u32..120, gaps in proptest::collection::vec(0i64..2_000, 1..400)) {
            let mut g = Gcra::default();
            let start = 10_000_000i64;
            let mut now = start;
            let mut admitted: u64 = 0;
            for gap in gaps {
                now += gap;
                if let Ok(tat) = g.check(rpm, 1, now) {
                    g.commit(tat);
                    admitted += 1;
                }
            }
            let span_ns = i128::from(now - start) * 1_000_000;
            let bound = i128::from(rpm) + span_ns / Gcra::interval_ns(rpm) + 1;
            prop_assert!(i128::from(admitted) <= bound);
        }
    }
}
