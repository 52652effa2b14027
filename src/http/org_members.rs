//! Organisation members: invited by the organisation's managers (added
//! directly only by platform admins), re-roled and removed by them; members
//! may leave on their own. The sequences live in `service::membership`.

use super::AppState;
use super::error::ApiError;
use super::extract::{Caller, JsonOrEmpty};
use super::openapi::{BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge, Unauthorized, Unavailable};
use super::orgs::{no_such_org, refused};
use crate::entity::EntityKey;
use crate::identity::{Access, Admission, Principal};
use crate::limits::calendar::rfc3339;
use crate::service::membership::Memberships;
use crate::store::{MemberOutcome, OrgRole};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
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

/// An invitation sent: the user becomes a member once they accept it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationSent {
    /// Give this to the user; they accept it at
    /// `POST /v1/invitations/{invitation_id}/accept`.
    #[schema(example = "inv_0193a1c2e4f57b8c9d0e1f2a3b4c5d6e")]
    pub invitation_id: String,
    /// When it lapses if not accepted.
    #[schema(format = DateTime, example = "2026-12-08T06:54:10Z")]
    pub expires_at: String,
}

/// Invite a member, add one, or change a member's role
///
/// Membership needs the member's consent. An organisation's owners, admins
/// and `org_admin` keys **invite** (202): the user joins only by accepting
/// under their own credential, within 7 days, and until then nothing of
/// the organisation applies to them. Inviting answers the same for every
/// user id, whoever it names. A platform admin adds the user directly
/// (201). An existing member's role changes at once (200); the owner's
/// role cannot change (409).
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
        (status = 201, description = "The user was added (platform admins only).", body = MemberResponse),
        (status = 202, description = "The user was invited; they are not a member until they accept.", body = InvitationSent),
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
) -> Result<Response, ApiError> {
    let access = Access::new(&caller, &app.directory);
    let admission = access.may_add_member(&org_id).map_err(refused)?;
    EntityKey::user(&user_id).map_err(|e| ApiError::invalid("user id", e))?;
    let role = match body.role.as_deref() {
        None | Some("member") => OrgRole::Member,
        Some("admin") => OrgRole::Admin,
        Some(_) => return Err(ApiError::invalid("role", "must be \"member\" or \"admin\"")),
    };
    // Only this organisation's own owner: whether the user owns another
    // organisation is none of this one's business.
    let member_here = app.directory.membership(&user_id).filter(|m| *m.org_id == *org_id);
    if member_here.as_ref().is_some_and(|m| m.role == OrgRole::Owner) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "owner",
            "the owner's role cannot be changed",
        ));
    }
    let service = memberships(&app);
    if admission == Admission::Invite && member_here.is_none() {
        let invitation = service
            .invite(&org_id, &user_id, role, created_by(&caller))
            .await?
            .ok_or_else(no_such_org)?;
        tracing::info!(org = %org_id, user = %user_id, invitation = %invitation.id, "member invited");
        let sent = InvitationSent {
            invitation_id: invitation.id,
            expires_at: rfc3339(invitation.expires_at_ms),
        };
        return Ok((StatusCode::ACCEPTED, Json(sent)).into_response());
    }
    let status = match service.put(&org_id, &user_id, role).await? {
        MemberOutcome::Added => StatusCode::CREATED,
        MemberOutcome::RoleChanged => StatusCode::OK,
        // Only a platform admin gets here for a user who is not a member
        // (and an admin may know where everyone belongs).
        MemberOutcome::InAnotherOrg { .. } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "in_another_org",
                "the user belongs to another organisation; they must leave it first",
            ));
        }
        MemberOutcome::NoSuchOrg => return Err(no_such_org()),
    };
    let member = MemberResponse {
        org_id,
        user_id,
        role: role.as_str(),
    };
    Ok((status, Json(member)).into_response())
}

/// The service that sequences membership changes on this node.
pub(super) fn memberships(app: &AppState) -> Memberships<'_> {
    Memberships {
        store: &app.store,
        directory: &app.directory,
        router: &app.router,
        keys: &app.keys,
        cluster: &app.cluster,
    }
}

/// Who made a change, as keys and invitations record it.
pub(super) fn created_by(caller: &Principal) -> Option<String> {
    match caller {
        Principal::Admin => Some("admin".to_string()),
        Principal::User { user_id } => Some(format!("user:{user_id}")),
        Principal::Key(grant) => Some(format!("key:{}", grant.id)),
        Principal::Guest(_) => None,
    }
}

/// Remove a member
///
/// The user leaves the organisation, and nothing it did to them stays:
/// the keys it bound to them stop working at once, its cap on their budget
/// goes, and their own tier and budget apply again (their spend is theirs
/// and unchanged). Members may leave on their own (signed in as
/// themselves); owners, admins and `org_admin` keys may remove anyone but
/// the owner (409).
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
    // Members may leave on their own (under their own credential, not a
    // key the organisation holds for them); managers may remove anyone but
    // the owner.
    let leaving = access.own_credential_user().is_some_and(|own| **own == *user_id);
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
    if memberships(&app).remove(&org_id, &user_id).await?.is_none() {
        return Err(ApiError::not_found("not_found", "no such member"));
    }
    Ok(Json(MemberResponse {
        org_id,
        user_id,
        role: member.role.as_str(),
    }))
}
