//! `GET /v1/usage/summary`: exact decimal sums from the ledger, narrowed to
//! what the caller may see.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use crate::identity::Access;
use crate::limits::calendar::{Period, now_ms, rfc3339};
use crate::money::{Usd, decimal_as_string};
use crate::store::{SummaryFilter, SummaryGroup};
use axum::Json;
use axum::extract::State;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

/// What to sum, narrowed to what the caller may see.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryQuery {
    /// Only this organisation's usage.
    #[serde(default)]
    pub org_id: Option<String>,
    /// Only this user's usage (a member of `org_id`, if that is given).
    #[serde(default)]
    #[param(example = "u_123")]
    pub user_id: Option<String>,
    /// RFC 3339; default: the start of the current calendar month (UTC).
    #[serde(default)]
    #[param(format = DateTime, example = "2026-11-01T00:00:00Z")]
    pub from: Option<String>,
    /// RFC 3339, exclusive; default: now. At or before `from`, the period
    /// is empty and nothing is summed.
    #[serde(default)]
    #[param(format = DateTime, example = "2026-12-01T00:00:00Z")]
    pub to: Option<String>,
    /// `model` (default), `user` or `day`.
    #[serde(default)]
    #[param(value_type = Option<SummaryGroup>)]
    pub group_by: Option<String>,
}

/// One group's totals.
#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryGroupJson {
    /// The model, the user id (`""` for usage charged to no user), or the
    /// UTC date `YYYY-MM-DD`, by `group_by`.
    #[schema(example = "claude-sonnet-4")]
    pub key: String,
    /// Usage events in the group.
    pub events: u64,
    /// Their input tokens.
    pub input_tokens: u64,
    /// Their output tokens.
    pub output_tokens: u64,
    /// Their cost.
    #[serde(serialize_with = "decimal_as_string")]
    #[schema(value_type = Usd)]
    pub cost_usd: Decimal,
}

/// Exact sums of recorded usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryResponse {
    /// The organisation summed (null: not narrowed to one).
    #[schema(required = true)]
    pub org_id: Option<String>,
    /// The user summed (null: not narrowed to one).
    #[schema(required = true, example = "u_123")]
    pub user_id: Option<String>,
    /// Start of the period.
    #[schema(format = DateTime, example = "2026-11-01T00:00:00Z")]
    pub from: String,
    /// End of the period, exclusive.
    #[schema(format = DateTime, example = "2026-11-28T06:54:10.123Z")]
    pub to: String,
    /// What the groups are.
    #[schema(value_type = SummaryGroup)]
    pub group_by: &'static str,
    /// Events in the period.
    pub events: u64,
    /// Their total cost.
    #[serde(serialize_with = "decimal_as_string")]
    #[schema(value_type = Usd)]
    pub total_usd: Decimal,
    /// Per group; the groups add up to the totals.
    pub groups: Vec<SummaryGroupJson>,
}

fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| ApiError::invalid(field, "must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z"))?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| ApiError::invalid(field, "is out of range"))
}

/// Usage summary
///
/// Exact decimal sums from the usage ledger over a period, grouped by
/// model, user or day. Admins (and `service` keys of no organisation) see
/// everything; an organisation's keys and managers see their
/// organisation; anyone else only their own usage. Asking for what the
/// credential may not see is 404.
#[utoipa::path(
    get,
    path = "/v1/usage/summary",
    operation_id = "usage_summary",
    tag = "usage",
    params(SummaryQuery),
    responses(
        (status = 200, description = "The sums.", body = SummaryResponse),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearer" = [])),
)]
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
    // A `to` at or before `from` is an empty period: it sums nothing (a
    // 400 here could not be described by the query's schema).
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
