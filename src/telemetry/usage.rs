//! Metrics of an acknowledged usage event: spend by tier, cost by model,
//! costly events, and events that took a budget past its limit.

use crate::actor::EntityView;
use crate::catalog::Catalog;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// Did an event of `cost` take spend from within `limit` to past it?
pub fn crossed_limit(spent_after: Decimal, cost: Decimal, limit: Decimal) -> bool {
    spent_after > limit && spent_after - cost <= limit
}

/// Millionths of a USD, rounded down (what the spend counter adds).
pub fn micros(usd: Decimal) -> u64 {
    (usd * Decimal::from(1_000_000)).trunc().to_u64().unwrap_or(0)
}

/// Records the metrics of one newly recorded (not duplicate) event.
/// `model` becomes a label only if it is in the price table; any other
/// name (callers may send anything with an explicit cost) is `other`.
pub fn record(catalog: &Catalog, high_cost_threshold: Decimal, model: &str, cost: Decimal, views: &[EntityView]) {
    let model_label = if catalog.price(model).is_some() {
        model.to_string()
    } else {
        "other".to_string()
    };
    // The subject's first entity (a member's organisation, a guest's IP)
    // carries the tier its spend is labelled with.
    if let Some(first) = views.first() {
        metrics::counter!("tollgate_spend_usd_micros_total", "tier" => first.tier.name.clone()).increment(micros(cost));
    }
    metrics::histogram!("tollgate_usage_cost_usd", "model" => model_label.clone()).record(cost.to_f64().unwrap_or(0.0));
    if cost > high_cost_threshold {
        metrics::counter!("tollgate_high_cost_events_total", "model" => model_label).increment(1);
    }
    let crossed = views.iter().any(|v| {
        v.budget
            .limit_usd
            .is_some_and(|limit| crossed_limit(v.budget.spent_usd, cost, limit))
    });
    if crossed {
        metrics::counter!("tollgate_budget_overage_events_total").increment(1);
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
    fn crossing_is_from_within_to_past() {
        assert!(crossed_limit(d("10.5"), d("1"), d("10")));
        assert!(crossed_limit(d("10.01"), d("0.01"), d("10")));
        assert!(
            !crossed_limit(d("10"), d("1"), d("10")),
            "reaching the limit is not past it"
        );
        assert!(!crossed_limit(d("12"), d("1"), d("10")), "already past before");
        assert!(!crossed_limit(d("5"), d("1"), d("10")));
    }

    proptest! {
        /// Spend that climbs past a limit in steps crosses it exactly once.
        #[test]
        fn a_climb_crosses_once(steps in proptest::collection::vec(1u32..500, 1..60), limit in 1u32..5000) {
            let limit = Decimal::new(i64::from(limit), 2);
            let mut spent = Decimal::ZERO;
            let mut crossings = 0;
            for step in steps {
                let cost = Decimal::new(i64::from(step), 2);
                spent += cost;
                crossings += usize::from(crossed_limit(spent, cost, limit));
            }
            prop_assert_eq!(crossings, usize::from(spent > limit));
        }
    }

    #[test]
    fn micros_round_down() {
        assert_eq!(micros(d("0.0000019")), 1);
        assert_eq!(micros(d("1.25")), 1_250_000);
        assert_eq!(micros(d("-1")), 0);
    }
}
