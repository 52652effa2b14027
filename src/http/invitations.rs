//! Invitations, answered by the invited user alone.
//!
//! Who may call: the invited user under their own credential (their JWT,
//! or a personal `check` key with no organisation). Anyone else, and any
//! invitation that is unknown, expired or already answered, gets the same
//! 404: an invitation id reveals nothing to whoever holds it. The worst a
//! hostile caller can do is answer their own invitations.

use super::AppState;
use super::error::ApiError;
use super::extract::Caller;
use super::openapi::{BadRequest, Conflict, Forbidden, NotFound, Unauthorized, Unavailable};
use super::org_members::{MemberResponse, memberships};
use crate::identity::{Access, Denied};
use crate::limits::calendar::{now_ms, rfc3339};
use crate::store::{AcceptOutcome, InvitationRecord, OrgRole};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

const NO_SUCH_INVITATION: &str = "no such invitation open for you";

fn refused(denied: Denied) -> ApiError {
    ApiError::denied(
        denied,
        NO_SUCH_INVITATION,
        "answer an invitation signed in as the invited user, in Authorization",
    )
}

fn not_found() -> ApiError {
    ApiError::not_found("not_found", NO_SUCH_INVITATION)
}

/// An open invitation.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationResponse {
    #[schema(example = "inv_0193a1c2e4f57b8c9d0e1f2a3b4c5d6e")]
    pub id: String,
    /// The organisation that invites.
    pub org_id: String,
    /// The role accepting gives.
    #[schema(value_type = OrgRole)]
    pub role: &'static str,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

impl From<InvitationRecord> for InvitationResponse {
    fn from(inv: InvitationRecord) -> Self {
        InvitationResponse {
            id: inv.id,
            org_id: inv.org_id,
            role: inv.role.as_str(),
            created_at: rfc3339(inv.created_at_ms),
            expires_at: rfc3339(inv.expires_at_ms),
        }
    }
}

/// The caller's open invitations.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationList {
    pub items: Vec<InvitationResponse>,
    /// Always null: a user has at most one open invitation per
    /// organisation, so one page holds them all.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// List my invitations
///
/// The caller's open invitations (unanswered, unexpired), by id. Only
/// under the user's own credential (JWT or personal key); other
/// credentials get 403, guests 401.
#[utoipa::path(
    get,
    path = "/v1/invitations",
    operation_id = "list_invitations",
    tag = "organisations",
    responses(
        (status = 200, description = "The caller's open invitations.", body = InvitationList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn list(State(app): State<Arc<AppState>>, Caller(caller): Caller) -> Result<Json<InvitationList>, ApiError> {
    // Listing is not about one invitation, so nothing is hidden here: a
    // credential that is not a user's own is simply not allowed.
    let user = Access::new(&caller, &app.directory)
        .invitee()
        .map_err(|denied| match denied {
            Denied::Hidden => Denied::Forbidden("invitations are listed by the invited user, signed in as themselves"),
            other => other,
        })
        .map_err(refused)?;
    let items = app
        .store
        .pending_invitations(&user, now_ms())
        .await?
        .into_iter()
        .map(InvitationResponse::from)
        .collect();
    Ok(Json(InvitationList {
        items,
        next_cursor: None,
    }))
}

/// Accept an invitation
///
/// The caller becomes a member with the invitation's role: their checks
/// then count against the organisation too and follow its tier. A user
/// already in another organisation must leave it first (409; the
/// invitation stays open). Only the invited user, under their own
/// credential; for anyone else, and for an unknown, expired or answered
/// invitation, 404.
#[utoipa::path(
    post,
    path = "/v1/invitations/{id}/accept",
    operation_id = "accept_invitation",
    tag = "organisations",
    params(("id" = String, Path, description = "The invitation's id.", example = "inv_0193a1c2e4f57b8c9d0e1f2a3b4c5d6e")),
    responses(
        (status = 200, description = "Joined.", body = MemberResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn accept(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<MemberResponse>, ApiError> {
    let user = Access::new(&caller, &app.directory).invitee().map_err(refused)?;
    match memberships(&app).accept(&id, &user).await? {
        AcceptOutcome::Joined(m) => {
            tracing::info!(org = %m.org_id, user = %m.user_id, "invitation accepted");
            Ok(Json(MemberResponse {
                org_id: m.org_id,
                user_id: m.user_id,
                role: m.role.as_str(),
            }))
        }
        AcceptOutcome::InAnotherOrg => Err(ApiError::new(
            StatusCode::CONFLICT,
            "in_another_org",
            "you belong to another organisation; leave it first, then accept",
        )),
        AcceptOutcome::NotFound => Err(not_found()),
    }
}

/// A declined invitation.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeclineResponse {
    pub id: String,
    /// Always true.
    pub declined: bool,
}

/// Decline an invitation
///
/// The invitation is closed; the organisation may invite again. Same
/// callers and 404 rule as accepting.
#[utoipa::path(
    delete,
    path = "/v1/invitations/{id}/accept",
    operation_id = "decline_invitation",
    tag = "organisations",
    params(("id" = String, Path, description = "The invitation's id.", example = "inv_0193a1c2e4f57b8c9d0e1f2a3b4c5d6e")),
    responses(
        (status = 200, description = "Declined.", body = DeclineResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])),
)]
pub async fn decline(
    State(app): State<Arc<AppState>>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<DeclineResponse>, ApiError> {
    let user = Access::new(&caller, &app.directory).invitee().map_err(refused)?;
    if !app.store.decline_invitation(&id, &user, now_ms()).await? {
        return Err(not_found());
    }
    Ok(Json(DeclineResponse { id, declined: true }))
}
