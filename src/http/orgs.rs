//! Organisations: created by a signed-in user (its owner), managed by its
//! owners and admins, its tier set by admins; their pooled budget. Members
//! are in [`super::org_members`].

use super::AppState;
use super::admin::{Budget, BudgetBody, BudgetResponse, set_budget};
use super::error::ApiError;
use super::extract::{ApiJson, Caller};
use super::openapi::{BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable};
use crate::entity::EntityKey;
use crate::identity::{Access, Denied, Principal};
use crate::limits::calendar::{now_ms, rfc3339};
use crate::router::peer::Invalidation;
use crate::service::tenancy;
use crate::store::{CreateOrgOutcome, Membership, OrgRecord, OrgRole, OrgUpdate};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

const NO_SUCH_ORG: &str = "no such organisation";
const NEEDS_SIGN_IN: &str = "organisations need a signed-in caller: send `Authorization: Bearer <token>`";

pub(super) fn refused(denied: Denied) -> ApiError {
    ApiError::denied(denied, NO_SUCH_ORG, NEEDS_SIGN_IN)
}

pub(super) fn no_such_org() -> ApiError {
    ApiError::not_found("not_found", NO_SUCH_ORG)
}

/// A new organisation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgBody {
    /// Display name: 1-200 printable characters (trimmed).
    #[schema(example = "Acme")]
    pub name: String,
    /// Where invoices go.
    #[serde(default)]
    #[schema(format = Email, example = "billing@acme.example")]
    pub billing_email: Option<String>,
    /// The owner, when an admin creates the organisation on someone's
    /// behalf (required then). Only an admin may name someone else.
    #[serde(default)]
    pub owner_user_id: Option<String>,
}

/// A member and their role.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberJson {
    /// The member's user id.
    #[schema(example = "u_123")]
    pub user_id: String,
    /// Their role: one `owner`, any number of `admin`s and `member`s.
    #[schema(value_type = OrgRole)]
    pub role: &'static str,
}

/// An organisation and its members.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgResponse {
    /// The organisation's id.
    #[schema(format = "uuid")]
    pub id: String,
    /// Its display name.
    #[schema(example = "Acme")]
    pub name: String,
    /// Where invoices go, if set.
    #[schema(required = true, example = "billing@acme.example")]
    pub billing_email: Option<String>,
    /// The tier every member is limited by (with the organisation's pooled
    /// limits); set by admins.
    #[schema(example = "free")]
    pub subscription_tier: String,
    /// The owner's user id.
    #[schema(example = "u_123")]
    pub owner_user_id: String,
    #[schema(format = DateTime, example = "2026-11-28T06:54:10.123Z")]
    pub created_at: String,
    /// Everyone in the organisation, the owner included.
    pub members: Vec<MemberJson>,
}

impl OrgResponse {
    fn new(org: OrgRecord, members: Vec<Membership>) -> Self {
        OrgResponse {
            created_at: rfc3339(org.created_at_ms),
            id: org.id,
            name: org.name,
            billing_email: org.billing_email,
            subscription_tier: org.tier,
            owner_user_id: org.owner_user_id,
            members: members
                .into_iter()
                .map(|m| MemberJson {
                    user_id: m.user_id,
                    role: m.role.as_str(),
                })
                .collect(),
        }
    }
}

/// A display name: 1-200 printable characters, trimmed.
pub(super) fn validate_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid("name", "must be 1-200 printable characters"));
    }
    Ok(name.to_string())
}

fn validate_email(email: Option<String>) -> Result<Option<String>, ApiError> {
    match email {
        None => Ok(None),
        Some(e) => {
            let e = e.trim();
            let ok = e.len() <= 254
                && !e.chars().any(|c| c.is_whitespace() || c.is_control())
                && e.split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
            if ok {
                Ok(Some(e.to_string()))
            } else {
                Err(ApiError::invalid("billing_email", "is not an email address"))
            }
        }
    }
}

/// Create an organisation
///
/// A signed-in user (an Auth0 token) creates it and becomes its owner; an
/// admin may create one for `owner_user_id`. It starts on the `free` tier.
/// A user belongs to at most one organisation. API keys cannot create
/// organisations.
#[utoipa::path(
    post,
    path = "/v1/orgs",
    operation_id = "create_org",
    tag = "organisations",
    request_body = CreateOrgBody,
    responses(
        (status = 201, description = "Created; the caller (or `owner_user_id`) is its owner.", body = OrgResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn create(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateOrgBody>,
) -> Result<(StatusCode, Json<OrgResponse>), ApiError> {
    let owner: String = match (&caller, body.owner_user_id) {
        (Principal::Guest(_), _) => return Err(refused(Denied::Unauthenticated)),
        (Principal::Admin, Some(owner)) => owner,
        // Not a malformed body (a user may leave the owner out): the admin
        // has no user of its own to own the organisation.
        (Principal::Admin, None) => {
            return Err(ApiError::forbidden(
                "an admin has no user to own the organisation: name owner_user_id",
            ));
        }
        (Principal::User { user_id }, None) => user_id.to_string(),
        (Principal::User { user_id }, Some(owner)) if owner == **user_id => owner,
        (Principal::User { .. }, Some(_)) => {
            return Err(ApiError::forbidden(
                "only an admin may create an organisation for someone else",
            ));
        }
        (Principal::Key(_), _) => {
            return Err(ApiError::forbidden(
                "organisations are created by a signed-in user (an Auth0 token), not an API key",
            ));
        }
    };
    EntityKey::user(&owner).map_err(|e| ApiError::invalid("owner_user_id", e))?;
    let org = OrgRecord {
        id: uuid::Uuid::new_v4().to_string(),
        name: validate_name(&body.name)?,
        billing_email: validate_email(body.billing_email)?,
        tier: crate::limits::tier::DEFAULT_TIER.to_string(),
        owner_user_id: owner.clone(),
        created_at_ms: now_ms(),
    };
    match app.store.create_org(&org).await? {
        CreateOrgOutcome::Created => {}
        CreateOrgOutcome::OwnerInAnotherOrg { .. } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_in_org",
                "the owner already belongs to an organisation (a user belongs to at most one)",
            ));
        }
    }
    app.directory.set(&owner, &org.id, OrgRole::Owner);
    app.cluster
        .broadcast(Invalidation::Membership {
            user_id: owner.clone(),
            org: Some((org.id.clone(), OrgRole::Owner.as_str().to_string())),
        })
        .await;
    tenancy::refresh_user_tier(&app.router, &app.store, &app.directory, &owner).await?;
    let members = vec![Membership {
        org_id: org.id.clone(),
        user_id: owner,
        role: OrgRole::Owner,
    }];
    Ok((StatusCode::CREATED, Json(OrgResponse::new(org, members))))
}

/// Read an organisation
///
/// Its details and members. Admins, its members, and its own keys.
#[utoipa::path(
    get,
    path = "/v1/orgs/{id}",
    operation_id = "get_org",
    tag = "organisations",
    params(("id" = String, Path, description = "The organisation's id.")),
    responses(
        (status = 200, description = "The organisation.", body = OrgResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn get(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<OrgResponse>, ApiError> {
    Access::new(&caller, &app.directory)
        .may_read_org(&id)
        .map_err(refused)?;
    let org = app.store.get_org(&id).await?.ok_or_else(no_such_org)?;
    let members = app.store.list_members(&id).await?;
    Ok(Json(OrgResponse::new(org, members)))
}

/// Changes to an organisation; absent fields are left as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrgBody {
    /// A new display name.
    #[serde(default)]
    #[schema(value_type = String, example = "Acme Inc.")]
    pub name: Option<String>,
    /// A new billing email; null removes it.
    #[serde(default, deserialize_with = "super::extract::explicit_null")]
    #[schema(value_type = Option<String>, format = Email)]
    pub billing_email: Option<Option<String>>,
    /// A new tier for the organisation and all its members (admins only).
    #[serde(default)]
    #[schema(value_type = String, example = "pro")]
    pub subscription_tier: Option<String>,
}

/// Update an organisation
///
/// Renames it, changes its billing email, or (admins only) moves it and
/// all its members to another tier, effective at once. Owners, the
/// organisation's admins and its `org_admin` keys may change the name and
/// email.
#[utoipa::path(
    put,
    path = "/v1/orgs/{id}",
    operation_id = "update_org",
    tag = "organisations",
    params(("id" = String, Path, description = "The organisation's id.")),
    request_body = UpdateOrgBody,
    responses(
        (status = 200, description = "The organisation after the change.", body = OrgResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn update(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateOrgBody>,
) -> Result<Json<OrgResponse>, ApiError> {
    let access = Access::new(&caller, &app.directory);
    if body.subscription_tier.is_some() {
        access.may_set_org_tier(&id).map_err(refused)?;
    } else {
        access.may_manage_org(&id).map_err(refused)?;
    }
    if let Some(tier) = &body.subscription_tier
        && app.catalog.tier(tier).is_none()
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_tier",
            format!("subscription_tier: no tier named {tier:?}"),
        ));
    }
    let update = OrgUpdate {
        name: body.name.as_deref().map(validate_name).transpose()?,
        billing_email: body.billing_email.map(validate_email).transpose()?,
        tier: body.subscription_tier.clone(),
    };
    if !app.store.update_org(&id, &update).await? {
        return Err(no_such_org());
    }
    if let Some(tier) = &body.subscription_tier {
        let key = EntityKey::org(&id).map_err(|e| ApiError::invalid("organisation id", e))?;
        app.router.set_tier(&key, tier).await?;
        // Members follow their organisation's plan.
        for member in app.store.list_members(&id).await? {
            let user = EntityKey::user(&member.user_id).map_err(|e| ApiError::invalid("member id", e))?;
            app.router.set_tier(&user, tier).await?;
        }
    }
    get(State(app), Caller(caller), Path(id)).await
}

async fn org_budget(
    app: &Arc<AppState>,
    caller: &Principal,
    id: &str,
    budget: Option<Budget>,
) -> Result<Json<BudgetResponse>, ApiError> {
    Access::new(caller, &app.directory)
        .may_manage_org(id)
        .map_err(refused)?;
    if app.store.get_org(id).await?.is_none() {
        return Err(no_such_org());
    }
    let key = EntityKey::org(id).map_err(|e| ApiError::invalid("organisation id", e))?;
    set_budget(app, key, budget).await
}

/// Set an organisation's monthly budget
///
/// A pooled budget: every member's spend counts against it as well as
/// against their own. Admins, owners, the organisation's admins and its
/// `org_admin` keys.
#[utoipa::path(
    put,
    path = "/v1/orgs/{id}/budget",
    operation_id = "put_org_budget",
    tag = "organisations",
    params(("id" = String, Path, description = "The organisation's id.")),
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
pub async fn put_budget(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<BudgetBody>,
) -> Result<Json<BudgetResponse>, ApiError> {
    org_budget(&app, &caller, &id, Some(body.budget()?)).await
}

/// Remove an organisation's monthly budget
///
/// Spend is still recorded. Same callers as setting it.
#[utoipa::path(
    delete,
    path = "/v1/orgs/{id}/budget",
    operation_id = "delete_org_budget",
    tag = "organisations",
    params(("id" = String, Path, description = "The organisation's id.")),
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
pub async fn delete_budget(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<BudgetResponse>, ApiError> {
    org_budget(&app, &caller, &id, None).await
}
