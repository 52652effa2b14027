//! API keys: create (secret shown once), rotate with a grace period,
//! revoke at once, read metadata.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, Caller, JsonOrEmpty};
use super::openapi::{BadRequest, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable};
use crate::entity::EntityKey;
use crate::identity::api_keys::{MAX_GRACE_PERIOD_S, NewKey};
use crate::identity::scope::{Scope, Scopes};
use crate::identity::{Access, Denied, KeyAction, Principal};
use crate::limits::calendar::rfc3339;
use crate::router::peer::Invalidation;
use crate::store::ApiKeyRecord;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

pub(super) const NO_SUCH_KEY: &str = "no such API key";

pub(super) fn refused(denied: Denied) -> ApiError {
    ApiError::denied(
        denied,
        NO_SUCH_KEY,
        "API keys are managed with a credential in Authorization",
    )
}

/// A new API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    /// A label: 1-200 printable characters.
    #[schema(example = "backend (production)")]
    pub name: String,
    /// What the key may do; at least one. `check` needs `user_id`,
    /// `org_admin` needs `org_id`, `admin` takes neither.
    #[schema(value_type = Vec<Scope>, min_items = 1, example = json!(["service"]))]
    pub scopes: Vec<String>,
    /// The organisation the key belongs to (and is confined to).
    #[serde(default)]
    pub org_id: Option<String>,
    /// The user the key acts as (a member of `org_id`, if that is given).
    #[serde(default)]
    #[schema(example = "u_123")]
    pub user_id: Option<String>,
}

/// A key's metadata (never its secret, except once in `secret`).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyResponse {
    /// The key's id, used in the API-key routes (not a secret).
    #[schema(example = "key_0193a1c2e4f57b8c9d0e1f2a3b4c5d6e")]
    pub id: String,
    /// The key's label.
    #[schema(example = "backend (production)")]
    pub name: String,
    /// What the key may do.
    #[schema(value_type = Vec<Scope>, example = json!(["service"]))]
    pub scopes: Vec<String>,
    /// The organisation the key is confined to, if any.
    #[schema(required = true)]
    pub org_id: Option<String>,
    /// The user the key acts as, if any.
    #[schema(required = true)]
    pub user_id: Option<String>,
    #[schema(format = DateTime, example = "2026-11-28T06:54:10Z")]
    pub created_at: String,
    /// Written in batches, so it may lag a little behind the last use.
    #[schema(required = true, format = DateTime)]
    pub last_used_at: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub revoked_at: Option<String>,
    /// Present only in the answer that created the key: `tg_…`, shown once
    /// and never again (only a hash is stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, example = "tg_q3Vn0b1TtY8xk2mZ5pW7rC4sL6dH9fJ0aE1gB3iN5oU")]
    pub secret: Option<String>,
}

impl KeyResponse {
    pub(super) fn new(record: ApiKeyRecord, secret: Option<String>) -> Self {
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

/// Create an API key
///
/// Returns the secret once, in `secret`; only a hash is stored. Admins may
/// create any key; an organisation's managers (and its `org_admin` keys)
/// keys for their organisation; a signed-in user `check` keys for
/// themselves. A key never reaches beyond its creator.
#[utoipa::path(
    post,
    path = "/v1/api-keys",
    operation_id = "create_api_key",
    tag = "api-keys",
    request_body = CreateKeyBody,
    responses(
        (status = 201, description = "Created; `secret` is shown this once.", body = KeyResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
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
        // As for a missing user: which users exist outside the
        // organisation is not the caller's to learn.
        return Err(ApiError::not_found("not_found", "user_id: no such member of org_id"));
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
    let created_by = super::org_members::created_by(&caller);
    let (record, secret) = app
        .keys
        .create(NewKey {
            name,
            scopes,
            org_id,
            user_id,
            created_by,
        })
        .await?
        // The member left between the check above and the write.
        .ok_or_else(|| ApiError::invalid("user_id", "is not a member of org_id"))?;
    tracing::info!(key = %record.id, scopes = ?record.scopes, "API key created");
    app.cluster
        .broadcast(Invalidation::ApiKey {
            key_id: record.id.clone(),
        })
        .await;
    Ok((StatusCode::CREATED, Json(KeyResponse::new(record, Some(secret)))))
}

/// Finds a live key the caller may manage (404 otherwise).
async fn manageable(app: &AppState, caller: &Principal, id: &str, action: KeyAction) -> Result<ApiKeyRecord, ApiError> {
    let access = Access::new(caller, &app.directory);
    access.signed_in().map_err(refused)?;
    let record = app
        .store
        .get_api_key(id)
        .await?
        .filter(|r| r.revoked_at_ms.is_none())
        .ok_or_else(|| ApiError::not_found("not_found", NO_SUCH_KEY))?;
    access
        .may_manage_key(record.org_id.as_deref(), record.user_id.as_deref(), action)
        .map_err(refused)?;
    Ok(record)
}

/// Read an API key
///
/// Its metadata, never its secret. A revoked key is 404. Admins, whoever
/// may manage the key (its organisation's managers, its user), and the
/// user a key acts as, under their own credential.
#[utoipa::path(
    get,
    path = "/v1/api-keys/{id}",
    operation_id = "get_api_key",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id (not its secret).")),
    responses(
        (status = 200, description = "The key's metadata.", body = KeyResponse),
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
) -> Result<Json<KeyResponse>, ApiError> {
    manageable(&app, &caller, &id, KeyAction::Read).await?;
    let record = app
        .keys
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("not_found", NO_SUCH_KEY))?;
    Ok(Json(KeyResponse::new(record, None)))
}

/// How to rotate; the body may be left out entirely (no grace period).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old secret keeps working (seconds; default 0).
    #[serde(default)]
    #[schema(maximum = 2_592_000, example = 3600)]
    pub grace_period_s: u64,
}

/// The key's new secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotateResponse {
    /// The key's id (unchanged).
    pub id: String,
    /// The new secret, shown this once.
    #[schema(example = "tg_q3Vn0b1TtY8xk2mZ5pW7rC4sL6dH9fJ0aE1gB3iN5oU")]
    pub secret: String,
    /// When the previous secret stops working.
    #[schema(format = DateTime)]
    pub previous_secret_expires_at: String,
}

/// Rotate an API key
///
/// Issues a new secret. The old one keeps working for `grace_period_s`
/// (at most 30 days), so a deployment can switch without downtime. Admins
/// and the key's owners (its organisation's managers, or the user of a
/// personal key); a member cannot rotate a key their organisation holds.
#[utoipa::path(
    post,
    path = "/v1/api-keys/{id}/rotate",
    operation_id = "rotate_api_key",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id.")),
    request_body(content = Option<RotateBody>, description = "Optional; without it the old secret stops at once."),
    responses(
        (status = 200, description = "Rotated; `secret` is shown this once.", body = RotateResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
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
    manageable(&app, &caller, &id, KeyAction::Rotate).await?;
    let (secret, expires_at_ms) = app
        .keys
        .rotate(&id, Duration::from_secs(body.grace_period_s))
        .await?
        .ok_or_else(|| ApiError::not_found("not_found", NO_SUCH_KEY))?;
    tracing::info!(key = %id, grace_period_s = body.grace_period_s, "API key rotated");
    app.cluster.broadcast(Invalidation::ApiKey { key_id: id.clone() }).await;
    Ok(Json(RotateResponse {
        id,
        secret,
        previous_secret_expires_at: rfc3339(expires_at_ms),
    }))
}

/// A revoked key.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokeResponse {
    /// The key's id.
    pub id: String,
    /// Always true.
    pub revoked: bool,
}

/// Revoke an API key
///
/// Effective at once: the key (and any secret still in its rotation grace
/// period) is refused with 401 from then on. Same callers as reading the
/// key: a user may revoke any key that acts as them, including one their
/// organisation made.
#[utoipa::path(
    delete,
    path = "/v1/api-keys/{id}",
    operation_id = "revoke_api_key",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id.")),
    responses(
        (status = 200, description = "Revoked.", body = RevokeResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn revoke(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<RevokeResponse>, ApiError> {
    manageable(&app, &caller, &id, KeyAction::Revoke).await?;
    if !app.keys.revoke(&id).await? {
        return Err(ApiError::not_found("not_found", NO_SUCH_KEY));
    }
    tracing::info!(key = %id, "API key revoked");
    app.cluster.broadcast(Invalidation::ApiKey { key_id: id.clone() }).await;
    Ok(Json(RevokeResponse { id, revoked: true }))
}
