//! `POST /v1/check`: may this subject send the next message, and afford it?

use super::AppState;
use super::check_json::CheckJson;
use super::error::ApiError;
use super::extract::{ApiJson, Caller};
use super::subject::{self, GuestRef};
use super::views::{self, BudgetJson, LimitJson};
use crate::limits::calendar::now_ms;
use crate::limits::entity::{Refusal, WindowName};
use crate::limits::pricing::MAX_TOKENS;
use crate::money::Usd;
use crate::service::check::{self, CheckPlan};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Most messages one check may count.
pub const MAX_REQUESTS: u64 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub guest: Option<GuestRef>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub estimate: Option<Estimate>,
    #[serde(default)]
    pub requests: Option<u64>,
}

/// Either token counts (priced with `model`) or a cost.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Estimate {
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    #[serde(default)]
    pub cost_usd: Option<Usd>,
}

/// The check response's shape. The handler writes it with [`CheckJson`],
/// which produces the same JSON without going through serde (tested).
#[derive(Debug, Serialize)]
pub struct CheckResponse<'a> {
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<String>,
    pub tier: String,
    pub limits: Vec<LimitJson<'a>>,
    pub budgets: Vec<BudgetJson<'a>>,
}

pub async fn check(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<CheckRequest>,
) -> Result<Response, ApiError> {
    let subject = subject::resolve(&caller, &app.directory, req.user_id.as_deref(), req.guest.as_ref())?;
    let requests = req.requests.unwrap_or(1);
    if !(1..=MAX_REQUESTS).contains(&requests) {
        return Err(ApiError::invalid(
            "requests",
            format!("must be between 1 and {MAX_REQUESTS}"),
        ));
    }
    let estimate = match &req.estimate {
        None => None,
        Some(e) => Some(estimate_cost(&app, req.model.as_deref(), e)?),
    };
    let now = now_ms();
    let plan = CheckPlan {
        entities: subject.entities,
        requests,
        estimate,
        hold_ttl_ms: app.hold_ttl_ms,
    };
    let outcome = check::check(&app.router, plan, now).await?;

    let (status, reason, message) = match outcome.refusal {
        None => (StatusCode::OK, None, None),
        Some(Refusal::RateLimited { window, .. }) => (
            StatusCode::TOO_MANY_REQUESTS,
            Some("rate_limited"),
            Some(format!("the {} request limit is reached", window_label(window))),
        ),
        Some(Refusal::BudgetExceeded { .. }) => (
            StatusCode::TOO_MANY_REQUESTS,
            Some("budget_exceeded"),
            Some("the monthly budget does not cover this request".to_string()),
        ),
    };
    app.metrics_counters.check(reason).increment(1);
    let reservation_id = outcome.reservation.as_ref().map(|r| r.to_string());
    let body = CheckJson {
        allowed: outcome.allowed(),
        reason,
        message: message.as_deref(),
        reservation_id: reservation_id.as_deref(),
        views: &outcome.views,
    }
    .to_bytes();
    let mut response = (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response();
    views::rate_limit_headers(response.headers_mut(), &outcome.views, now);
    if let Some(refusal) = outcome.refusal {
        let secs = views::seconds_until(refusal.retry_at_ms(), now);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    Ok(response)
}

fn window_label(window: WindowName) -> &'static str {
    match window {
        WindowName::Day => "daily",
        WindowName::Month => "monthly",
        WindowName::Minute => "per-minute",
    }
}

/// The amount to reserve for an estimate.
fn estimate_cost(app: &AppState, model: Option<&str>, e: &Estimate) -> Result<Decimal, ApiError> {
    match (e.cost_usd, e.input_tokens, e.max_output_tokens) {
        (Some(cost), None, None) => Ok(cost.value()),
        (None, Some(input), Some(output)) => {
            check_tokens("estimate.input_tokens", input)?;
            check_tokens("estimate.max_output_tokens", output)?;
            let model =
                model.ok_or_else(|| ApiError::invalid("model", "a token estimate needs the model to price it"))?;
            let price = app.catalog.price(model).ok_or_else(|| unknown_model(model))?;
            Ok(price.cost(input, output).value())
        }
        _ => Err(ApiError::invalid(
            "estimate",
            "give either {\"cost_usd\"} or {\"input_tokens\", \"max_output_tokens\"}",
        )),
    }
}

pub fn check_tokens(field: &str, n: u64) -> Result<(), ApiError> {
    if n > MAX_TOKENS {
        return Err(ApiError::invalid(field, format!("must be at most {MAX_TOKENS}")));
    }
    Ok(())
}

pub fn unknown_model(model: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "unknown_model",
        format!("model {model:?} has no price; set one with PUT /v1/prices/{{model}} or send cost_usd"),
    )
}
