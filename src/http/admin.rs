//! Admin routes: tiers, users, budgets and prices. Each change is written
//! to the store first, then applied to memory (catalogue or actor), so a
//! restart never forgets an acknowledged change.

use super::AppState;
use super::error::ApiError;
use super::extract::{AdminCaller, ApiJson, Caller};
use crate::entity::EntityKey;
use crate::identity::{Access, Principal};
use crate::limits::pricing::{Price, valid_model_name};
use crate::limits::tier::Tier;
use crate::money::Usd;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

fn unknown_tier(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown_tier", format!("no tier named {name:?}"))
}

pub async fn list_tiers(_: AdminCaller, State(app): State<Arc<AppState>>) -> Json<Vec<Tier>> {
    Json(app.catalog.tiers().iter().map(|t| (**t).clone()).collect())
}

pub async fn get_tier(
    _: AdminCaller,
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Tier>, ApiError> {
    let tier = app.catalog.tier(&name).ok_or_else(|| unknown_tier(&name))?;
    Ok(Json((*tier).clone()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierBody {
    pub daily_limit: u64,
    #[serde(default)]
    pub monthly_limit: Option<u64>,
    #[serde(default)]
    pub rpm: Option<u32>,
    pub price_monthly_usd: Usd,
}

pub async fn put_tier(
    _: AdminCaller,
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<TierBody>,
) -> Result<Json<Tier>, ApiError> {
    let tier = Tier {
        name,
        daily_limit: body.daily_limit,
        monthly_limit: body.monthly_limit,
        rpm: body.rpm,
        price_monthly_usd: body.price_monthly_usd,
    };
    tier.validate().map_err(|e| ApiError::invalid("tier", e))?;
    app.store.put_tier(&tier).await?;
    app.catalog.put_tier(tier.clone());
    Ok(Json(tier))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    pub tier: String,
}

#[derive(Debug, Serialize)]
pub struct UserResponse {
    pub id: String,
    pub tier: String,
}

pub async fn put_user(
    _: AdminCaller,
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserBody>,
) -> Result<Json<UserResponse>, ApiError> {
    let key = EntityKey::user(&id).map_err(|e| ApiError::invalid("user id", e))?;
    if app.catalog.tier(&body.tier).is_none() {
        return Err(ApiError::invalid("tier", format!("no tier named {:?}", body.tier)));
    }
    app.store.put_user(&id, &body.tier).await?;
    // A member follows the organisation's plan; their own tier applies
    // again when they leave.
    if app.directory.org_of(&id).is_none() {
        app.router.set_tier(&key, &body.tier).await?;
    }
    Ok(Json(UserResponse { id, tier: body.tier }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    pub monthly_budget_usd: Usd,
}

#[derive(Debug, Serialize)]
pub struct BudgetResponse {
    pub entity: String,
    pub monthly_budget_usd: Option<Usd>,
}

pub async fn put_user_budget(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<BudgetBody>,
) -> Result<Json<BudgetResponse>, ApiError> {
    user_budget(&app, &caller, &id, Some(body.monthly_budget_usd)).await
}

pub async fn delete_user_budget(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<BudgetResponse>, ApiError> {
    user_budget(&app, &caller, &id, None).await
}

/// Admins set anyone's budget; an organisation's managers set their
/// members' budgets.
async fn user_budget(
    app: &AppState,
    caller: &Principal,
    id: &str,
    budget: Option<Usd>,
) -> Result<Json<BudgetResponse>, ApiError> {
    Access::new(caller, &app.directory)
        .may_manage_user_budget(id)
        .map_err(|denied| ApiError::denied(denied, "no such user", "this route needs the admin token, or an organisation manager's credential, in `Authorization: Bearer <token>`"))?;
    let key = EntityKey::user(id).map_err(|e| ApiError::invalid("user id", e))?;
    set_budget(app, key, budget).await
}

pub(super) async fn set_budget(
    app: &AppState,
    key: EntityKey,
    budget: Option<Usd>,
) -> Result<Json<BudgetResponse>, ApiError> {
    app.store.put_budget(&key, budget).await?;
    app.router.set_budget(&key, budget.map(Usd::value)).await?;
    Ok(Json(BudgetResponse {
        entity: key.to_string(),
        monthly_budget_usd: budget,
    }))
}

#[derive(Debug, Serialize)]
pub struct PriceResponse {
    pub model: String,
    #[serde(flatten)]
    pub price: Price,
}

pub async fn put_price(
    _: AdminCaller,
    State(app): State<Arc<AppState>>,
    Path(model): Path<String>,
    ApiJson(price): ApiJson<PriceBody>,
) -> Result<Json<PriceResponse>, ApiError> {
    if !valid_model_name(&model) {
        return Err(ApiError::invalid(
            "model",
            "must be 1-128 characters of letters, digits and - _ . : / @",
        ));
    }
    let price = Price {
        input_per_mtok_usd: price.input_per_mtok_usd,
        output_per_mtok_usd: price.output_per_mtok_usd,
    };
    app.store.put_price(&model, &price).await?;
    app.catalog.put_price(&model, price);
    Ok(Json(PriceResponse { model, price }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceBody {
    pub input_per_mtok_usd: Usd,
    pub output_per_mtok_usd: Usd,
}

pub async fn get_price(
    _: AdminCaller,
    State(app): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<Json<PriceResponse>, ApiError> {
    let price = app
        .catalog
        .price(&model)
        .ok_or_else(|| ApiError::not_found("unknown_model", format!("model {model:?} has no price")))?;
    Ok(Json(PriceResponse { model, price }))
}
