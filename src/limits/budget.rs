//! Monthly budgets with reservations (authorise, then capture).
//!
//! `spent` is this calendar month's committed spend, as the ledger says.
//! `holds` are estimates reserved by admitted checks and not yet settled.
//! A check with an estimate is admitted only if
//! `spent + held + estimate ≤ limit`; without one, while
//! `spent + held < limit` (the seed's rule). The only overshoot possible
//! is actual − estimate on calls already admitted.
//!
//! A zero estimate reserves nothing, so it is no estimate: it is judged by
//! the no-estimate rule (an exhausted budget refuses it) and never takes a
//! hold. Otherwise `spent + held + 0 ≤ limit` would admit on a budget that
//! refuses a check without an estimate.

use super::calendar::Period;
use crate::money::Usd;
use rust_decimal::Decimal;
use std::collections::HashMap;
use uuid::Uuid;

/// The part of an estimate that reserves something: `None` for no
/// estimate and for one of zero (or less), which reserve nothing.
pub fn reservable(estimate: Option<Decimal>) -> Option<Decimal> {
    estimate.filter(|e| *e > Decimal::ZERO)
}

/// The monthly limit a user entity runs with: the lower of the user's own
/// budget and the cap their organisation puts on it as a member, either of
/// which may be absent (none = unlimited). An organisation can only lower a
/// member's limit, never lift the user's own, and when the membership ends
/// (the cap is deleted) the user's own budget is what remains.
pub fn effective_budget(own: Option<Usd>, member_cap: Option<Usd>) -> Option<Usd> {
    match (own, member_cap) {
        (Some(own), Some(cap)) => Some(own.min(cap)),
        (own, cap) => own.or(cap),
    }
}

/// One reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hold {
    pub amount: Decimal,
    pub expires_ms: i64,
}

/// An entity's budget state for the current period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Budget {
    limit: Option<Decimal>,
    period: Period,
    spent: Decimal,
    holds: HashMap<Uuid, Hold>,
    /// Sum of `holds` (kept so a check does not walk the map).
    held: Decimal,
    /// Earliest expiry among `holds` (`i64::MAX` when none).
    next_expiry_ms: i64,
}

/// Why the budget refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    /// When something will free up: the earliest hold expiry, or the
    /// start of next month.
    pub retry_at_ms: i64,
}

impl Budget {
    pub fn new(limit: Option<Decimal>, period: Period, spent: Decimal) -> Self {
        Budget {
            limit,
            period,
            spent,
            holds: HashMap::new(),
            held: Decimal::ZERO,
            next_expiry_ms: i64::MAX,
        }
    }

    pub fn limit(&self) -> Option<Decimal> {
        self.limit
    }

    pub fn set_limit(&mut self, limit: Option<Decimal>) {
        self.limit = limit;
    }

    pub fn period(&self) -> Period {
        self.period
    }

    /// Brings the state to `now`: a new month zeroes spend; expired holds
    /// free themselves.
    pub fn advance(&mut self, now_ms: i64) {
        let period = self.period.at(now_ms);
        if period > self.period {
            self.period = period;
            self.spent = Decimal::ZERO;
        }
        if now_ms >= self.next_expiry_ms {
            self.holds.retain(|_, h| h.expires_ms > now_ms);
            self.recount_holds();
        }
    }

    fn recount_holds(&mut self) {
        self.held = self.holds.values().map(|h| h.amount).sum();
        self.next_expiry_ms = self.holds.values().map(|h| h.expires_ms).min().unwrap_or(i64::MAX);
    }

    pub fn spent(&self) -> Decimal {
        self.spent
    }

    pub fn held(&self) -> Decimal {
        self.held
    }

    pub fn has_holds(&self) -> bool {
        !self.holds.is_empty()
    }

    /// Limit − spent − held, floored at zero; `None` without a limit.
    pub fn remaining(&self) -> Option<Decimal> {
        self.limit.map(|l| (l - self.spent - self.held).max(Decimal::ZERO))
    }

    /// Whether a check with this estimate may be admitted (call
    /// [`Budget::advance`] first).
    /// A zero estimate is judged as none ([`reservable`]).
    pub fn admits(&self, estimate: Option<Decimal>) -> Result<(), OverBudget> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let committed = self.spent + self.held;
        let ok = match reservable(estimate) {
            Some(e) => committed + e <= limit,
            None => committed < limit,
        };
        if ok {
            Ok(())
        } else {
            let retry_at_ms = self.next_expiry_ms.min(self.period.end_ms());
            Err(OverBudget { retry_at_ms })
        }
    }

    /// Reserves `amount` under `id` until `expires_ms`. Re-using an id
    /// replaces its hold. Returns whether a hold was taken: an amount that
    /// reserves nothing ([`reservable`]) takes none.
    pub fn hold(&mut self, id: Uuid, amount: Decimal, expires_ms: i64) -> bool {
        if reservable(Some(amount)).is_none() {
            return false;
        }
        self.holds.insert(id, Hold { amount, expires_ms });
        self.recount_holds();
        true
    }

    /// Removes a hold; returns what it held (None if unknown or expired).
    pub fn release(&mut self, id: &Uuid) -> Option<Decimal> {
        let hold = self.holds.remove(id)?;
        self.recount_holds();
        Some(hold.amount)
    }

    /// Takes in a committed spend total from the ledger. Totals only grow
    /// within a period and commits can be reported out of order, so the
    /// larger total wins; this also makes a total that was already loaded
    /// from the store count once, not twice.
    pub fn observe_committed(&mut self, period: Period, total: Decimal) {
        if period == self.period {
            self.spent = self.spent.max(total);
        } else if period > self.period {
            self.period = period;
            self.spent = total;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_795_838_400_000;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn estimates_fill_the_budget_exactly() {
        let mut b = Budget::new(Some(d("1.00")), Period::containing(T0), Decimal::ZERO);
        let mut admitted = 0;
        for _ in 0..200 {
            if b.admits(Some(d("0.01"))).is_ok() {
                b.hold(Uuid::new_v4(), d("0.01"), T0 + 60_000);
                admitted += 1;
            }
        }
        assert_eq!(admitted, 100);
        assert_eq!(b.remaining(), Some(Decimal::ZERO));
        // Expired holds free themselves.
        b.advance(T0 + 60_000);
        assert_eq!(b.held(), Decimal::ZERO);
        assert!(b.admits(Some(d("0.01"))).is_ok());
    }

    #[test]
    fn without_estimate_admits_while_below_limit() {
        let mut b = Budget::new(Some(d("1")), Period::containing(T0), d("0.99"));
        assert!(b.admits(None).is_ok());
        b.observe_committed(b.period(), d("1"));
        assert!(b.admits(None).is_err());
        // A new month starts from zero.
        b.advance(Period::containing(T0).end_ms());
        assert!(b.admits(None).is_ok());
    }

    #[test]
    fn committed_totals_count_once() {
        let p = Period::containing(T0);
        let mut b = Budget::new(Some(d("10")), p, d("2"));
        b.observe_committed(p, d("2"));
        assert_eq!(b.spent(), d("2"));
        b.observe_committed(p, d("3"));
        b.observe_committed(p, d("2.5"));
        assert_eq!(b.spent(), d("3"));
    }

    #[test]
    fn a_zero_estimate_is_no_estimate() {
        let p = Period::containing(T0);
        let mut exhausted = Budget::new(Some(d("1")), p, d("1"));
        assert!(exhausted.admits(None).is_err());
        assert!(exhausted.admits(Some(Decimal::ZERO)).is_err());
        assert!(!exhausted.hold(Uuid::new_v4(), Decimal::ZERO, T0 + 1));
        assert!(!exhausted.has_holds());
    }

    fn usd(cents: Option<u32>) -> Option<Usd> {
        cents.map(|c| Usd::new(Decimal::new(i64::from(c), 2)).unwrap())
    }

    #[test]
    fn a_member_cap_only_lowers_the_users_own_budget() {
        assert_eq!(effective_budget(usd(Some(500)), usd(Some(0))), usd(Some(0)));
        assert_eq!(effective_budget(usd(Some(500)), usd(Some(900))), usd(Some(500)));
        assert_eq!(effective_budget(None, usd(Some(900))), usd(Some(900)));
        assert_eq!(effective_budget(usd(Some(500)), None), usd(Some(500)));
        assert_eq!(effective_budget(None, None), None);
    }

    proptest! {
        /// Never above either limit that is set, always equal to one of them.
        #[test]
        fn effective_budget_is_the_tighter_limit(own in proptest::option::of(0u32..100_000),
                                                 cap in proptest::option::of(0u32..100_000)) {
            let got = effective_budget(usd(own), usd(cap));
            for limit in [usd(own), usd(cap)].into_iter().flatten() {
                prop_assert!(got.is_some_and(|g| g <= limit));
            }
            prop_assert!(got == usd(own) || got == usd(cap));
            // Without a cap the user's own budget is exactly what remains.
            prop_assert_eq!(effective_budget(usd(own), None), usd(own));
        }
    }

    proptest! {
        /// A zero estimate is judged exactly as no estimate, whatever the
        /// limit, spend and holds, and never leaves a hold behind.
        #[test]
        fn zero_estimate_equals_none(
            limit in proptest::option::of(0u32..1000),
            spent in 0u32..1500,
            holds in proptest::collection::vec(1u32..300, 0..4),
        ) {
            let p = Period::containing(T0);
            let mut b = Budget::new(limit.map(|l| Decimal::new(l.into(), 2)), p, Decimal::new(spent.into(), 2));
            for h in holds {
                b.hold(Uuid::new_v4(), Decimal::new(h.into(), 2), T0 + 1000);
            }
            prop_assert_eq!(b.admits(Some(Decimal::ZERO)), b.admits(None));
            prop_assert_eq!(reservable(Some(Decimal::ZERO)), None);
            let before = b.clone();
            prop_assert!(!b.hold(Uuid::new_v4(), Decimal::ZERO, T0 + 1000));
            prop_assert_eq!(b, before);
        }

        /// Whatever sequence of holds, releases and commits, admitted
        /// estimates never take spent + held past the limit.
        #[test]
        fn never_over_commits(ops in proptest::collection::vec((0u8..3, 1u32..500), 1..200)) {
            let p = Period::containing(T0);
            let limit = d("10");
            let mut b = Budget::new(Some(limit), p, Decimal::ZERO);
            let mut ids = Vec::new();
            for (op, cents) in ops {
                let amount = Decimal::new(cents.into(), 2);
                match op {
                    0 => if b.admits(Some(amount)).is_ok() {
                        let id = Uuid::new_v4();
                        b.hold(id, amount, T0 + 1000);
                        ids.push((id, amount));
                    },
                    1 => if let Some((id, amount)) = ids.pop() {
                        // Settle at exactly the estimate.
                        prop_assert_eq!(b.release(&id), Some(amount));
                        let total = b.spent() + amount;
                        b.observe_committed(p, total);
                    },
                    _ => if let Some((id, _)) = ids.pop() { b.release(&id); },
                }
                prop_assert!(b.spent() + b.held() <= limit);
                prop_assert_eq!(b.held(), ids.iter().map(|(_, a)| *a).sum::<Decimal>());
            }
        }
    }
}
