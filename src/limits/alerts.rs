//! Usage alerts: the budget thresholds (50/75/90/100 %) a spend change
//! crosses. Each threshold fires at most once per entity and period; the
//! store makes that durable with a unique key.

use rust_decimal::Decimal;

/// Percentages of the monthly budget that raise an alert.
pub const THRESHOLDS: [u8; 4] = [50, 75, 90, 100];

/// Thresholds reached by `after` but not by `before`, for a budget `limit`.
/// A zero limit is reached by any spend, including none — but an alert is
/// about spending, so nothing fires until something was spent.
pub fn crossed(before: Decimal, after: Decimal, limit: Decimal) -> impl Iterator<Item = u8> {
    THRESHOLDS.into_iter().filter(move |&pct| {
        let level = limit * Decimal::from(pct) / Decimal::ONE_HUNDRED;
        after > before && after >= level && before < level
    })
}

/// Severity name for a threshold, as stored and reported.
pub fn level(pct: u8) -> &'static str {
    match pct {
        0..=74 => "info",
        75..=89 => "warning",
        _ => "critical",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn crossing_several_at_once_fires_each() {
        let fired: Vec<u8> = crossed(d("0.40"), d("0.95"), d("1.00")).collect();
        assert_eq!(fired, vec![50, 75, 90]);
        let fired: Vec<u8> = crossed(d("0.95"), d("1.00"), d("1.00")).collect();
        assert_eq!(fired, vec![100]);
        assert_eq!(crossed(d("1.00"), d("1.50"), d("1.00")).count(), 0);
    }

    proptest! {
        /// Splitting one spend increase into two never changes which
        /// thresholds fire in total, and none fires twice.
        #[test]
        fn thresholds_fire_once_however_spend_arrives(a in 0u32..20_000, b in 0u32..20_000, c in 0u32..20_000, limit in 1u32..10_000) {
            let (a, b, c, limit) = (Decimal::new(a.into(), 2), Decimal::new(b.into(), 2), Decimal::new(c.into(), 2), Decimal::new(limit.into(), 2));
            let mut xs = [a, b, c];
            xs.sort();
            let [lo, mid, hi] = xs;
            let mut stepped: Vec<u8> = crossed(lo, mid, limit).collect();
            stepped.extend(crossed(mid, hi, limit));
            let direct: Vec<u8> = crossed(lo, hi, limit).collect();
            prop_assert_eq!(stepped, direct);
        }
    }
}
