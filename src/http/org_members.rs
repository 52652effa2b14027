//! Organisation members: added, re-roled and removed by the organisation's
//! managers (members may leave on their own). Membership changes go to the
//! store first, then to the in-memory directory that checks read.

use super::AppState;
use super::error::ApiError;
use super::extract::{Caller, JsonOrEmpty};
use super::openapi::{BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable};
use super::orgs::{no_such_org, refused};
use crate::entity::EntityKey;
use crate::identity::{Access, Principal};
use crate::router::peer::Invalidation;
use crate::service::tenancy;
use crate::store::{MemberOutcome, OrgRole};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// A member's role; the body may be left out entirely (then `member`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    /// `member` (default) or `admin`.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(member|admin)$", example = "member")]
    pub role: Option<String>,
}

/// A membership.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberResponse {
    /// The organisation's id.
    pub org_id: String,
    /// The member's user id.
    #[schema(example = "u_123")]
    pub user_id: String,
    /// The member's role.
    #[schema(value_type = OrgRole)]
    pub role: &'static str,
}

/// Add a member, or change their role
///
/// Adds the user (201), or changes an existing member's role (200). The
/// member's checks then count against the organisation's pooled limits and
/// budget too, and they follow its tier. A user in another organisation
/// cannot be added (404); the owner's role cannot change (409). Owners,
/// the organisation's admins and its `org_admin` keys.
#[utoipa::path(
    post,
    path = "/v1/orgs/{id}/members/{user_id}",
    operation_id = "put_org_member",
    tag = "organisations",
    params(
        ("id" = String, Path, description = "The organisation's id."),
        ("user_id" = String, Path, description = "The user's id.", example = "u_123"),
    ),
    request_body(content = Option<MemberBody>, description = "Optional; the role defaults to `member`."),
    responses(
        (status = 200, description = "The member's role was changed.", body = MemberResponse),
        (status = 201, description = "The user was added.", body = MemberResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
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
    app.cluster
        .broadcast(Invalidation::Membership {
            user_id: user_id.clone(),
            org: Some((org_id.clone(), role.as_str().to_string())),
        })
        .await;
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

/// Remove a member
///
/// The user leaves the organisation: their own tier applies again. Members
/// may leave on their own (signed in as themselves); owners, admins and
/// `org_admin` keys may remove anyone but the owner (409).
#[utoipa::path(
    delete,
    path = "/v1/orgs/{id}/members/{user_id}",
    operation_id = "delete_org_member",
    tag = "organisations",
    params(
        ("id" = String, Path, description = "The organisation's id."),
        ("user_id" = String, Path, description = "The member's user id.", example = "u_123"),
    ),
    responses(
        (status = 200, description = "Removed; `role` is the role they had.", body = MemberResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
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
    app.cluster
        .broadcast(Invalidation::Membership {
            user_id: user_id.clone(),
            org: None,
        })
        .await;
    tenancy::refresh_user_tier(&app.router, &app.store, &app.directory, &user_id).await?;
    Ok(Json(MemberResponse {
        org_id,
        user_id,
        role: member.role.as_str(),
    }))
}
