//! The JSON shapes of limits and budgets, and the IETF RateLimit headers.

use crate::actor::EntityView;
use crate::limits::calendar::rfc3339;
use crate::money::{decimal_as_string, opt_decimal_as_string};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use rust_decimal::Decimal;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct LimitJson<'a> {
    pub entity: &'a str,
    pub window: &'static str,
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    pub resets_at: String,
}

#[derive(Debug, Serialize)]
pub struct BudgetJson<'a> {
    pub entity: &'a str,
    #[serde(serialize_with = "opt_decimal_as_string")]
    pub limit_usd: Option<Decimal>,
    #[serde(serialize_with = "decimal_as_string")]
    pub spent_usd: Decimal,
    #[serde(serialize_with = "decimal_as_string")]
    pub held_usd: Decimal,
    #[serde(serialize_with = "opt_decimal_as_string")]
    pub remaining_usd: Option<Decimal>,
    pub period_end: String,
}

pub fn limits(views: &[EntityView]) -> Vec<LimitJson<'_>> {
    views
        .iter()
        .flat_map(|v| {
            v.limits.iter().map(move |l| LimitJson {
                entity: v.key.as_str(),
                window: l.window.as_str(),
                limit: l.limit,
                used: l.used,
                remaining: l.remaining,
                resets_at: rfc3339(l.resets_at_ms),
            })
        })
        .collect()
}

pub fn budgets(views: &[EntityView]) -> Vec<BudgetJson<'_>> {
    views
        .iter()
        .map(|v| BudgetJson {
            entity: v.key.as_str(),
            limit_usd: v.budget.limit_usd,
            spent_usd: v.budget.spent_usd,
            held_usd: v.budget.held_usd,
            remaining_usd: v.budget.remaining_usd,
            period_end: rfc3339(v.budget.period_end_ms),
        })
        .collect()
}

/// Adds `RateLimit-Policy` (every window of every entity) and `RateLimit`
/// (the window closest to exhaustion), per draft-ietf-httpapi-ratelimit-headers:
/// `RateLimit-Policy: "user-day";q=10;w=86400` and `RateLimit: "user-day";r=3;t=5000`.
pub fn rate_limit_headers(headers: &mut HeaderMap, views: &[EntityView], now_ms: i64) {
    let mut num = itoa::Buffer::new();
    let mut policy = String::with_capacity(96);
    // (remaining, entity kind, window, resets at) of the tightest window.
    let mut tightest: Option<(u64, &str, &str, i64)> = None;
    for view in views {
        let kind = view.key.kind().prefix();
        for l in &view.limits {
            if !policy.is_empty() {
                policy.push_str(", ");
            }
            let window = l.window.as_str();
            policy.push('"');
            policy.push_str(kind);
            policy.push('-');
            policy.push_str(window);
            policy.push_str("\";q=");
            policy.push_str(num.format(l.limit));
            policy.push_str(";w=");
            policy.push_str(num.format(l.window.seconds()));
            if tightest.is_none_or(|(r, ..)| l.remaining < r) {
                tightest = Some((l.remaining, kind, window, l.resets_at_ms));
            }
        }
    }
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(HeaderName::from_static("ratelimit-policy"), value);
    }
    if let Some((remaining, kind, window, resets_at)) = tightest {
        let mut limit = String::with_capacity(40);
        limit.push('"');
        limit.push_str(kind);
        limit.push('-');
        limit.push_str(window);
        limit.push_str("\";r=");
        limit.push_str(num.format(remaining));
        limit.push_str(";t=");
        limit.push_str(num.format(seconds_until(resets_at, now_ms)));
        if let Ok(value) = HeaderValue::from_str(&limit) {
            headers.insert(HeaderName::from_static("ratelimit"), value);
        }
    }
}

/// Whole seconds from `now` until `at`, rounded up, at least 1.
pub fn seconds_until(at_ms: i64, now_ms: i64) -> i64 {
    ((at_ms - now_ms + 999) / 1000).max(1)
}
