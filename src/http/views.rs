//! The JSON shapes of limits and budgets, and the IETF RateLimit headers.

use crate::actor::EntityView;
use crate::http::openapi::SignedUsd;
use crate::limits::calendar::rfc3339;
use crate::limits::entity::WindowName;
use crate::money::{Usd, decimal_as_string, opt_decimal_as_string};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

/// One request window of one entity.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitJson<'a> {
    /// The entity, `kind:id`: `user:…`, `org:…`, `ip:…` or `fp:…`.
    #[schema(value_type = String, example = "user:u_123")]
    pub entity: &'a str,
    /// Which window.
    #[schema(value_type = WindowName)]
    pub window: &'static str,
    /// Requests allowed in the window.
    #[schema(example = 100)]
    pub limit: u64,
    /// Requests counted in the window so far.
    #[schema(example = 2)]
    pub used: u64,
    /// Requests left in the window.
    #[schema(example = 98)]
    pub remaining: u64,
    /// When the window resets (RFC 3339, UTC).
    #[schema(format = DateTime, example = "2026-11-29T00:00:00Z")]
    pub resets_at: String,
}

/// One entity's monthly budget and spend.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetJson<'a> {
    /// The entity, `kind:id`.
    #[schema(value_type = String, example = "user:u_123")]
    pub entity: &'a str,
    /// The monthly budget; null when the entity has none.
    #[serde(serialize_with = "opt_decimal_as_string")]
    #[schema(value_type = Option<Usd>, required = true)]
    pub limit_usd: Option<Decimal>,
    /// Recorded spend this month.
    #[serde(serialize_with = "decimal_as_string")]
    #[schema(value_type = Usd)]
    pub spent_usd: Decimal,
    /// Held by unsettled reservations.
    #[serde(serialize_with = "decimal_as_string")]
    #[schema(value_type = Usd)]
    pub held_usd: Decimal,
    /// Budget minus spend and holds; null when the entity has no budget.
    #[serde(serialize_with = "opt_decimal_as_string")]
    #[schema(value_type = Option<SignedUsd>, required = true)]
    pub remaining_usd: Option<Decimal>,
    /// When the budget period (the calendar month, UTC) ends.
    #[schema(format = DateTime, example = "2026-12-01T00:00:00Z")]
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
