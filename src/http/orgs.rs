//! Organisations: created by a signed-in user (its owner), managed by its
//! owners and admins, its tier set by admins. Membership changes go to the
//! store first, then to the in-memory directory that checks read.

use super::AppState;
use super::admin::{BudgetBody, BudgetResponse, set_budget};
use super::error::ApiError;
use super::extract::{ApiJson, Caller, JsonOrEmpty};
use crate::entity::EntityKey;
use crate::identity::{Access, Denied, Principal};
use crate::limits::calendar::{now_ms, rfc3339};
use crate::service::tenancy;
use crate::store::{CreateOrgOutcome, MemberOutcome, Membership, OrgRecord, OrgRole, OrgUpdate};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const NO_SUCH_ORG: &str = "no such organisation";
const NEEDS_SIGN_IN: &str = "organisations need a signed-in caller: send `Authorization: Bearer <token>`";

fn refused(denied: Denied) -> ApiError {
    ApiError::denied(denied, NO_SUCH_ORG, NEEDS_SIGN_IN)
}

fn no_such_org() -> ApiError {
    ApiError::not_found("not_found", NO_SUCH_ORG)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgBody {
    pub name: String,
    #[serde(default)]
    pub billing_email: Option<String>,
    /// Only an admin may create an organisation on someone's behalf.
    #[serde(default)]
    pub owner_user_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MemberJson {
    pub user_id: String,
    pub role: &'static str,
}

#[derive(Debug, Serialize)]
pub struct OrgResponse {
    pub id: String,
    pub name: String,
    pub billing_email: Option<String>,
    pub subscription_tier: String,
    pub owner_user_id: String,
    pub created_at: String,
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

pub async fn create(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateOrgBody>,
) -> Result<(StatusCode, Json<OrgResponse>), ApiError> {
    let owner: String = match (&caller, body.owner_user_id) {
        (Principal::Guest(_), _) => return Err(refused(Denied::Unauthenticated)),
        (Principal::Admin, Some(owner)) => owner,
        (Principal::Admin, None) => {
            return Err(ApiError::invalid(
                "owner_user_id",
                "an admin must name the organisation's owner",
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
    tenancy::refresh_user_tier(&app.router, &app.store, &app.directory, &owner).await?;
    let members = vec![Membership {
        org_id: org.id.clone(),
        user_id: owner,
        role: OrgRole::Owner,
    }];
    Ok((StatusCode::CREATED, Json(OrgResponse::new(org, members))))
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrgBody {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "super::extract::explicit_null")]
    pub billing_email: Option<Option<String>>,
    #[serde(default)]
    pub subscription_tier: Option<String>,
}

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
        return Err(ApiError::invalid(
            "subscription_tier",
            format!("no tier named {tier:?}"),
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    #[serde(default)]
    pub role: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MemberResponse {
    pub org_id: String,
    pub user_id: String,
    pub role: &'static str,
}

pub async fn put_member(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path((org_id, user_id)): Path<(String, String)>,
    JsonOrEmpty(body): JsonOrEmpty<MemberBody>,
) -> Result<(StatusCode, Json<MemberResponse>), ApiError> {
    Access::new(&caller, &app.directory)
        .may_manage_org(&org_id)
        .map_err(refused)?;
    EntityKey::user(&user_id).map_err(|e| ApiError::invalid("user id", e))?;
    let role = match body.role.as_deref() {
        None | Some("member") => OrgRole::Member,
        Some("admin") => OrgRole::Admin,
        Some(_) => return Err(ApiError::invalid("role", "must be \"member\" or \"admin\"")),
    };
    if app
        .directory
        .membership(&user_id)
        .is_some_and(|m| m.role == OrgRole::Owner)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "owner",
            "the owner's role cannot be changed",
        ));
    }
    let status = match app.store.put_member(&org_id, &user_id, role).await? {
        MemberOutcome::Added => StatusCode::CREATED,
        MemberOutcome::RoleChanged => StatusCode::OK,
        // Another tenant's user: this organisation learns nothing more
        // than that it cannot add them.
        MemberOutcome::InAnotherOrg { .. } => {
            return Err(ApiError::not_found(
                "not_found",
                "no such user available to join this organisation",
            ));
        }
        MemberOutcome::NoSuchOrg => return Err(no_such_org()),
    };
    app.directory.set(&user_id, &org_id, role);
    tenancy::refresh_user_tier(&app.router, &app.store, &app.directory, &user_id).await?;
    Ok((
        status,
        Json(MemberResponse {
            org_id,
            user_id,
            role: role.as_str(),
        }),
    ))
}

pub async fn delete_member(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path((org_id, user_id)): Path<(String, String)>,
) -> Result<Json<MemberResponse>, ApiError> {
    let access = Access::new(&caller, &app.directory);
    // Members may leave on their own; managers may remove anyone but the owner.
    let leaving = caller.own_user().is_some_and(|own| **own == *user_id) && matches!(caller, Principal::User { .. });
    if leaving {
        access.may_read_org(&org_id).map_err(refused)?;
    } else {
        access.may_manage_org(&org_id).map_err(refused)?;
    }
    let Some(member) = app.directory.membership(&user_id).filter(|m| *m.org_id == *org_id) else {
        return Err(ApiError::not_found("not_found", "no such member"));
    };
    if member.role == OrgRole::Owner && !access.is_admin() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "owner",
            "the owner cannot leave the organisation",
        ));
    }
    if !app.store.remove_member(&org_id, &user_id).await? {
        return Err(ApiError::not_found("not_found", "no such member"));
    }
    app.directory.remove(&user_id);
    tenancy::refresh_user_tier(&app.router, &app.store, &app.directory, &user_id).await?;
    Ok(Json(MemberResponse {
        org_id,
        user_id,
        role: member.role.as_str(),
    }))
}

async fn org_budget(
    app: &Arc<AppState>,
    caller: &Principal,
    id: &str,
    budget: Option<crate::money::Usd>,
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

pub async fn put_budget(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<BudgetBody>,
) -> Result<Json<BudgetResponse>, ApiError> {
    org_budget(&app, &caller, &id, Some(body.monthly_budget_usd)).await
}

pub async fn delete_budget(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<BudgetResponse>, ApiError> {
    org_budget(&app, &caller, &id, None).await
}
