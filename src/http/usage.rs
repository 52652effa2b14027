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
use uuid::Uuid;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRequest {
    pub event_id: Uuid,
    #[serde(default)]
    pub reservation_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub guest: Option<GuestRef>,
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cost_usd: Option<Usd>,
}

#[derive(Debug, Serialize)]
pub struct UsageResponse<'a> {
    pub recorded: bool,
    pub duplicate: bool,
    #[serde(serialize_with = "decimal_as_string")]
    pub cost_usd: Decimal,
    pub budgets: Vec<BudgetJson<'a>>,
}

pub async fn record(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<UsageRequest>,
) -> Result<Response, ApiError> {
    let subject = subject::resolve(&caller, &app.directory, req.user_id.as_deref(), req.guest.as_ref())?;
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
            let id = ReservationId::parse(text)
                .ok_or_else(|| ApiError::invalid("reservation_id", "is not a reservation id Tollgate issued"))?;
            if id.entities != subject.entities {
                return Err(ApiError::invalid(
                    "reservation_id",
                    "was issued for a different subject than this usage names",
                ));
            }
            Some(id)
        }
    };
    let row = UsageRow {
        event_id: req.event_id,
        reservation_id: reservation.as_ref().map(|r| r.hold),
        subject: subject.usage(),
        model: req.model,
        input_tokens: req.input_tokens,
        output_tokens: req.output_tokens,
        cost_usd,
        created_at_ms: now_ms(),
    };
    let receipt = usage::record(&app.router, &app.ledger, row, reservation.as_ref()).await?;
    metrics::counter!("tollgate_usage_events_total", "duplicate" => if receipt.duplicate { "true" } else { "false" })
        .increment(1);
    Ok(Json(UsageResponse {
        recorded: true,
        duplicate: receipt.duplicate,
        cost_usd: receipt.cost_usd,
        budgets: views::budgets(&receipt.views),
    })
    .into_response())
}

#[derive(Debug, Serialize)]
pub struct ReleaseResponse {
    pub released: bool,
    #[serde(serialize_with = "decimal_as_string")]
    pub amount_usd: Decimal,
}

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
