//! Membership by consent, and undoing it: the sequences behind inviting,
//! accepting, removing and capping a member.
//!
//! Each change goes to the store first (one transaction), then to memory on
//! this node (the directory checks read, the key ring the authenticator
//! reads), then to the other nodes as an invalidation, and last to the
//! user's actor (tier and budget), wherever it lives. If a later step
//! fails, the store already holds the truth and a retry or the periodic
//! reconciliation converges on it.
//!
//! The rule this module keeps: **nothing an organisation did to a user
//! outlives the membership.** An organisation can bind keys to a member and
//! cap a member's spend, and both end, in the same transaction, when the
//! membership does; the user's own tier, budget and spend are never
//! written by an organisation.

use super::tenancy::{TenancyError, refresh_user_tier};
use crate::entity::EntityKey;
use crate::identity::api_keys::ApiKeys;
use crate::identity::{BudgetAuthority, Directory};
use crate::limits::alerts::Thresholds;
use crate::limits::budget::effective_budget;
use crate::limits::calendar::now_ms;
use crate::money::Usd;
use crate::node::ClusterNode;
use crate::router::EntityRouter;
use crate::router::peer::Invalidation;
use crate::store::{AcceptOutcome, InvitationRecord, MemberOutcome, OrgRole, Removal, Store, StoreError};
use std::time::Duration;

/// How long an invitation stays open: long enough for someone on holiday
/// to see it, short enough that a forgotten one does not linger as a
/// standing offer.
pub const INVITATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The parts of a node a membership change touches.
pub struct Memberships<'a> {
    pub store: &'a Store,
    pub directory: &'a Directory,
    pub router: &'a EntityRouter,
    pub keys: &'a ApiKeys,
    pub cluster: &'a ClusterNode,
}

impl Memberships<'_> {
    /// Adds a user directly or changes a member's role (a platform admin,
    /// or a role change within the organisation).
    pub async fn put(&self, org_id: &str, user_id: &str, role: OrgRole) -> Result<MemberOutcome, TenancyError> {
        let outcome = self.store.put_member(org_id, user_id, role).await?;
        if matches!(outcome, MemberOutcome::Added | MemberOutcome::RoleChanged) {
            self.joined(org_id, user_id, role).await?;
        }
        Ok(outcome)
    }

    /// Records an invitation, open for [`INVITATION_TTL`]. `None` if the
    /// organisation does not exist. Nothing about the user changes.
    pub async fn invite(
        &self,
        org_id: &str,
        user_id: &str,
        role: OrgRole,
        invited_by: Option<String>,
    ) -> Result<Option<InvitationRecord>, StoreError> {
        let now = now_ms();
        let ttl_ms = i64::try_from(INVITATION_TTL.as_millis()).unwrap_or(i64::MAX);
        let invitation = InvitationRecord {
            id: format!("inv_{}", uuid::Uuid::new_v4().simple()),
            org_id: org_id.to_string(),
            user_id: user_id.to_string(),
            role,
            invited_by,
            created_at_ms: now,
            expires_at_ms: now.saturating_add(ttl_ms),
            answered_at_ms: None,
        };
        Ok(self.store.create_invitation(&invitation).await?.then_some(invitation))
    }

    /// The invited user accepts: the membership is made, then applied.
    pub async fn accept(&self, invitation_id: &str, user_id: &str) -> Result<AcceptOutcome, TenancyError> {
        let outcome = self.store.accept_invitation(invitation_id, user_id, now_ms()).await?;
        if let AcceptOutcome::Joined(m) = &outcome {
            self.joined(&m.org_id, &m.user_id, m.role).await?;
        }
        Ok(outcome)
    }

    /// The user is in `org_id` with `role` in the store: make every node
    /// see it, and move their actor to the organisation's tier.
    async fn joined(&self, org_id: &str, user_id: &str, role: OrgRole) -> Result<(), TenancyError> {
        self.directory.set(user_id, org_id, role);
        self.cluster
            .broadcast(Invalidation::Membership {
                user_id: user_id.to_string(),
                org: Some((org_id.to_string(), role.as_str().to_string())),
            })
            .await;
        refresh_user_tier(self.router, self.store, self.directory, user_id).await
    }

    /// The member leaves or is removed. In one store transaction the
    /// membership, the keys the organisation bound to them and their member
    /// cap go; then those keys stop authenticating here at once and on
    /// every other node, the directory forgets the membership, and the
    /// user's actor returns to their own tier and own budget. `None` if
    /// they were not a member of `org_id`.
    pub async fn remove(&self, org_id: &str, user_id: &str) -> Result<Option<Removal>, TenancyError> {
        let Some(removal) = self.store.remove_member(org_id, user_id, now_ms()).await? else {
            return Ok(None);
        };
        for key_id in &removal.revoked_keys {
            self.keys.ring().revoke(key_id);
            self.cluster
                .broadcast(Invalidation::ApiKey { key_id: key_id.clone() })
                .await;
        }
        if !removal.revoked_keys.is_empty() {
            tracing::info!(org = org_id, user = user_id, keys = ?removal.revoked_keys,
                "keys bound to a leaving member revoked");
        }
        self.directory.remove(user_id);
        self.cluster
            .broadcast(Invalidation::Membership {
                user_id: user_id.to_string(),
                org: None,
            })
            .await;
        refresh_user_tier(self.router, self.store, self.directory, user_id).await?;
        self.refresh_user_budget(user_id).await?;
        Ok(Some(removal))
    }

    /// Sets (`Some`) or clears (`None`) the budget `authority` governs: the
    /// user's own (with its alert thresholds; None: the defaults), or their
    /// organisation's cap on them. Either way the actor then runs with the
    /// lower of the two. False if a member cap was asked for and the user
    /// is no longer a member of that organisation.
    pub async fn set_user_budget(
        &self,
        user: &EntityKey,
        authority: &BudgetAuthority,
        budget: Option<Usd>,
        thresholds: Option<&Thresholds>,
    ) -> Result<bool, TenancyError> {
        match authority {
            BudgetAuthority::Own => self.store.put_budget_with_thresholds(user, budget, thresholds).await?,
            BudgetAuthority::MemberCap { org_id } => {
                if !self.store.put_member_cap(org_id, user.id(), budget).await? {
                    return Ok(false);
                }
            }
        }
        self.refresh_user_budget(user.id()).await?;
        Ok(true)
    }

    /// Tells a resident user entity the limit it runs with now.
    async fn refresh_user_budget(&self, user_id: &str) -> Result<(), TenancyError> {
        let Ok(key) = EntityKey::user(user_id) else {
            return Ok(());
        };
        let (own, cap) = self.store.user_budgets(user_id).await?;
        let limit = effective_budget(own, cap).map(Usd::value);
        self.router.set_budget(&key, limit).await?;
        Ok(())
    }
}
