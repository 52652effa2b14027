//! Admin routes: tiers, users, budgets and prices. Each change is written
//! to the store first, then applied to memory (catalogue or actor), so a
//! restart never forgets an acknowledged change.

use super::AppState;
use super::error::ApiError;
use super::extract::{AdminCaller, ApiJson, Caller};
use super::openapi::{BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable};
use crate::entity::EntityKey;
use crate::identity::{Access, BudgetAuthority, Principal};
use crate::limits::alerts::Thresholds;
use crate::limits::pricing::{Price, valid_model_name};
use crate::limits::tier::Tier;
use crate::money::Usd;
use crate::router::peer::Invalidation;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

fn unknown_tier(name: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown_tier", format!("no tier named {name:?}"))
}

/// List tiers
///
/// Every tier and its limits. Admins only.
#[utoipa::path(
    get,
    path = "/v1/tiers",
    operation_id = "list_tiers",
    tag = "admin",
    responses(
        (status = 200, description = "Every tier.", body = Vec<Tier>),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn list_tiers(_: AdminCaller, State(app): State<Arc<AppState>>) -> Json<Vec<Tier>> {
    Json(app.catalog.tiers().iter().map(|t| (**t).clone()).collect())
}

/// Read a tier
///
/// One tier's limits. Admins only.
#[utoipa::path(
    get,
    path = "/v1/tiers/{name}",
    operation_id = "get_tier",
    tag = "admin",
    params(("name" = String, Path, description = "The tier's name.", example = "pro")),
    responses(
        (status = 200, description = "The tier.", body = Tier),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn get_tier(
    _: AdminCaller,
    State(app): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<Tier>, ApiError> {
    let tier = app.catalog.tier(&name).ok_or_else(|| unknown_tier(&name))?;
    Ok(Json((*tier).clone()))
}

/// A tier's limits (its name is in the path).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierBody {
    /// Requests per fixed 24 h window (at most 1000000000).
    #[schema(maximum = 1_000_000_000, example = 100)]
    pub daily_limit: u64,
    /// Requests per calendar month (UTC); absent or null = no monthly cap.
    #[serde(default)]
    #[schema(maximum = 1_000_000_000, example = 3000)]
    pub monthly_limit: Option<u64>,
    /// Per-minute burst limit; absent or null = none.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000, example = 20)]
    pub rpm: Option<u32>,
    /// What the tier costs its subscriber; informational.
    pub price_monthly_usd: Usd,
}

/// Create or replace a tier
///
/// Sets a tier's limits. Entities on the tier follow the new limits at
/// once; counts so far are kept. Stored before it is applied, so a restart
/// keeps it. Admins only.
#[utoipa::path(
    put,
    path = "/v1/tiers/{name}",
    operation_id = "put_tier",
    tag = "admin",
    params(("name" = String, Path, description = "1-64 characters of `a-z`, `0-9`, `-` and `_`.", example = "pro")),
    request_body = TierBody,
    responses(
        (status = 200, description = "The tier as stored.", body = Tier),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
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
    app.cluster.broadcast(Invalidation::Catalog).await;
    Ok(Json(tier))
}

/// A user's tier.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    /// An existing tier's name.
    #[schema(example = "pro")]
    pub tier: String,
}

/// A user and their own tier.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    /// The user's id (their identity provider's `sub`).
    #[schema(example = "u_123")]
    pub id: String,
    /// The user's own tier.
    #[schema(example = "pro")]
    pub tier: String,
}

/// Set a user's tier
///
/// Creates the user if new. A member of an organisation is limited by the
/// organisation's tier while a member; their own tier applies again when
/// they leave. Admins only.
#[utoipa::path(
    put,
    path = "/v1/users/{id}",
    operation_id = "put_user",
    tag = "admin",
    params(("id" = String, Path, description = "The user's id (1-256 bytes, no spaces).", example = "u_123")),
    request_body = UserBody,
    responses(
        (status = 200, description = "The user's tier as stored.", body = UserResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "No tier of that name (`unknown_tier`).", body = super::error::ErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn put_user(
    _: AdminCaller,
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserBody>,
) -> Result<Json<UserResponse>, ApiError> {
    let key = EntityKey::user(&id).map_err(|e| ApiError::invalid("user id", e))?;
    if app.catalog.tier(&body.tier).is_none() {
        return Err(unknown_tier(&body.tier));
    }
    app.store.put_user(&id, &body.tier).await?;
    // A member follows the organisation's plan; their own tier applies
    // again when they leave.
    if app.directory.org_of(&id).is_none() {
        app.router.set_tier(&key, &body.tier).await?;
    }
    Ok(Json(UserResponse { id, tier: body.tier }))
}

/// A monthly budget.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    /// USD per calendar month (UTC).
    pub monthly_budget_usd: Usd,
    /// Percentages of the budget that raise an alert, each once a month:
    /// 1-100, at most 10 values (duplicates folded, stored sorted). Omitted: 50, 75, 90,
    /// 100. Spend past the budget also raises one `overage` alert.
    #[serde(default)]
    #[schema(value_type = Option<Vec<u8>>, min_items = 1, max_items = 10, example = json!([50, 80, 100]))]
    pub alert_thresholds: Option<Vec<i64>>,
}

/// A budget as the store takes it: the amount and its alert thresholds
/// (None: the defaults).
pub(super) type Budget = (Usd, Option<Thresholds>);

impl BudgetBody {
    /// The budget, with its thresholds validated (400 naming
    /// `alert_thresholds`).
    pub(super) fn budget(&self) -> Result<Budget, ApiError> {
        let thresholds = self
            .alert_thresholds
            .as_deref()
            .map(Thresholds::new)
            .transpose()
            .map_err(|e| ApiError::invalid("alert_thresholds", e))?;
        Ok((self.monthly_budget_usd, thresholds))
    }
}

/// An entity's monthly budget after the change.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetResponse {
    /// The entity, `user:…` or `org:…`.
    #[schema(example = "user:u_123")]
    pub entity: String,
    /// The budget; null when removed.
    #[schema(required = true)]
    pub monthly_budget_usd: Option<Usd>,
    /// The alert thresholds in effect (percent); null when removed, and
    /// for an organisation's cap on a member (which alerts at the user's own
    /// budget's thresholds, or the defaults).
    #[schema(required = true, value_type = Option<Vec<u8>>, example = json!([50, 75, 90, 100]))]
    pub alert_thresholds: Option<Vec<u8>>,
}

/// Set a user's monthly budget
///
/// Checks with an estimate are refused once spend plus holds would pass
/// it. Applies at once. A platform admin sets the user's own budget. An
/// organisation's owners and admins set a *member cap* instead: it applies
/// on top of the user's own budget (the lower one wins) and vanishes when
/// the user leaves the organisation.
#[utoipa::path(
    put,
    path = "/v1/users/{id}/budget",
    operation_id = "put_user_budget",
    tag = "admin",
    params(("id" = String, Path, description = "The user's id.", example = "u_123")),
    request_body = BudgetBody,
    responses(
        (status = 200, description = "The budget as stored.", body = BudgetResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn put_user_budget(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<BudgetBody>,
) -> Result<Json<BudgetResponse>, ApiError> {
    user_budget(&app, &caller, &id, Some(body.budget()?)).await
}

/// Remove a user's monthly budget
///
/// A platform admin removes the user's own budget; an organisation's owners
/// and admins remove their member cap. Whatever the other one says still
/// applies. Spend is still recorded.
#[utoipa::path(
    delete,
    path = "/v1/users/{id}/budget",
    operation_id = "delete_user_budget",
    tag = "admin",
    params(("id" = String, Path, description = "The user's id.", example = "u_123")),
    responses(
        (status = 200, description = "Removed (`monthly_budget_usd` is null).", body = BudgetResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_user_budget(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<BudgetResponse>, ApiError> {
    user_budget(&app, &caller, &id, None).await
}

/// Admins set a user's own budget; an organisation's managers set only
/// their cap on a member, which ends with the membership. The user entity
/// runs with the lower of the two.
async fn user_budget(
    app: &AppState,
    caller: &Principal,
    id: &str,
    budget: Option<Budget>,
) -> Result<Json<BudgetResponse>, ApiError> {
    let authority = Access::new(caller, &app.directory)
        .may_manage_user_budget(id)
        .map_err(|denied| ApiError::denied(denied, "no such user", "this route needs the admin token, or an organisation manager's credential, in `Authorization: Bearer <token>`"))?;
    let key = EntityKey::user(id).map_err(|e| ApiError::invalid("user id", e))?;
    let usd = budget.as_ref().map(|(usd, _)| *usd);
    let thresholds = budget.as_ref().and_then(|(_, t)| t.as_ref());
    // Alerts follow the user's own budget; an organisation's cap on a
    // member has no thresholds of its own.
    if thresholds.is_some() && !matches!(authority, BudgetAuthority::Own) {
        return Err(ApiError::invalid(
            "alert_thresholds",
            "only the user's own budget (set by an admin) has alert thresholds, not an organisation's cap",
        ));
    }
    if !super::org_members::memberships(app)
        .set_user_budget(&key, &authority, usd, thresholds)
        .await?
    {
        // The user left between the check and the write.
        return Err(ApiError::not_found("not_found", "no such user"));
    }
    Ok(Json(BudgetResponse {
        entity: key.to_string(),
        monthly_budget_usd: usd,
        alert_thresholds: match authority {
            BudgetAuthority::Own => thresholds_in_effect(usd, thresholds),
            _ => None,
        },
    }))
}

/// The thresholds a budget alerts at (None: no budget).
fn thresholds_in_effect(budget: Option<Usd>, thresholds: Option<&Thresholds>) -> Option<Vec<u8>> {
    budget.map(|_| thresholds.cloned().unwrap_or_default().as_slice().to_vec())
}

pub(super) async fn set_budget(
    app: &AppState,
    key: EntityKey,
    budget: Option<Budget>,
) -> Result<Json<BudgetResponse>, ApiError> {
    let usd = budget.as_ref().map(|(usd, _)| *usd);
    let thresholds = budget.as_ref().and_then(|(_, t)| t.as_ref());
    app.store.put_budget_with_thresholds(&key, usd, thresholds).await?;
    app.router.set_budget(&key, usd.map(Usd::value)).await?;
    Ok(Json(BudgetResponse {
        entity: key.to_string(),
        monthly_budget_usd: usd,
        alert_thresholds: thresholds_in_effect(usd, thresholds),
    }))
}

/// A model and its prices.
#[derive(Debug, Serialize, ToSchema)]
pub struct PriceResponse {
    /// The model's name.
    #[schema(example = "claude-sonnet-4")]
    pub model: String,
    #[serde(flatten)]
    pub price: Price,
}

/// Set a model's prices
///
/// USD per million input and output tokens, used to price token estimates
/// and usage sent without `cost_usd`. Admins only.
#[utoipa::path(
    put,
    path = "/v1/prices/{model}",
    operation_id = "put_price",
    tag = "admin",
    params(("model" = String, Path,
        description = "1-128 characters of letters, digits and `- _ . : / @` (URL-encode `/`).",
        example = "claude-sonnet-4")),
    request_body = PriceBody,
    responses(
        (status = 200, description = "The prices as stored.", body = PriceResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
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
    app.cluster.broadcast(Invalidation::Catalog).await;
    Ok(Json(PriceResponse { model, price }))
}

/// A model's prices.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceBody {
    /// USD per million input tokens.
    pub input_per_mtok_usd: Usd,
    /// USD per million output tokens.
    pub output_per_mtok_usd: Usd,
}

/// Read a model's prices
///
/// Admins only.
#[utoipa::path(
    get,
    path = "/v1/prices/{model}",
    operation_id = "get_price",
    tag = "admin",
    params(("model" = String, Path, description = "The model's name.", example = "claude-sonnet-4")),
    responses(
        (status = 200, description = "The model's prices.", body = PriceResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
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
