//! `POST /v1/check`: may this subject send the next message, and afford it?

use super::AppState;
use super::check_json::CheckJson;
use super::error::ApiError;
use super::extract::{ApiJson, Caller};
use super::subject::{self, GuestRef};
use super::views::{self, BudgetJson, LimitJson};
use crate::identity::Principal;
use crate::limits::calendar::now_ms;
use crate::limits::entity::{Refusal, WindowName};
use crate::limits::pricing::{MAX_TOKENS, valid_model_name};
use crate::money::Usd;
use crate::service::check::{self, CheckPlan};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// Most messages one check may count.
pub const MAX_REQUESTS: u64 = 1000;

/// What to check: whose limits (the caller by default), and optionally an
/// estimated cost to reserve against the budget.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The user to check. Only a service credential (admin, `service` key)
    /// may name a subject; a user credential is its own subject.
    #[serde(default)]
    #[schema(example = "u_123")]
    pub user_id: Option<String>,
    /// A guest to check (instead of `user_id`), named by a service credential.
    #[serde(default)]
    pub guest: Option<GuestRef>,
    /// The model that will answer; prices a token estimate.
    #[serde(default)]
    #[schema(example = "claude-sonnet-4")]
    pub model: Option<String>,
    /// Reserve this much of the budget until the usage is recorded (or the
    /// hold expires). Without it, or at zero, nothing is reserved (and no
    /// `reservation_id` is given). Guests without a credential may not
    /// reserve (403).
    #[serde(default)]
    pub estimate: Option<Estimate>,
    /// How many messages this check counts (default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000, example = 1)]
    pub requests: Option<u64>,
}

/// Either token counts (priced with `model`) or a cost: give
/// `{"input_tokens", "max_output_tokens"}` or `{"cost_usd"}`, not both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Estimate {
    /// Input tokens of the call (at most 100000000).
    #[serde(default)]
    #[schema(maximum = 100_000_000, example = 1234)]
    pub input_tokens: Option<u64>,
    /// The most output tokens the call may produce (at most 100000000).
    #[serde(default)]
    #[schema(maximum = 100_000_000, example = 1024)]
    pub max_output_tokens: Option<u64>,
    /// The estimated cost, instead of token counts.
    #[serde(default)]
    pub cost_usd: Option<Usd>,
}

/// Why a check was refused.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum RefusalReason {
    /// A request limit (daily, monthly or per-minute) is reached.
    RateLimited,
    /// The monthly budget does not cover the estimate.
    BudgetExceeded,
}

/// The answer to a check, allowed (200) or refused (429).
// The handler writes it with [`CheckJson`], which produces the same JSON
// without going through serde (tested); this type is its specification.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResponse<'a> {
    /// Whether the message may be sent.
    pub allowed: bool,
    /// Why it was refused (only when refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = RefusalReason)]
    pub reason: Option<&'static str>,
    /// The same code as `reason`, as in every error body (only when refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = RefusalReason)]
    pub error: Option<&'static str>,
    /// What was refused, for people (only when refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, example = "the daily request limit is reached")]
    pub message: Option<String>,
    /// The hold taken for `estimate`: pass it to `POST /v1/usage`, or
    /// release it with `DELETE /v1/reservations/{id}` (only when an
    /// estimate was given and the check allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String)]
    pub reservation_id: Option<String>,
    /// The tier of the subject's first entity (its organisation's, for a member).
    #[schema(example = "pro")]
    pub tier: String,
    /// Every request window of every entity checked.
    pub limits: Vec<LimitJson<'a>>,
    /// One budget per entity checked.
    pub budgets: Vec<BudgetJson<'a>>,
}

/// Check (and reserve)
///
/// May this subject send the next message, and afford it? Counts `requests`
/// messages against every window of the subject's entities (a user and
/// their organisation, or a guest's IP and fingerprint), all or nothing, and
/// with an `estimate` holds that much of each budget. A refusal is 429 with
/// the same body, `reason` `rate_limited` or `budget_exceeded`, and
/// `Retry-After`; nothing is counted then. Every answer carries the IETF
/// `RateLimit-Policy` and `RateLimit` headers.
///
/// Guests may call without a credential (they are then the subject); a
/// service credential names `user_id` or `guest`.
#[utoipa::path(
    post,
    path = "/v1/check",
    operation_id = "check",
    tag = "checks",
    request_body = CheckRequest,
    params(super::openapi::FingerprintHeader),
    responses(
        (status = 200, description = "Allowed; counted, and reserved if an estimate was given.",
            body = CheckResponse, headers(
                ("RateLimit-Policy" = String, description = "Every window: `\"user-day\";q=100;w=86400, …`"),
                ("RateLimit" = String, description = "The window closest to exhaustion: `\"user-day\";r=98;t=86395`"),
            )),
        (status = 429, description = "Refused (`rate_limited` or `budget_exceeded`); nothing was counted. \
            A guest bringing more than `--max-new-entities-per-ip` new entities into memory in one second \
            is refused with an error body (`rate_limited`) and `Retry-After`.",
            body = CheckResponse, headers(
                ("Retry-After" = i64, description = "Seconds until the refusing window resets."),
                ("RateLimit-Policy" = String, description = "Every window."),
                ("RateLimit" = String, description = "The window closest to exhaustion."),
            )),
        (status = 400, response = super::openapi::BadRequest),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 404, response = super::openapi::NotFound),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 503, response = super::openapi::Unavailable),
    ),
    security(("bearer" = []), ()),
)]
pub async fn check(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<CheckRequest>,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let subject = subject::resolve(
        &caller,
        &app.directory,
        req.user_id.as_deref(),
        req.guest.as_ref(),
        app.auth.guest_ipv6_prefix,
    )?;
    let requests = req.requests.unwrap_or(1);
    if !(1..=MAX_REQUESTS).contains(&requests) {
        return Err(ApiError::invalid(
            "requests",
            format!("must be between 1 and {MAX_REQUESTS}"),
        ));
    }
    // A model is validated as in usage and prices, even where only a cost
    // estimate (or none) makes it unused here.
    if let Some(model) = req.model.as_deref()
        && !valid_model_name(model)
    {
        return Err(ApiError::invalid(
            "model",
            "must be 1-128 characters of letters, digits and - _ . : / @",
        ));
    }
    let estimate = match &req.estimate {
        None => None,
        Some(e) => Some(estimate_cost(&app, req.model.as_deref(), e)?),
    };
    if estimate.is_some() && matches!(caller, Principal::Guest(_)) {
        // A hold keeps its entity resident until it is settled or expires,
        // and only a service credential may settle: a guest's estimate
        // would pin memory nobody can free.
        return Err(ApiError::forbidden(
            "estimate: a guest cannot reserve budget; send the check with a user or service credential",
        ));
    }
    subject::bound_new_entities(&app, &caller, &subject)?;
    let now = now_ms();
    let plan = CheckPlan {
        entities: subject.entities,
        requests,
        estimate,
        hold_ttl_ms: app.hold_ttl_ms,
    };
    let forwarded = !plan.entities.iter().all(|k| app.router.is_local(k));
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
    app.metrics_counters
        .check_duration(reason, forwarded, started.elapsed().as_secs_f64());
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
    // 404 like any missing resource: the price (`/v1/prices/{model}`)
    // does not exist; the request itself is well formed.
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_model",
        format!("model {model:?} has no price; set one with PUT /v1/prices/{{model}} or send cost_usd"),
    )
}
