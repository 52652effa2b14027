//! One entity's complete limit state: day and month windows, the optional
//! per-minute GCRA and the budget. This is what an entity actor owns; the
//! actor adds messaging, the store adds durability.

use super::budget::Budget;
use super::calendar::Period;
use super::gcra::Gcra;
use super::tier::Tier;
use super::window::{DayWindow, MonthWindow};
use rust_decimal::Decimal;
use uuid::Uuid;

/// Which limit a view or refusal is about: the fixed 24 h window, the
/// calendar month (UTC), or the per-minute burst limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum WindowName {
    Day,
    Month,
    Minute,
}

impl WindowName {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowName::Day => "day",
            WindowName::Month => "month",
            WindowName::Minute => "minute",
        }
    }

    /// Window length in seconds, for the `RateLimit-Policy` header.
    pub fn seconds(self) -> u64 {
        match self {
            WindowName::Day => 86_400,
            WindowName::Month => 2_592_000,
            WindowName::Minute => 60,
        }
    }
}

/// What one check asks of one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ask {
    /// Messages counted (≥ 1).
    pub requests: u64,
    /// Cost to reserve, if the caller estimated one.
    pub estimate: Option<Decimal>,
    /// Reservation to hold the estimate under, and until when.
    pub hold: Option<(Uuid, i64)>,
}

/// Why an entity refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Refusal {
    RateLimited { window: WindowName, retry_at_ms: i64 },
    BudgetExceeded { retry_at_ms: i64 },
}

impl Refusal {
    pub fn retry_at_ms(self) -> i64 {
        match self {
            Refusal::RateLimited { retry_at_ms, .. } | Refusal::BudgetExceeded { retry_at_ms } => retry_at_ms,
        }
    }
}

/// What an admission changed, so it can be undone or flushed exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Admitted {
    pub requests: u64,
    pub day_start_ms: i64,
    pub month_start_ms: i64,
    pub hold: Option<Uuid>,
    pub at_ms: i64,
}

/// One window as reported to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LimitView {
    pub window: WindowName,
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    pub resets_at_ms: i64,
}

/// The budget as reported to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BudgetView {
    pub limit_usd: Option<Decimal>,
    pub spent_usd: Decimal,
    pub held_usd: Decimal,
    pub remaining_usd: Option<Decimal>,
    pub period_end_ms: i64,
}

/// All limit state of one entity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntityLimits {
    day: DayWindow,
    month: MonthWindow,
    gcra: Gcra,
    budget: Budget,
}

impl EntityLimits {
    pub fn new(day: DayWindow, month: MonthWindow, budget: Budget) -> Self {
        EntityLimits {
            day,
            month,
            gcra: Gcra::default(),
            budget,
        }
    }

    /// A fresh entity with nothing counted.
    pub fn empty(now_ms: i64) -> Self {
        let period = Period::containing(now_ms);
        Self::new(
            DayWindow::default(),
            MonthWindow::restore(period, 0),
            Budget::new(None, period, Decimal::ZERO),
        )
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    pub fn budget_mut(&mut self) -> &mut Budget {
        &mut self.budget
    }

    /// Admits `ask` if every limit allows it, changing nothing otherwise.
    pub fn admit(&mut self, tier: &Tier, ask: &Ask, now_ms: i64) -> Result<Admitted, Refusal> {
        self.budget.advance(now_ms);
        let n = ask.requests;
        if self.day.used(now_ms).saturating_add(n) > tier.daily_limit {
            return Err(Refusal::RateLimited {
                window: WindowName::Day,
                retry_at_ms: self.day.resets_at(now_ms),
            });
        }
        if let Some(monthly) = tier.monthly_limit
            && self.month.used(now_ms).saturating_add(n) > monthly
        {
            return Err(Refusal::RateLimited {
                window: WindowName::Month,
                retry_at_ms: self.month.resets_at(now_ms),
            });
        }
        let gcra_tat = match tier.rpm {
            Some(rpm) => match self.gcra.check(rpm, n, now_ms) {
                Ok(tat) => Some(tat),
                Err(wait_ms) => {
                    return Err(Refusal::RateLimited {
                        window: WindowName::Minute,
                        retry_at_ms: now_ms.saturating_add(wait_ms),
                    });
                }
            },
            None => None,
        };
        if let Err(over) = self.budget.admits(ask.estimate) {
            return Err(Refusal::BudgetExceeded {
                retry_at_ms: over.retry_at_ms,
            });
        }
        // Every limit allows it: commit all of them.
        if let Some(tat) = gcra_tat {
            self.gcra.commit(tat);
        }
        let day_start_ms = self.day.add(n, now_ms);
        let month_start_ms = self.month.add(n, now_ms);
        let hold = match (ask.hold, ask.estimate) {
            // A zero estimate holds nothing (and reports no hold).
            (Some((id, expires_ms)), Some(amount)) => self.budget.hold(id, amount, expires_ms).then_some(id),
            _ => None,
        };
        Ok(Admitted {
            requests: n,
            day_start_ms,
            month_start_ms,
            hold,
            at_ms: now_ms,
        })
    }

    /// Takes back an admission (another entity of the same check refused).
    pub fn undo(&mut self, tier: &Tier, admitted: &Admitted, now_ms: i64) {
        self.day.remove(admitted.requests, admitted.day_start_ms);
        self.month.remove(admitted.requests, admitted.month_start_ms);
        if let Some(rpm) = tier.rpm {
            self.gcra.remove(rpm, admitted.requests, now_ms);
        }
        if let Some(id) = &admitted.hold {
            self.budget.release(id);
        }
    }

    /// The windows this tier has, as the caller sees them at `now`.
    pub fn limit_views(&self, tier: &Tier, now_ms: i64) -> impl Iterator<Item = LimitView> + '_ {
        let view = |window, limit: u64, used: u64, resets_at_ms| LimitView {
            window,
            limit,
            used,
            remaining: limit.saturating_sub(used),
            resets_at_ms,
        };
        let day = view(
            WindowName::Day,
            tier.daily_limit,
            self.day.used(now_ms),
            self.day.resets_at(now_ms),
        );
        let month = tier.monthly_limit.map(|m| {
            view(
                WindowName::Month,
                m,
                self.month.used(now_ms),
                self.month.resets_at(now_ms),
            )
        });
        let minute = tier.rpm.map(|rpm| {
            view(
                WindowName::Minute,
                u64::from(rpm),
                self.gcra.used(rpm, now_ms),
                self.gcra.resets_at(now_ms),
            )
        });
        std::iter::once(day).chain(month).chain(minute)
    }

    pub fn budget_view(&self, now_ms: i64) -> BudgetView {
        let period = self.budget.period().at(now_ms).max(self.budget.period());
        BudgetView {
            limit_usd: self.budget.limit(),
            spent_usd: if period == self.budget.period() {
                self.budget.spent()
            } else {
                Decimal::ZERO
            },
            held_usd: self.budget.held(),
            remaining_usd: self.budget.remaining(),
            period_end_ms: period.end_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Usd;
    use proptest::prelude::*;

    const T0: i64 = 1_795_838_400_000;

    fn tier(daily: u64, monthly: Option<u64>, rpm: Option<u32>) -> Tier {
        Tier {
            name: "t".into(),
            daily_limit: daily,
            monthly_limit: monthly,
            rpm,
            price_monthly_usd: Usd::ZERO,
        }
    }

    fn one() -> Ask {
        Ask {
            requests: 1,
            estimate: None,
            hold: None,
        }
    }

    #[test]
    fn free_tier_allows_ten_then_refuses_until_the_window_ends() {
        let t = tier(10, Some(100), None);
        let mut e = EntityLimits::empty(T0);
        for i in 0..10 {
            e.admit(&t, &one(), T0 + i).expect("within limit");
        }
        let refusal = e.admit(&t, &one(), T0 + 10).expect_err("11th");
        assert_eq!(
            refusal,
            Refusal::RateLimited {
                window: WindowName::Day,
                retry_at_ms: T0 + super::super::calendar::DAY_MS
            }
        );
        assert!(e.admit(&t, &one(), T0 + super::super::calendar::DAY_MS).is_ok());
    }

    #[test]
    fn monthly_limit_binds_across_days() {
        let t = tier(10, Some(15), None);
        let mut e = EntityLimits::empty(T0);
        let day = super::super::calendar::DAY_MS;
        let mut admitted = 0;
        for d in 0..2 {
            for i in 0..10 {
                if e.admit(&t, &one(), T0 + d * day + i).is_ok() {
                    admitted += 1;
                }
            }
        }
        // 2026-11-28 + 1 day is still November.
        assert_eq!(admitted, 15);
    }

    proptest! {
        /// A refused admission changes nothing; undo restores the state.
        #[test]
        fn refusal_and_undo_leave_no_trace(
            daily in 1u64..20, monthly in proptest::option::of(1u64..40), rpm in proptest::option::of(1u32..30),
            limit_cents in proptest::option::of(0u32..500),
            asks in proptest::collection::vec((1u64..4, proptest::option::of(0u32..100), 0i64..5_000, any::<bool>()), 1..60),
        ) {
            let t = tier(daily, monthly, rpm);
            let mut e = EntityLimits::empty(T0);
            e.budget_mut().set_limit(limit_cents.map(|c| Decimal::new(c.into(), 2)));
            let mut now = T0;
            let mut counted = 0u64;
            for (requests, est, dt, undo) in asks {
                now += dt;
                let ask = Ask { requests, estimate: est.map(|c| Decimal::new(c.into(), 2)), hold: Some((Uuid::new_v4(), now + 60_000)) };
                // Expiring holds and month roll-over are not the admission's doing.
                e.budget_mut().advance(now);
                let before = e.clone();
                match e.admit(&t, &ask, now) {
                    Ok(adm) => {
                        if undo {
                            e.undo(&t, &adm, now);
                            let views: Vec<_> = e.limit_views(&t, now).filter(|v| v.window != WindowName::Minute).map(|v| v.used).collect();
                            let before_views: Vec<_> = before.limit_views(&t, now).filter(|v| v.window != WindowName::Minute).map(|v| v.used).collect();
                            prop_assert_eq!(views, before_views);
                            prop_assert_eq!(e.budget().held(), before.budget().held());
                        } else {
                            counted += requests;
                        }
                    }
                    Err(_) => prop_assert_eq!(&e, &before),
                }
                for v in e.limit_views(&t, now) {
                    prop_assert!(v.used <= v.limit);
                }
                if let Some(l) = e.budget().limit() {
                    prop_assert!(e.budget().spent() + e.budget().held() <= l);
                }
            }
            prop_assert!(counted <= daily * (1 + ((now - T0) / super::super::calendar::DAY_MS) as u64));
        }
    }
}
