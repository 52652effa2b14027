//! Usage alerts: the budget thresholds a spend change crosses, and the
//! overage alert when spend passes the limit. Each threshold fires at most
//! once per entity and period, and so does the overage; the store makes
//! that durable with a unique key, in the transaction that moved the spend.

use rust_decimal::Decimal;
use std::fmt;

/// Percentages of the monthly budget that raise an alert unless the budget
/// names its own.
pub const THRESHOLDS: [u8; 4] = [50, 75, 90, 100];

/// At most this many thresholds per budget: every one is a message to a
/// person, so a list of a hundred would be spam, not a warning.
pub const MAX_THRESHOLDS: usize = 10;

/// The threshold an overage alert is stored and reported with: spend is
/// past 100 % of the limit.
pub const OVERAGE_PCT: u8 = 100;

/// Why a threshold list is refused (the message names the rule broken).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    #[error("alert_thresholds must list at least one percentage")]
    Empty,
    #[error("alert_thresholds may list at most {MAX_THRESHOLDS} percentages")]
    TooMany,
    #[error("alert_thresholds must be percentages from 1 to 100, got {0}")]
    OutOfRange(i64),
    #[error("alert_thresholds is not a comma-separated list of percentages: {0}")]
    Unparsable(String),
}

/// A budget's alert thresholds: 1..=100, sorted, without duplicates, at
/// most [`MAX_THRESHOLDS`]. Only [`Thresholds::new`] and
/// [`Thresholds::parse`] build one, so every value in hand is valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Thresholds(Vec<u8>);

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds(THRESHOLDS.to_vec())
    }
}

impl Thresholds {
    /// Validates a list as a caller gave it: at most ten values, any order,
    /// duplicates folded.
    pub fn new(values: &[i64]) -> Result<Thresholds, ThresholdError> {
        if values.is_empty() {
            return Err(ThresholdError::Empty);
        }
        // Counted as given, before folding duplicates: the API documents
        // `maxItems`, and a list it calls too long must not be accepted.
        if values.len() > MAX_THRESHOLDS {
            return Err(ThresholdError::TooMany);
        }
        let mut pcts = Vec::with_capacity(values.len());
        for &v in values {
            match u8::try_from(v) {
                Ok(pct @ 1..=100) => pcts.push(pct),
                _ => return Err(ThresholdError::OutOfRange(v)),
            }
        }
        pcts.sort_unstable();
        pcts.dedup();
        Ok(Thresholds(pcts))
    }

    /// Reads the stored form (`"50,75,90,100"`), validating it again: a
    /// row written by hand must not make the ledger misbehave.
    pub fn parse(text: &str) -> Result<Thresholds, ThresholdError> {
        let values = text
            .split(',')
            .map(|part| part.trim().parse::<i64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ThresholdError::Unparsable(text.chars().take(64).collect()))?;
        Thresholds::new(&values)
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// The thresholds reached by `after` but not by `before`, for a budget
    /// `limit`. Spend never starts below zero, so a zero limit crosses no
    /// threshold: its first spend is an overage, and that alert says it.
    pub fn crossed(&self, before: Decimal, after: Decimal, limit: Decimal) -> impl Iterator<Item = u8> + '_ {
        self.0.iter().copied().filter(move |&pct| {
            let level = limit * Decimal::from(pct) / Decimal::ONE_HUNDRED;
            after > before && after >= level && before < level
        })
    }
}

/// The stored form: the percentages, comma-separated.
impl fmt::Display for Thresholds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pct) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{pct}")?;
        }
        Ok(())
    }
}

/// Did this change take spend strictly past the limit? Reaching the limit
/// exactly is the 100 % threshold; going beyond it (actual cost above the
/// estimate, or a call admitted while something else was in flight) is an
/// overage, which fires once per entity and period however far it goes.
pub fn overage(before: Decimal, after: Decimal, limit: Decimal) -> bool {
    after > limit && before <= limit
}

/// What kind of alert a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    /// Spend reached a percentage of the budget.
    Threshold,
    /// Spend went past the budget.
    Overage,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Threshold => "threshold",
            AlertKind::Overage => "overage",
        }
    }

    pub fn parse(text: &str) -> Option<AlertKind> {
        match text {
            "threshold" => Some(AlertKind::Threshold),
            "overage" => Some(AlertKind::Overage),
            _ => None,
        }
    }
}

/// Every alert a spend change raises for one budget: its thresholds
/// crossed, then the overage if it went past the limit.
pub fn raised(thresholds: &Thresholds, before: Decimal, after: Decimal, limit: Decimal) -> Vec<(AlertKind, u8)> {
    let mut out: Vec<(AlertKind, u8)> = thresholds
        .crossed(before, after, limit)
        .map(|pct| (AlertKind::Threshold, pct))
        .collect();
    if overage(before, after, limit) {
        out.push((AlertKind::Overage, OVERAGE_PCT));
    }
    out
}

/// Severity name for an alert, as stored and reported.
pub fn level(kind: AlertKind, pct: u8) -> &'static str {
    match (kind, pct) {
        (AlertKind::Overage, _) => "critical",
        (_, 0..=74) => "info",
        (_, 75..=89) => "warning",
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
        let t = Thresholds::default();
        let fired: Vec<u8> = t.crossed(d("0.40"), d("0.95"), d("1.00")).collect();
        assert_eq!(fired, vec![50, 75, 90]);
        let fired: Vec<u8> = t.crossed(d("0.95"), d("1.00"), d("1.00")).collect();
        assert_eq!(fired, vec![100]);
        assert_eq!(t.crossed(d("1.00"), d("1.50"), d("1.00")).count(), 0);
    }

    #[test]
    fn thresholds_are_validated_sorted_and_deduplicated() {
        assert_eq!(Thresholds::new(&[90, 10, 90]).unwrap().as_slice(), &[10, 90]);
        assert_eq!(Thresholds::new(&[]), Err(ThresholdError::Empty));
        assert_eq!(Thresholds::new(&[0]), Err(ThresholdError::OutOfRange(0)));
        assert_eq!(Thresholds::new(&[101]), Err(ThresholdError::OutOfRange(101)));
        assert_eq!(Thresholds::new(&[-5]), Err(ThresholdError::OutOfRange(-5)));
        let eleven: Vec<i64> = (1..=11).collect();
        assert_eq!(Thresholds::new(&eleven), Err(ThresholdError::TooMany));
        // Duplicates are folded, but the list is counted as given.
        assert_eq!(Thresholds::new(&[5; 10]).unwrap().as_slice(), &[5]);
        assert_eq!(Thresholds::new(&[5; 11]), Err(ThresholdError::TooMany));
        assert_eq!(Thresholds::default().to_string(), "50,75,90,100");
        assert!(Thresholds::parse("50,x").is_err());
        assert!(Thresholds::parse("").is_err());
    }

    #[test]
    fn overage_is_strictly_past_the_limit_and_fires_once() {
        assert!(!overage(d("0.5"), d("1.0"), d("1.0")));
        assert!(overage(d("0.5"), d("1.01"), d("1.0")));
        assert!(overage(d("1.0"), d("1.01"), d("1.0")));
        assert!(!overage(d("1.01"), d("2.0"), d("1.0")));
        // A zero budget: the first spend at all is an overage, and the only alert.
        let raised = raised(&Thresholds::default(), d("0"), d("0.01"), d("0"));
        assert_eq!(raised, vec![(AlertKind::Overage, OVERAGE_PCT)]);
    }

    proptest! {
        /// Splitting one spend increase into two never changes which
        /// alerts fire in total, and none fires twice — for any valid
        /// threshold list, overage included.
        #[test]
        fn alerts_fire_once_however_spend_arrives(
            a in 0u32..20_000, b in 0u32..20_000, c in 0u32..20_000, limit in 0u32..10_000,
            list in proptest::collection::vec(1i64..=100, 1..=10),
        ) {
            let thresholds = Thresholds::new(&list).unwrap();
            let (a, b, c, limit) = (Decimal::new(a.into(), 2), Decimal::new(b.into(), 2), Decimal::new(c.into(), 2), Decimal::new(limit.into(), 2));
            let mut xs = [a, b, c];
            xs.sort();
            let [lo, mid, hi] = xs;
            let mut stepped = raised(&thresholds, lo, mid, limit);
            stepped.extend(raised(&thresholds, mid, hi, limit));
            let direct = raised(&thresholds, lo, hi, limit);
            stepped.sort();
            prop_assert_eq!(&stepped, &{ let mut d = direct.clone(); d.sort(); d });
            let mut unique = stepped.clone();
            unique.dedup();
            prop_assert_eq!(unique.len(), stepped.len());
        }

        /// Any list of in-range values is accepted as long as it has at
        /// most ten values, comes back sorted and deduplicated, and
        /// survives its stored form.
        #[test]
        fn threshold_lists_round_trip(list in proptest::collection::vec(1i64..=100, 1..=30)) {
            let mut distinct = list.clone();
            distinct.sort();
            distinct.dedup();
            match Thresholds::new(&list) {
                Ok(t) => {
                    prop_assert!(list.len() <= MAX_THRESHOLDS);
                    let as_i64: Vec<i64> = t.as_slice().iter().map(|&p| i64::from(p)).collect();
                    prop_assert_eq!(&as_i64, &distinct);
                    prop_assert_eq!(Thresholds::parse(&t.to_string()).unwrap(), t);
                }
                Err(e) => {
                    prop_assert_eq!(e, ThresholdError::TooMany);
                    prop_assert!(list.len() > MAX_THRESHOLDS);
                }
            }
        }
    }
}
