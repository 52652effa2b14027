//! `POST /v1/usage` (record what a call cost) and
//! `DELETE /v1/reservations/{id}` (release a hold).

use super::AppState;
use super::check::{check_tokens, unknown_model};
use super::error::ApiError;
use super::extract::{ApiJson, Caller};
use super::subject::{self, GuestRef};
use super::views::{self, BudgetJson};
use crate::limits::calendar::now_ms;
use crate::limits::pricing::valid_model_name;
use crate::money::{Usd, decimal_as_string};
use crate::service::reservation::ReservationId;
use crate::service::usage;
use crate::store::UsageRow;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;
use uuid::Uuid;

/// What one call cost. The subject is named as in a check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageRequest {
    /// The caller's id for this event; recording the same id again is
    /// answered `duplicate: true` and counted once.
    #[schema(value_type = String, format = "uuid")]
    pub event_id: Uuid,
    /// The reservation the check returned; recording settles it (the hold
    /// is replaced by the actual cost). Must be for the same subject.
    #[serde(default)]
    pub reservation_id: Option<String>,
    /// The user charged (service credentials only; see the check).
    #[serde(default)]
    #[schema(example = "u_123")]
    pub user_id: Option<String>,
    /// The guest charged (service credentials only).
    #[serde(default)]
    pub guest: Option<GuestRef>,
    /// The model that answered: 1-128 characters of letters, digits and
    /// `- _ . : / @`.
    #[schema(example = "claude-sonnet-4", pattern = r"^[A-Za-z0-9_.:/@-]{1,128}$")]
    pub model: String,
    /// Input tokens (at most 100000000).
    #[schema(maximum = 100_000_000, example = 1234)]
    pub input_tokens: u64,
    /// Output tokens (at most 100000000).
    #[schema(maximum = 100_000_000, example = 567)]
    pub output_tokens: u64,
    /// The cost, if the caller knows it; otherwise it is computed from the
    /// model's price (and the model must have one).
    #[serde(default)]
    pub cost_usd: Option<Usd>,
}

/// The recorded usage and the budgets it was charged to.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageResponse<'a> {
    /// Always true: the event is durable in the ledger.
    pub recorded: bool,
    /// True when this `event_id` was already recorded (nothing charged again).
    pub duplicate: bool,
    /// What the event cost.
    #[serde(serialize_with = "decimal_as_string")]
    #[schema(value_type = Usd)]
    pub cost_usd: Decimal,
    /// One budget per entity charged, after this event.
    pub budgets: Vec<BudgetJson<'a>>,
}

/// Record usage
///
/// Records what a call cost, charging the subject's budgets (a user and
/// their organisation, or a guest), and settles the reservation if one is
/// named. Service credentials only (the backend that made the model call):
/// a guest gets 401, an end user's own credential 403. Answered only once the event is durable in the ledger; retrying
/// with the same `event_id` is safe. Usage is recorded even past a budget:
/// the call has already happened.
#[utoipa::path(
    post,
    path = "/v1/usage",
    operation_id = "record_usage",
    tag = "usage",
    request_body = UsageRequest,
    responses(
        (status = 200, description = "Recorded (or already recorded: `duplicate`).", body = UsageResponse),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn record(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<UsageRequest>,
) -> Result<Response, ApiError> {
    subject::may_write_money(&caller, &app.directory)?;
    let subject = subject::resolve(
        &caller,
        &app.directory,
        req.user_id.as_deref(),
        req.guest.as_ref(),
        app.auth.guest_ipv6_prefix,
    )?;
    if !valid_model_name(&req.model) {
        return Err(ApiError::invalid(
            "model",
            "must be 1-128 characters of letters, digits and - _ . : / @",
        ));
    }
    check_tokens("input_tokens", req.input_tokens)?;
    check_tokens("output_tokens", req.output_tokens)?;
    let cost_usd = match req.cost_usd {
        Some(cost) => cost,
        None => app
            .catalog
            .price(&req.model)
            .ok_or_else(|| unknown_model(&req.model))?
            .cost(req.input_tokens, req.output_tokens),
    };
    let reservation = match req.reservation_id.as_deref() {
        None => None,
        Some(text) => {
            // Answered as `DELETE /v1/reservations/{id}` answers them: a
            // reservation that is not this subject's does not exist for it.
            let id = ReservationId::parse(text).ok_or_else(|| {
                ApiError::not_found(
                    "reservation_not_found",
                    "reservation_id: is not a reservation id Tollgate issued",
                )
            })?;
            if id.entities != subject.entities {
                return Err(ApiError::not_found(
                    "reservation_not_found",
                    "reservation_id: was issued for a different subject than this usage names",
                ));
            }
            Some(id)
        }
    };
    let model = req.model;
    let row = UsageRow {
        event_id: req.event_id,
        reservation_id: reservation.as_ref().map(|r| r.hold),
        subject: subject.usage(),
        model: model.clone(),
        input_tokens: req.input_tokens,
        output_tokens: req.output_tokens,
        cost_usd,
        created_at_ms: now_ms(),
    };
    let receipt = usage::record(&app.router, &app.ledger, app.store.health(), row, reservation.as_ref()).await?;
    app.metrics_counters.usage(receipt.duplicate).increment(1);
    if !receipt.duplicate {
        crate::telemetry::usage::record(
            &app.catalog,
            app.telemetry.high_cost_threshold_usd,
            &model,
            receipt.cost_usd,
            &receipt.views,
        );
    }
    Ok(Json(UsageResponse {
        recorded: true,
        duplicate: receipt.duplicate,
        cost_usd: receipt.cost_usd,
        budgets: views::budgets(&receipt.views),
    })
    .into_response())
}

/// A released hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReleaseResponse {
    /// Always true.
    pub released: bool,
    /// The amount the hold returned to the budgets.
    #[serde(serialize_with = "decimal_as_string")]
    #[schema(value_type = Usd)]
    pub amount_usd: Decimal,
}

/// Release a reservation
///
/// Returns a check's hold to the budgets when the call will not happen (or
/// failed before costing anything). The request counts stay counted.
/// Service credentials only (a guest gets 401, an end user 403). An
/// unknown, settled or expired reservation, or one for a subject the
/// caller may not act on, is 404.
#[utoipa::path(
    delete,
    path = "/v1/reservations/{id}",
    operation_id = "release_reservation",
    tag = "usage",
    params(
        ("id" = String, Path, description = "The `reservation_id` a check returned."),
    ),
    responses(
        (status = 200, description = "Released.", body = ReleaseResponse),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn release(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<ReleaseResponse>, ApiError> {
    let not_found = || {
        ApiError::not_found(
            "reservation_not_found",
            "no such reservation (or it was settled or expired)",
        )
    };
    subject::may_write_money(&caller, &app.directory)?;
    let reservation = ReservationId::parse(&id).ok_or_else(not_found)?;
    // A caller that may not act on the reservation's entities learns
    // nothing about it, not even that it exists.
    if !subject::may_act_on(&caller, &app.directory, &reservation.entities) {
        return Err(not_found());
    }
    let amount = usage::release(&app.router, &reservation).await?.ok_or_else(not_found)?;
    Ok(Json(ReleaseResponse {
        released: true,
        amount_usd: amount,
    }))
}
