//! `GET /v1/usage/summary`: exact decimal sums from the ledger, narrowed to
//! what the caller may see.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use crate::identity::Access;
use crate::limits::calendar::{Period, now_ms, rfc3339};
use crate::money::decimal_as_string;
use crate::store::{SummaryFilter, SummaryGroup};
use axum::Json;
use axum::extract::State;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    #[serde(default)]
    pub org_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    /// RFC 3339; default: the start of the current calendar month (UTC).
    #[serde(default)]
    pub from: Option<String>,
    /// RFC 3339, exclusive; default: now.
    #[serde(default)]
    pub to: Option<String>,
    /// `model` (default), `user` or `day`.
    #[serde(default)]
    pub group_by: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SummaryGroupJson {
    pub key: String,
    pub events: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(serialize_with = "decimal_as_string")]
    pub cost_usd: Decimal,
}

#[derive(Debug, Serialize)]
pub struct SummaryResponse {
    pub org_id: Option<String>,
    pub user_id: Option<String>,
    pub from: String,
    pub to: String,
    pub group_by: &'static str,
    pub events: u64,
    #[serde(serialize_with = "decimal_as_string")]
    pub total_usd: Decimal,
    pub groups: Vec<SummaryGroupJson>,
}

fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| ApiError::invalid(field, "must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z"))?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| ApiError::invalid(field, "is out of range"))
}

pub async fn summary(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<SummaryQuery>,
) -> Result<Json<SummaryResponse>, ApiError> {
    let (group, group_name) = match q.group_by.as_deref() {
        None | Some("model") => (SummaryGroup::Model, "model"),
        Some("user") => (SummaryGroup::User, "user"),
        Some("day") => (SummaryGroup::Day, "day"),
        Some(_) => return Err(ApiError::invalid("group_by", "must be model, user or day")),
    };
    let now = now_ms();
    let from_ms = match &q.from {
        Some(text) => parse_time("from", text)?,
        None => Period::containing(now).start_ms(),
    };
    let to_ms = match &q.to {
        Some(text) => parse_time("to", text)?,
        None => now + 1,
    };
    if to_ms <= from_ms {
        return Err(ApiError::invalid("to", "must be after from"));
    }
    let (org_id, user_id) = Access::new(&caller, &app.directory)
        .summary_scope(q.org_id.as_deref(), q.user_id.as_deref())
        .map_err(|denied| {
            ApiError::denied(
                denied,
                "no such organisation or user for this credential",
                "usage summaries need a credential",
            )
        })?;
    let filter = SummaryFilter {
        org_id: org_id.as_deref().map(str::to_string),
        user_id: user_id.as_deref().map(str::to_string),
        from_ms,
        to_ms,
    };
    let rows = app.store.usage_summary(&filter, group).await?;
    Ok(Json(SummaryResponse {
        events: rows.iter().map(|r| r.events).sum(),
        total_usd: rows.iter().map(|r| r.cost_usd).sum(),
        groups: rows
            .into_iter()
            .map(|r| SummaryGroupJson {
                key: r.group,
                events: r.events,
                input_tokens: r.input_tokens,
                output_tokens: r.output_tokens,
                cost_usd: r.cost_usd,
            })
            .collect(),
        org_id: filter.org_id,
        user_id: filter.user_id,
        from: rfc3339(from_ms),
        to: rfc3339(to_ms),
        group_by: group_name,
    }))
}
