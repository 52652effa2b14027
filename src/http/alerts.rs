//! `GET /v1/alerts`: the budget alerts fired, each with its deliveries.
//!
//! Who may call: admins (any entity), an organisation's managers (the
//! organisation's and its current members' alerts), a user (their own).
//! Anything else is a 404 (another tenant's) or 403 (a member asking for
//! their organisation's). Read-only; the worst a caller can do is read
//! what they may read anyway, a page at a time.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use super::openapi::{BadRequest, Forbidden, NotFound, Unauthorized, Unavailable};
use crate::entity::EntityKey;
use crate::identity::alert_access::AlertReach;
use crate::identity::{Access, Denied};
use crate::limits::calendar::rfc3339;
use crate::money::{Usd, decimal_as_string};
use crate::store::{AlertRecord, AlertScope};
use axum::Json;
use axum::extract::State;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

/// Most alerts one answer holds.
pub const MAX_ALERTS: u32 = 1000;
/// Alerts per answer when `limit` is not given.
pub const DEFAULT_ALERTS: u32 = 100;

/// Which alerts.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Only this entity's alerts (`user:…` or `org:…`). Omitted: all the
    /// caller may see.
    #[param(example = "user:u_123")]
    pub entity: Option<String>,
    /// RFC 3339: only alerts fired at or after this time. Omitted: all.
    #[param(format = DateTime, example = "2026-11-01T00:00:00Z")]
    pub since: Option<String>,
    /// At most this many, newest first: 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One delivery of an alert to one channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryJson {
    pub channel_id: String,
    /// `pending` (being tried), `delivered` or `dead` (refused for good,
    /// or 24 h of retries failed).
    #[schema(example = "delivered")]
    pub status: &'static str,
    /// Attempts so far.
    pub attempts: u32,
    /// The last failure, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub delivered_at: Option<String>,
}

/// One alert.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertJson {
    /// The alert's id (the webhook payload's `id`).
    pub id: String,
    #[schema(example = "user:u_123")]
    pub entity: String,
    /// `threshold` (spend reached `threshold_pct` of the budget) or
    /// `overage` (spend went past it).
    #[schema(example = "threshold")]
    pub kind: &'static str,
    #[schema(example = 90)]
    pub threshold_pct: u8,
    /// The budget period's first instant (calendar month, UTC).
    #[schema(format = DateTime, example = "2026-11-01T00:00:00Z")]
    pub period_start: String,
    /// Spend when it fired.
    #[serde(serialize_with = "decimal_as_string")]
    #[schema(value_type = Usd)]
    pub spent_usd: Decimal,
    #[serde(serialize_with = "decimal_as_string")]
    #[schema(value_type = Usd)]
    pub limit_usd: Decimal,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub deliveries: Vec<DeliveryJson>,
}

/// Alerts, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertJson>,
}

impl From<AlertRecord> for AlertJson {
    fn from(record: AlertRecord) -> Self {
        let alert = record.alert;
        AlertJson {
            id: alert.id.to_string(),
            entity: alert.entity,
            kind: alert.kind.as_str(),
            threshold_pct: alert.threshold_pct,
            period_start: rfc3339(alert.period.start_ms()),
            spent_usd: alert.spent_usd,
            limit_usd: alert.limit_usd,
            created_at: rfc3339(alert.created_at_ms),
            deliveries: record
                .deliveries
                .into_iter()
                .map(|d| DeliveryJson {
                    channel_id: d.channel_id,
                    status: d.status.as_str(),
                    attempts: d.attempts,
                    last_error: d.last_error,
                    delivered_at: d.delivered_at_ms.map(rfc3339),
                })
                .collect(),
        }
    }
}

/// List fired alerts
///
/// Budget alerts and where each was delivered. Admins read any entity's;
/// an organisation's owners, admins and `org_admin` keys their
/// organisation's and its members'; a user their own.
#[utoipa::path(
    get,
    path = "/v1/alerts",
    operation_id = "list_alerts",
    tag = "alerts",
    params(AlertsQuery),
    responses(
        (status = 200, description = "Alerts, newest first.", body = AlertList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn list(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<AlertsQuery>,
) -> Result<Json<AlertList>, ApiError> {
    let entity = q
        .entity
        .as_deref()
        .map(EntityKey::parse)
        .transpose()
        .map_err(|e| ApiError::invalid("entity", e))?;
    let reach = Access::new(&caller, &app.directory)
        .alert_reach(entity.as_ref())
        .map_err(|denied: Denied| {
            ApiError::denied(
                denied,
                "no such entity",
                "alerts are read with a credential in Authorization",
            )
        })?;
    let since_ms = match q.since.as_deref() {
        None => 0,
        Some(text) => {
            let at = OffsetDateTime::parse(text, &Rfc3339)
                .map_err(|_| ApiError::invalid("since", "must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z"))?;
            i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| ApiError::invalid("since", "is out of range"))?
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_ALERTS);
    if !(1..=MAX_ALERTS).contains(&limit) {
        return Err(ApiError::invalid("limit", format!("must be 1-{MAX_ALERTS}")));
    }
    let scope = match reach {
        AlertReach::All => AlertScope::All,
        AlertReach::Org(org) => AlertScope::Org(org.to_string()),
        AlertReach::Entity(key) => AlertScope::Entity(key),
    };
    let alerts = app.store.alerts(&scope, since_ms, limit).await?;
    Ok(Json(AlertList {
        alerts: alerts.into_iter().map(AlertJson::from).collect(),
    }))
}
