//! The authenticated caller.

use super::guest::Guest;
use super::key_ring::KeyGrant;
use super::scope::Scope;
use std::sync::Arc;

/// Who is calling, decided once per request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The admin token, an `admin`-scoped key, or a JWT carrying the
    /// `tollgate:admin` permission (from `permissions`; from `scope` only
    /// with `--jwt-admin-from-scope`): everything, everywhere.
    Admin,
    /// An end user signed in with their own access token (JWT `sub`).
    User { user_id: Arc<str> },
    /// Any other API key: what it may do is in its grant. A JWT carrying
    /// the service permission is one too: a synthetic grant with the
    /// `service` scope, no organisation and no user.
    Key(Arc<KeyGrant>),
    /// No credential.
    Guest(Guest),
}

impl Principal {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::Admin => "admin",
            Principal::User { .. } => "user",
            Principal::Key(_) => "api_key",
            Principal::Guest(_) => "guest",
        }
    }

    /// The user this caller acts as by default (a JWT user, or a key owned
    /// by a user that carries the `check` scope).
    pub fn own_user(&self) -> Option<&Arc<str>> {
        match self {
            Principal::User { user_id } => Some(user_id),
            Principal::Key(grant) if grant.scopes.contains(Scope::Check) => grant.user_id.as_ref(),
            _ => None,
        }
    }

    /// For a key with the `service` scope: `Some(None)` if it may name any
    /// subject, `Some(Some(org))` if only members of `org`. `Some(None)`
    /// also for admins. `None`: may not name subjects.
    pub fn service_reach(&self) -> Option<Option<&Arc<str>>> {
        match self {
            Principal::Admin => Some(None),
            Principal::Key(grant) if grant.scopes.contains(Scope::Service) => Some(grant.org_id.as_ref()),
            _ => None,
        }
    }
}
