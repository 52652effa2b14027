//! API keys: create (secret shown once), rotate with a grace period,
//! revoke at once, read metadata.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Caller, JsonOrEmpty};
use crate::entity::EntityKey;
use crate::identity::api_keys::{MAX_GRACE_PERIOD_S, NewKey};
use crate::identity::scope::{Scope, Scopes};
use crate::identity::{Access, Denied, Principal};
use crate::limits::calendar::rfc3339;
use crate::store::ApiKeyRecord;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

const NO_SUCH_KEY: &str = "no such API key";

fn refused(denied: Denied) -> ApiError {
    ApiError::denied(
        denied,
        NO_SUCH_KEY,
        "API keys are managed with a credential in Authorization",
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    pub name: String,
    pub scopes: Vec<String>,
    #[serde(default)]
    pub org_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
}

/// A key's metadata (never its secret, except once in `secret`).
#[derive(Debug, Serialize)]
pub struct KeyResponse {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub org_id: Option<String>,
    pub user_id: Option<String>,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// Present only in the answer that created or rotated the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl KeyResponse {
    fn new(record: ApiKeyRecord, secret: Option<String>) -> Self {
        KeyResponse {
            id: record.id,
            name: record.name,
            scopes: record.scopes,
            org_id: record.org_id,
            user_id: record.user_id,
            created_at: rfc3339(record.created_at_ms),
            last_used_at: record.last_used_at_ms.map(rfc3339),
            revoked_at: record.revoked_at_ms.map(rfc3339),
            secret,
        }
    }
}

pub async fn create(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateKeyBody>,
) -> Result<(StatusCode, Json<KeyResponse>), ApiError> {
    let access = Access::new(&caller, &app.directory);
    access.signed_in().map_err(refused)?;
    let name = super::orgs::validate_name(&body.name)?;
    let scopes = Scopes::parse(body.scopes.iter().map(String::as_str)).map_err(|e| ApiError::invalid("scopes", e))?;
    if scopes.is_empty() {
        return Err(ApiError::invalid(
            "scopes",
            "name at least one of check, service, org_admin, admin",
        ));
    }
    if let Some(user) = &body.user_id {
        EntityKey::user(user).map_err(|e| ApiError::invalid("user_id", e))?;
    }
    let (org_id, user_id) = access
        .may_create_key(scopes, body.org_id.as_deref(), body.user_id.as_deref())
        .map_err(refused)?;
    if let Some(org) = &org_id
        && app.store.get_org(org).await?.is_none()
    {
        return Err(ApiError::not_found("not_found", "no such organisation"));
    }
    if let (Some(org), Some(user)) = (&org_id, &user_id)
        && !app.directory.is_member(user, org)
    {
        return Err(ApiError::invalid("user_id", "is not a member of org_id"));
    }
    if scopes.contains(Scope::Check) && user_id.is_none() {
        return Err(ApiError::invalid("user_id", "a `check` key acts as one user: name it"));
    }
    if scopes.contains(Scope::OrgAdmin) && org_id.is_none() {
        return Err(ApiError::invalid(
            "org_id",
            "an `org_admin` key manages one organisation: name it",
        ));
    }
    if scopes.contains(Scope::Admin) && (org_id.is_some() || user_id.is_some()) {
        return Err(ApiError::invalid(
            "scopes",
            "an `admin` key belongs to no organisation or user",
        ));
    }
    let created_by = match &caller {
        Principal::Admin => Some("admin".to_string()),
        Principal::User { user_id } => Some(format!("user:{user_id}")),
        Principal::Key(grant) => Some(format!("key:{}", grant.id)),
        Principal::Guest(_) => None,
    };
    let (record, secret) = app
        .keys
        .create(NewKey {
            name,
            scopes,
            org_id,
            user_id,
            created_by,
        })
        .await?;
    tracing::info!(key = %record.id, scopes = ?record.scopes, "API key created");
    Ok((StatusCode::CREATED, Json(KeyResponse::new(record, Some(secret)))))
}

/// Finds a live key the caller may manage (404 otherwise).
async fn manageable(app: &AppState, caller: &Principal, id: &str) -> Result<ApiKeyRecord, ApiError> {
    let access = Access::new(caller, &app.directory);
    access.signed_in().map_err(refused)?;
    let record = app
        .store
        .get_api_key(id)
        .await?
        .filter(|r| r.revoked_at_ms.is_none())
        .ok_or_else(|| ApiError::not_found("not_found", NO_SUCH_KEY))?;
    access
        .may_manage_key(record.org_id.as_deref(), record.user_id.as_deref())
        .map_err(refused)?;
    Ok(record)
}

pub async fn get(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<KeyResponse>, ApiError> {
    manageable(&app, &caller, &id).await?;
    let record = app
        .keys
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("not_found", NO_SUCH_KEY))?;
    Ok(Json(KeyResponse::new(record, None)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old secret keeps working (seconds; default 0).
    #[serde(default)]
    pub grace_period_s: u64,
}

#[derive(Debug, Serialize)]
pub struct RotateResponse {
    pub id: String,
    pub secret: String,
    /// When the previous secret stops working.
    pub previous_secret_expires_at: String,
}

pub async fn rotate(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    JsonOrEmpty(body): JsonOrEmpty<RotateBody>,
) -> Result<Json<RotateResponse>, ApiError> {
    if body.grace_period_s > MAX_GRACE_PERIOD_S {
        return Err(ApiError::invalid(
            "grace_period_s",
            format!("must be at most {MAX_GRACE_PERIOD_S} (30 days)"),
        ));
    }
    manageable(&app, &caller, &id).await?;
    let (secret, expires_at_ms) = app
        .keys
        .rotate(&id, Duration::from_secs(body.grace_period_s))
        .await?
        .ok_or_else(|| ApiError::not_found("not_found", NO_SUCH_KEY))?;
    tracing::info!(key = %id, grace_period_s = body.grace_period_s, "API key rotated");
    Ok(Json(RotateResponse {
        id,
        secret,
        previous_secret_expires_at: rfc3339(expires_at_ms),
    }))
}

#[derive(Debug, Serialize)]
pub struct RevokeResponse {
    pub id: String,
    pub revoked: bool,
}

pub async fn revoke(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<RevokeResponse>, ApiError> {
    manageable(&app, &caller, &id).await?;
    if !app.keys.revoke(&id).await? {
        return Err(ApiError::not_found("not_found", NO_SUCH_KEY));
    }
    tracing::info!(key = %id, "API key revoked");
    Ok(Json(RevokeResponse { id, revoked: true }))
}
