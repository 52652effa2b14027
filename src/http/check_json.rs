//! The check response, written straight into bytes.
//!
//! `POST /v1/check` is the hot path, and serialising its answer through
//! serde (intermediate structs, `collect_str` for every decimal and time)
//! cost about as much as the rest of the check. This writer produces the
//! same JSON as [`super::check::CheckResponse`] does through serde — a test
//! below holds them equal — from the entity views directly.

use crate::actor::EntityView;
use crate::limits::calendar::write_rfc3339;
use rust_decimal::Decimal;
use std::io::Write;

/// What the writer needs besides the views.
pub struct CheckJson<'a> {
    pub allowed: bool,
    pub reason: Option<&'static str>,
    pub message: Option<&'a str>,
    pub reservation_id: Option<&'a str>,
    pub views: &'a [EntityView],
}

impl CheckJson<'_> {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + 200 * self.views.len());
        out.extend_from_slice(if self.allowed {
            b"{\"allowed\":true"
        } else {
            b"{\"allowed\":false"
        });
        if let Some(reason) = self.reason {
            out.extend_from_slice(b",\"reason\":");
            string(&mut out, reason);
            out.extend_from_slice(b",\"error\":");
            string(&mut out, reason);
        }
        if let Some(message) = self.message {
            out.extend_from_slice(b",\"message\":");
            string(&mut out, message);
        }
        if let Some(id) = self.reservation_id {
            out.extend_from_slice(b",\"reservation_id\":");
            string(&mut out, id);
        }
        out.extend_from_slice(b",\"tier\":");
        string(&mut out, self.views.first().map_or("", |v| v.tier.name.as_str()));

        out.extend_from_slice(b",\"limits\":[");
        let mut first = true;
        let mut num = itoa::Buffer::new();
        for view in self.views {
            for l in &view.limits {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(b"{\"entity\":");
                string(&mut out, view.key.as_str());
                out.extend_from_slice(b",\"window\":\"");
                out.extend_from_slice(l.window.as_str().as_bytes());
                out.extend_from_slice(b"\",\"limit\":");
                out.extend_from_slice(num.format(l.limit).as_bytes());
                out.extend_from_slice(b",\"used\":");
                out.extend_from_slice(num.format(l.used).as_bytes());
                out.extend_from_slice(b",\"remaining\":");
                out.extend_from_slice(num.format(l.remaining).as_bytes());
                out.extend_from_slice(b",\"resets_at\":\"");
                write_rfc3339(&mut out, l.resets_at_ms);
                out.extend_from_slice(b"\"}");
            }
        }
        out.extend_from_slice(b"],\"budgets\":[");
        for (i, view) in self.views.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let b = &view.budget;
            out.extend_from_slice(b"{\"entity\":");
            string(&mut out, view.key.as_str());
            out.extend_from_slice(b",\"limit_usd\":");
            opt_decimal(&mut out, b.limit_usd);
            out.extend_from_slice(b",\"spent_usd\":");
            decimal(&mut out, b.spent_usd);
            out.extend_from_slice(b",\"held_usd\":");
            decimal(&mut out, b.held_usd);
            out.extend_from_slice(b",\"remaining_usd\":");
            opt_decimal(&mut out, b.remaining_usd);
            out.extend_from_slice(b",\"period_end\":\"");
            write_rfc3339(&mut out, b.period_end_ms);
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b"]}");
        out
    }
}

/// A JSON string, escaped by serde_json (ids may hold `"` or `\`).
fn string(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// A decimal as a JSON string, normalised (`"12.207"`, not `"12.2070"`).
fn decimal(out: &mut Vec<u8>, value: Decimal) {
    out.push(b'"');
    let _ = write!(out, "{}", value.normalize());
    out.push(b'"');
}

fn opt_decimal(out: &mut Vec<u8>, value: Option<Decimal>) {
    match value {
        Some(v) => decimal(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::EntityKey;
    use crate::http::check::CheckResponse;
    use crate::http::views;
    use crate::limits::entity::{BudgetView, LimitView, WindowName};
    use crate::limits::tier::Tier;
    use crate::money::Usd;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn view(id: &str, spent_cents: i64, limit: Option<i64>) -> EntityView {
        EntityView {
            key: EntityKey::user(id).unwrap(),
            tier: Arc::new(Tier {
                name: "pro".into(),
                daily_limit: 100,
                monthly_limit: Some(3000),
                rpm: None,
                price_monthly_usd: Usd::ZERO,
            }),
            limits: vec![
                LimitView {
                    window: WindowName::Day,
                    limit: 100,
                    used: 7,
                    remaining: 93,
                    resets_at_ms: 1_795_838_400_123,
                },
                LimitView {
                    window: WindowName::Month,
                    limit: 3000,
                    used: 7,
                    remaining: 2993,
                    resets_at_ms: 1_796_083_200_000,
                },
            ],
            budget: BudgetView {
                limit_usd: limit.map(|l| Decimal::new(l, 2)),
                spent_usd: Decimal::new(spent_cents, 4),
                held_usd: Decimal::new(30, 3),
                remaining_usd: limit.map(|l| Decimal::new(l, 2) - Decimal::new(spent_cents, 4)),
                period_end_ms: 1_796_083_200_000,
            },
        }
    }

    fn via_serde(json: &CheckJson) -> serde_json::Value {
        let body = CheckResponse {
            allowed: json.allowed,
            reason: json.reason,
            error: json.reason,
            message: json.message.map(str::to_string),
            reservation_id: json.reservation_id.map(str::to_string),
            tier: json.views.first().map(|v| v.tier.name.clone()).unwrap_or_default(),
            limits: views::limits(json.views),
            budgets: views::budgets(json.views),
        };
        serde_json::to_value(&body).unwrap()
    }

    proptest! {
        #[test]
        fn same_json_as_serde(id in "[a-z\"\\\\|]{1,12}", spent in 0i64..10_000_000, limit in proptest::option::of(0i64..100_000),
                              refused in any::<bool>(), reserved in any::<bool>()) {
            let views = vec![view(&id, spent, limit), view("other", 5, None)];
            let json = CheckJson {
                allowed: !refused,
                reason: refused.then_some("rate_limited"),
                message: refused.then_some("the \"daily\" request limit is reached"),
                reservation_id: reserved.then_some("rsv_abc"),
                views: &views,
            };
            let fast: serde_json::Value = serde_json::from_slice(&json.to_bytes()).unwrap();
            prop_assert_eq!(fast, via_serde(&json));
        }
    }
}
