//! The `Store` methods for identity and tenancy, dispatching to the backend.

use super::rows::{check_secret_hash, latest_uses, scopes_text};
use super::{
    AcceptOutcome, ApiKeyRecord, CreateOrgOutcome, InvitationRecord, KeyListing, KeySecret, MemberOutcome, Membership,
    OrgRecord, OrgRole, OrgUpdate, Removal, SummaryFilter, SummaryGroup, SummaryRow,
};
use crate::money::Usd;
use crate::store::{Store, StoreResult};

impl Store {
    /// Creates an organisation and makes its owner a member with role
    /// `owner` (creating the owner's `users` row, tier `free`, if missing),
    /// in one transaction. The tier must exist (foreign key) and the id must
    /// be new (a taken id is a database error); the caller checks both.
    pub async fn create_org(&self, org: &OrgRecord) -> StoreResult<CreateOrgOutcome> {
        dispatch!(self, s => s.create_org(org).await)
    }

    pub async fn get_org(&self, id: &str) -> StoreResult<Option<OrgRecord>> {
        dispatch!(self, s => s.get_org(id).await)
    }

    /// Applies the `Some` fields; false if there is no such organisation.
    pub async fn update_org(&self, id: &str, update: &OrgUpdate) -> StoreResult<bool> {
        dispatch!(self, s => s.update_org(id, update).await)
    }

    /// Adds a user to an organisation (creating their `users` row, tier
    /// `free`, if missing) or changes their role there. Refuses, changing
    /// nothing, if the user is in another organisation or the organisation
    /// does not exist. Who may grant which role is the caller's business.
    pub async fn put_member(&self, org_id: &str, user_id: &str, role: OrgRole) -> StoreResult<MemberOutcome> {
        dispatch!(self, s => s.put_member(org_id, user_id, role).await)
    }

    /// Removes a user from an organisation and undoes, in the same
    /// transaction, everything the organisation did to them: clears their
    /// `users.organization_id`, revokes the keys the organisation bound to
    /// them (`api_keys` with this `org_id` and `user_id`, secrets deleted)
    /// and deletes their member budget cap. Their own tier, budget and
    /// spend are not touched. `None` if they were not a member of it. The
    /// owner too: whether that is allowed is decided by the caller.
    pub async fn remove_member(&self, org_id: &str, user_id: &str, now_ms: i64) -> StoreResult<Option<Removal>> {
        dispatch!(self, s => s.remove_member(org_id, user_id, now_ms).await)
    }

    /// Stores a new invitation, replacing the organisation's open one to the
    /// same user if any; false (nothing stored) if the organisation does
    /// not exist. Whether the user is free to join is not checked
    /// here: that is the invitee's business when they accept.
    pub async fn create_invitation(&self, invitation: &InvitationRecord) -> StoreResult<bool> {
        dispatch!(self, s => s.create_invitation(invitation).await)
    }

    /// The invited user takes up an open invitation: in one transaction,
    /// makes them a member with the invitation's role (creating their
    /// `users` row if missing) and marks it answered.
    pub async fn accept_invitation(&self, id: &str, user_id: &str, now_ms: i64) -> StoreResult<AcceptOutcome> {
        dispatch!(self, s => s.accept_invitation(id, user_id, now_ms).await)
    }

    /// The invited user turns down an open invitation (marks it answered);
    /// false if there is no open invitation with this id for this user.
    pub async fn decline_invitation(&self, id: &str, user_id: &str, now_ms: i64) -> StoreResult<bool> {
        dispatch!(self, s => s.decline_invitation(id, user_id, now_ms).await)
    }

    /// The user's open invitations (unanswered, unexpired at `now_ms`), by id.
    pub async fn pending_invitations(&self, user_id: &str, now_ms: i64) -> StoreResult<Vec<InvitationRecord>> {
        dispatch!(self, s => s.pending_invitations(user_id, now_ms).await)
    }

    /// Sets (`Some`) or removes (`None`) the cap an organisation puts on a
    /// member's monthly spend; false (nothing changed) if the user is not a
    /// member of `org_id`.
    pub async fn put_member_cap(&self, org_id: &str, user_id: &str, cap: Option<Usd>) -> StoreResult<bool> {
        dispatch!(self, s => s.put_member_cap(org_id, user_id, cap).await)
    }

    /// A user's own monthly budget and their organisation's cap on it.
    pub async fn user_budgets(&self, user_id: &str) -> StoreResult<(Option<Usd>, Option<Usd>)> {
        dispatch!(self, s => s.user_budgets(user_id).await)
    }

    /// An organisation's members, by user id.
    pub async fn list_members(&self, org_id: &str) -> StoreResult<Vec<Membership>> {
        dispatch!(self, s => s.list_members(org_id).await)
    }

    /// Every membership (by organisation, then user), for the in-memory
    /// directory built at start-up.
    pub async fn load_memberships(&self) -> StoreResult<Vec<Membership>> {
        dispatch!(self, s => s.load_memberships().await)
    }

    /// The organisation's tier, or None if there is no such organisation.
    pub async fn org_tier(&self, org_id: &str) -> StoreResult<Option<String>> {
        dispatch!(self, s => s.org_tier(org_id).await)
    }

    /// Stores a new key and its first secret (no expiry) in one
    /// transaction. `secret_hash` must be a lowercase hex SHA-256. A key
    /// bound to both an organisation and a user is stored only while the
    /// user is a member of it, checked in the same transaction (under the
    /// membership lock on Postgres), so a member's removal and a new key
    /// bound to them cannot interleave into a key that outlives the
    /// membership: false, nothing stored, otherwise.
    pub async fn create_api_key(&self, key: &ApiKeyRecord, secret_hash: &str) -> StoreResult<bool> {
        check_secret_hash(secret_hash)?;
        let scopes = scopes_text(&key.scopes)?;
        dispatch!(self, s => s.create_api_key(key, &scopes, secret_hash).await)
    }

    /// Adds a new secret to an unrevoked key, and makes every current secret
    /// expire at `old_expires_at_ms` (one already expiring sooner keeps its
    /// time), in one transaction. False if there is no such unrevoked key.
    pub async fn rotate_api_key(
        &self,
        key_id: &str,
        new_secret_hash: &str,
        old_expires_at_ms: i64,
    ) -> StoreResult<bool> {
        check_secret_hash(new_secret_hash)?;
        dispatch!(self, s => s.rotate_api_key(key_id, new_secret_hash, old_expires_at_ms).await)
    }

    /// Marks a key revoked at `now_ms` and deletes its secrets, so no secret
    /// of it can authenticate again. The row stays, for audit. False if
    /// there is no such key or it was already revoked (its first revocation
    /// time is kept).
    pub async fn revoke_api_key(&self, key_id: &str, now_ms: i64) -> StoreResult<bool> {
        dispatch!(self, s => s.revoke_api_key(key_id, now_ms).await)
    }

    /// A key, revoked or not.
    pub async fn get_api_key(&self, key_id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        dispatch!(self, s => s.get_api_key(key_id).await)
    }

    /// Every unrevoked key (by id) with its secrets that have not expired at
    /// `now_ms`, for the in-memory key directory.
    pub async fn load_api_keys(&self, now_ms: i64) -> StoreResult<Vec<(ApiKeyRecord, Vec<KeySecret>)>> {
        dispatch!(self, s => s.load_api_keys(now_ms).await)
    }

    /// Live keys within `listing`, by id, after the id `after` (a cursor),
    /// at most `limit` of them.
    pub async fn list_api_keys(
        &self,
        listing: &KeyListing,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ApiKeyRecord>> {
        dispatch!(self, s => s.list_api_keys(listing, after, limit).await)
    }

    /// Records key uses in one transaction: each key's `last_used_at`
    /// becomes the later of the stored value and the newest given. Unknown
    /// keys are ignored. Meant for a periodic batch, not every request.
    pub async fn touch_api_keys(&self, used: &[(String, i64)]) -> StoreResult<()> {
        let latest = latest_uses(used);
        if latest.is_empty() {
            return Ok(());
        }
        dispatch!(self, s => s.touch_api_keys(&latest).await)
    }

    /// Events, tokens and exact cost of the ledger rows matching `filter`,
    /// per group, sorted by group name (byte order).
    pub async fn usage_summary(&self, filter: &SummaryFilter, group: SummaryGroup) -> StoreResult<Vec<SummaryRow>> {
        if filter.from_ms >= filter.to_ms {
            return Ok(Vec::new());
        }
        dispatch!(self, s => s.usage_summary(filter, group).await)
    }
}
