//! `GET /v1/status`: counters and budget without consuming anything.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, Caller};
use super::subject::{self, GuestRef};
use super::views::{self, BudgetJson, LimitJson};
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// Whose status: as in a check, the caller by default; a service
/// credential names `user_id`, or a guest by `ip` (and `fingerprint`).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// The user (service credentials only).
    #[serde(default)]
    #[param(example = "u_123")]
    pub user_id: Option<String>,
    /// A guest's IP address (service credentials only).
    #[serde(default)]
    #[param(example = "203.0.113.7")]
    pub ip: Option<String>,
    /// The guest's fingerprint, with `ip`.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// Counters and budgets, as a check reports them.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse<'a> {
    /// The tier of the subject's first entity.
    #[schema(example = "pro")]
    pub tier: String,
    /// Every request window of every entity.
    pub limits: Vec<LimitJson<'a>>,
    /// One budget per entity.
    pub budgets: Vec<BudgetJson<'a>>,
}

/// Read limits and budgets
///
/// The subject's counters and budgets, exactly as a check would report
/// them, without counting or reserving anything.
#[utoipa::path(
    get,
    path = "/v1/status",
    operation_id = "get_status",
    tag = "checks",
    params(StatusQuery, super::openapi::FingerprintHeader),
    responses(
        (status = 200, description = "The subject's limits and budgets.", body = StatusResponse),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 429, response = super::openapi::TooManyRequests),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearer" = []), ()),
)]
pub async fn status(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Response, ApiError> {
    let guest = match (q.ip, q.fingerprint) {
        (Some(ip), fingerprint) => Some(GuestRef { ip, fingerprint }),
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "ip",
                "a guest is named by ip (and optionally fingerprint)",
            ));
        }
        (None, None) => None,
    };
    let subject = subject::resolve(
        &caller,
        &app.directory,
        q.user_id.as_deref(),
        guest.as_ref(),
        app.auth.guest_ipv6_prefix,
    )?;
    // A view starts no actor, but a non-resident entity costs a store read.
    subject::bound_new_entities(&app, &caller, &subject)?;
    let mut found = Vec::with_capacity(subject.entities.len());
    for key in &subject.entities {
        found.push(app.router.view(key).await?);
    }
    Ok(Json(StatusResponse {
        tier: found.first().map(|v| v.tier.name.clone()).unwrap_or_default(),
        limits: views::limits(&found),
        budgets: views::budgets(&found),
    })
    .into_response())
}
