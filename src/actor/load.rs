//! Rebuilding an entity's state when its actor starts: the stored record
//! plus any counter deltas not yet flushed.

use crate::entity::{EntityKey, EntityKind};
use crate::limits::budget::Budget;
use crate::limits::calendar::{DAY_MS, Period};
use crate::limits::entity::EntityLimits;
use crate::limits::tier::{DEFAULT_TIER, GUEST_TIER};
use crate::limits::window::{DayWindow, MonthWindow};
use crate::store::{EntityRecord, WindowKind};

/// The tier name an entity starts with.
pub fn tier_name(key: &EntityKey, record: &EntityRecord) -> String {
    if key.kind() == EntityKind::Ip || key.kind() == EntityKind::Fingerprint {
        GUEST_TIER.to_string()
    } else {
        record.tier.clone().unwrap_or_else(|| DEFAULT_TIER.to_string())
    }
}

/// Combines the stored record with pending deltas
/// (`(window, window_start_ms, delta)`) into live limit state at `now`.
pub fn restore(record: &EntityRecord, pending: &[(WindowKind, i64, i64)], now_ms: i64) -> EntityLimits {
    let period = Period::containing(now_ms);
    let live = |start: i64| start + DAY_MS > now_ms && start <= now_ms;

    // The current day window is the newest live start, stored or pending.
    let day_start = pending
        .iter()
        .filter(|(w, s, _)| *w == WindowKind::Day && live(*s))
        .map(|(_, s, _)| *s)
        .chain(record.day.map(|d| d.start_ms).filter(|s| live(*s)))
        .max();
    let day = match day_start {
        Some(start) => {
            let stored = record.day.filter(|d| d.start_ms == start).map_or(0, |d| d.count as i64);
            DayWindow::restore(start, clamp(stored + sum(pending, WindowKind::Day, start)))
        }
        None => DayWindow::default(),
    };
    let month_count = record.month_count as i64 + sum(pending, WindowKind::Month, period.start_ms());
    let month = MonthWindow::restore(period, clamp(month_count));
    let budget = Budget::new(record.budget_usd.map(|b| b.value()), period, record.spent_usd);
    EntityLimits::new(day, month, budget)
}

fn sum(pending: &[(WindowKind, i64, i64)], window: WindowKind, start: i64) -> i64 {
    pending
        .iter()
        .filter(|(w, s, _)| *w == window && *s == start)
        .map(|(_, _, d)| *d)
        .sum()
}

fn clamp(count: i64) -> u64 {
    u64::try_from(count).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::tier::Tier;
    use crate::money::Usd;
    use crate::store::WindowCount;

    const NOW: i64 = 1_795_838_400_000;

    fn free() -> Tier {
        Tier {
            name: "free".into(),
            daily_limit: 10,
            monthly_limit: Some(100),
            rpm: None,
            price_monthly_usd: Usd::ZERO,
        }
    }

    fn used(limits: &EntityLimits) -> Vec<u64> {
        limits.limit_views(&free(), NOW).map(|v| v.used).collect()
    }

    #[test]
    fn stored_and_pending_counts_add_up() {
        let record = EntityRecord {
            day: Some(WindowCount {
                start_ms: NOW - 1000,
                count: 4,
            }),
            month_count: 7,
            ..Default::default()
        };
        let month = Period::containing(NOW).start_ms();
        let pending = [(WindowKind::Day, NOW - 1000, 2), (WindowKind::Month, month, 2)];
        assert_eq!(used(&restore(&record, &pending, NOW)), vec![6, 9]);
    }

    #[test]
    fn a_newer_pending_window_replaces_an_ended_one() {
        let record = EntityRecord {
            day: Some(WindowCount {
                start_ms: NOW - DAY_MS - 5,
                count: 10,
            }),
            ..Default::default()
        };
        let pending = [(WindowKind::Day, NOW - 3, 1)];
        assert_eq!(used(&restore(&record, &pending, NOW))[0], 1);
        assert_eq!(used(&restore(&record, &[], NOW))[0], 0);
    }
}
