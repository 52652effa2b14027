//! Identity and tenancy in the store: organisations and their members, API
//! keys and their secrets, and the usage summary read from the ledger.
//!
//! The types here are what both backends read and write; the `Store`
//! methods (in `api`) dispatch to them. Validation of names, scopes and
//! who may do what happens above the store: the store keeps the invariants
//! that need a transaction (one organisation per user, `users.organization_id`
//! in step with membership, rotation and revocation of secrets).

use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

mod api;
mod rows;

pub(super) use rows::{
    KeyRow, KeyWithSecretRow, SummaryTotals, api_key_from_row, group_key_rows, memberships, stored_role, utc_day,
};

/// A member's role in their organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum OrgRole {
    Owner,
    Admin,
    Member,
}

impl OrgRole {
    /// The text stored in `org_members.role` (and used in the API).
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Owner => "owner",
            OrgRole::Admin => "admin",
            OrgRole::Member => "member",
        }
    }
}

impl fmt::Display for OrgRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not `owner`, `admin` or `member`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (expected owner, admin or member)")]
pub struct UnknownRole(pub String);

impl FromStr for OrgRole {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(OrgRole::Owner),
            "admin" => Ok(OrgRole::Admin),
            "member" => Ok(OrgRole::Member),
            other => Err(UnknownRole(other.to_string())),
        }
    }
}

/// An `organizations` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgRecord {
    /// Chosen by the caller (a UUID string); also the id in `org:<id>`.
    pub id: String,
    pub name: String,
    pub billing_email: Option<String>,
    /// The subscription tier the `org:` entity is limited by.
    pub tier: String,
    /// The user who created it; made a member with role `owner`.
    pub owner_user_id: String,
    pub created_at_ms: i64,
}

/// One user's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub org_id: String,
    pub user_id: String,
    pub role: OrgRole,
}

/// What `create_org` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOrgOutcome {
    Created,
    /// Nothing was created: the owner already belongs to `org_id` (a user
    /// is in at most one organisation). `org_id` may be the id asked for,
    /// when the same creation is retried.
    OwnerInAnotherOrg {
        org_id: String,
    },
}

/// What `put_member` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberOutcome {
    Added,
    /// Already a member of this organisation; the role is now the one given
    /// (possibly unchanged).
    RoleChanged,
    /// Nothing changed: the user belongs to another organisation.
    InAnotherOrg {
        org_id: String,
    },
    NoSuchOrg,
}

/// An `org_invitations` row: an organisation's offer of membership, which
/// only the invited user can take up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRecord {
    /// `inv_` and 32 hex digits: unguessable, since a guessed id would
    /// still be useless to anyone but the invited user.
    pub id: String,
    pub org_id: String,
    pub user_id: String,
    /// `admin` or `member` (an organisation has one owner, its creator).
    pub role: OrgRole,
    /// Who sent it, as `user:<id>`, `key:<id>` or `admin`.
    pub invited_by: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// When it was accepted or declined; it cannot be used after that.
    pub answered_at_ms: Option<i64>,
}

/// What `accept_invitation` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    /// The user is now a member (or already was one, of this organisation:
    /// their role is left as it was).
    Joined(Membership),
    /// Nothing changed: the user belongs to another organisation and must
    /// leave it first. The invitation stays open until it expires.
    InAnotherOrg,
    /// No open invitation with this id for this user: unknown, someone
    /// else's, expired, already answered, or its organisation is gone.
    NotFound,
}

/// What `remove_member` undid, besides the membership itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Removal {
    /// Ids of the keys the organisation had bound to the user, now revoked.
    pub revoked_keys: Vec<String>,
}

/// Which keys a listing covers (live keys only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyListing {
    /// Every key (a platform admin).
    All,
    /// Keys of this organisation, or keys acting as this user (either
    /// `None` matches nothing).
    Reach {
        org_id: Option<String>,
        user_id: Option<String>,
    },
}

/// A partial update of an organisation: `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrgUpdate {
    pub name: Option<String>,
    /// `Some(None)` clears the billing e-mail.
    pub billing_email: Option<Option<String>>,
    /// Must name an existing tier (foreign key); the caller checks first.
    pub tier: Option<String>,
}

/// An `api_keys` row (never the secret: see [`KeySecret`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    /// Validated above the store; stored comma-separated, so a scope must
    /// be non-empty and contain no comma.
    pub scopes: Vec<String>,
    pub org_id: Option<String>,
    pub user_id: Option<String>,
    pub created_by: Option<String>,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub last_used_at_ms: Option<i64>,
}

/// One secret that opens a key, as its SHA-256 (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySecret {
    pub secret_hash: String,
    pub key_id: String,
    /// None: valid until the key is rotated or revoked. Set on the old
    /// secret by a rotation, which keeps it valid for a grace period.
    pub expires_at_ms: Option<i64>,
}

/// What the usage summary groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum SummaryGroup {
    Model,
    /// `model_usage.user_id`; rows charged to no user (guests, organisation
    /// keys) are grouped under `""`, so every grouping of the same filter
    /// adds up to the same totals.
    User,
    /// The event's UTC date, `YYYY-MM-DD`.
    Day,
}

/// Which ledger rows the summary covers: all rows matching every `Some`
/// filter with `from_ms <= created_at < to_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryFilter {
    pub org_id: Option<String>,
    pub user_id: Option<String>,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// One group of the usage summary. Money is summed exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryRow {
    pub group: String,
    pub events: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Decimal,
}
