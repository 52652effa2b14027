//! Request windows: the fixed 24 h day and the calendar month.
//!
//! The day window follows the seed's `tier_reset_date` rule: it starts at
//! the first counted request after the previous window ended and lasts
//! exactly 24 h. It is not a sliding window, so a client can reason about
//! it ("my allowance comes back at `resets_at`").

use super::calendar::{DAY_MS, Period};

/// The fixed 24 h window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DayWindow {
    /// When the current window started; `None` before the first request.
    start_ms: Option<i64>,
    count: u64,
}

impl DayWindow {
    /// Rebuilds a window from its stored start and count.
    pub fn restore(start_ms: i64, count: u64) -> Self {
        DayWindow {
            start_ms: Some(start_ms),
            count,
        }
    }

    /// The start of the window in force at `now`, if one is.
    pub fn start_at(&self, now_ms: i64) -> Option<i64> {
        self.start_ms.filter(|&s| now_ms < s + DAY_MS)
    }

    /// Requests counted in the window in force at `now`.
    pub fn used(&self, now_ms: i64) -> u64 {
        if self.start_at(now_ms).is_some() { self.count } else { 0 }
    }

    /// When the allowance comes back. Before the first request that is a
    /// full day away: a request now would start a window ending then.
    pub fn resets_at(&self, now_ms: i64) -> i64 {
        self.start_at(now_ms).unwrap_or(now_ms) + DAY_MS
    }

    /// Counts `n` requests at `now`, starting a new window if none is in
    /// force. Returns the start of the window counted in.
    pub fn add(&mut self, n: u64, now_ms: i64) -> i64 {
        let start = match self.start_at(now_ms) {
            Some(start) => start,
            None => {
                self.count = 0;
                now_ms
            }
        };
        self.start_ms = Some(start);
        self.count = self.count.saturating_add(n);
        start
    }

    /// Takes back `n` requests counted in the window starting at `start`.
    /// A window that has since been replaced is left alone: its requests
    /// no longer count against anything.
    pub fn remove(&mut self, n: u64, start_ms: i64) {
        if self.start_ms == Some(start_ms) {
            self.count = self.count.saturating_sub(n);
        }
    }
}

/// The calendar-month window (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MonthWindow {
    period: Period,
    count: u64,
}

impl MonthWindow {
    pub fn restore(period: Period, count: u64) -> Self {
        MonthWindow { period, count }
    }

    pub fn used(&self, now_ms: i64) -> u64 {
        if Period::containing(now_ms) == self.period {
            self.count
        } else {
            0
        }
    }

    pub fn resets_at(&self, now_ms: i64) -> i64 {
        Period::containing(now_ms).end_ms()
    }

    /// Counts `n` requests; returns the month's start (the stored window key).
    pub fn add(&mut self, n: u64, now_ms: i64) -> i64 {
        let period = self.period.at(now_ms);
        if period != self.period {
            self.period = period;
            self.count = 0;
        }
        self.count = self.count.saturating_add(n);
        period.start_ms()
    }

    pub fn remove(&mut self, n: u64, start_ms: i64) {
        if self.period.start_ms() == start_ms {
            self.count = self.count.saturating_sub(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_795_838_400_000; // 2026-11-28T04:00:00Z

    #[test]
    fn day_window_is_anchored_at_the_first_request() {
        let mut w = DayWindow::default();
        assert_eq!(w.used(T0), 0);
        assert_eq!(w.add(1, T0 + 5), T0 + 5);
        assert_eq!(w.add(1, T0 + DAY_MS), T0 + 5);
        assert_eq!(w.used(T0 + DAY_MS + 4), 2);
        // The window ends 24 h after its first request, not at midnight.
        assert_eq!(w.used(T0 + DAY_MS + 5), 0);
        assert_eq!(w.add(1, T0 + DAY_MS + 1000), T0 + DAY_MS + 1000);
        assert_eq!(w.used(T0 + DAY_MS + 1000), 1);
    }

    #[test]
    fn month_window_follows_the_calendar() {
        let p = Period::containing(T0);
        let mut w = MonthWindow::restore(p, 99);
        assert_eq!(w.used(T0), 99);
        assert_eq!(w.used(p.end_ms()), 0);
        assert_eq!(w.add(1, p.end_ms()), p.end_ms());
        assert_eq!(w.used(p.end_ms()), 1);
    }

    proptest! {
        /// Adding then removing in the same window restores the count, and
        /// the count never exceeds what was added since the window began.
        #[test]
        fn add_then_remove_restores(steps in proptest::collection::vec((1u64..5, 0i64..3_600_000), 1..50)) {
            let mut w = DayWindow::default();
            let mut now = T0;
            for (n, dt) in steps {
                now += dt;
                let before = w.used(now);
                let start = w.add(n, now);
                prop_assert!(w.used(now) >= n);
                w.remove(n, start);
                prop_assert_eq!(w.used(now), if w.start_at(now).is_some() { before } else { 0 });
                w.add(n, now);
                prop_assert!(w.resets_at(now) > now && w.resets_at(now) <= now + DAY_MS);
            }
        }
    }
}
