//! Invitations and member budget caps, Postgres flavour.
//!
//! Accepting an invitation changes a membership, so it takes the same
//! per-user advisory lock as `orgs` does before reading "is this user in an
//! organisation?".

use super::PgStore;
use super::orgs::{join, lock_membership, org_of};
use crate::money::Usd;
use crate::store::identity::stored_role;
use crate::store::{AcceptOutcome, InvitationRecord, Membership, StoreResult, stored_usd};
use rust_decimal::Decimal;

/// An `org_invitations` row (times as Unix ms): id, org, user, role,
/// invited by, created, expires, answered.
type InvitationRow = (String, String, String, String, Option<String>, i64, i64, Option<i64>);

impl PgStore {
    pub(in crate::store) async fn create_invitation(&self, inv: &InvitationRecord) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM organizations WHERE id = $1 FOR KEY SHARE")
            .bind(&inv.org_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(false);
        }
        // A new invitation replaces the organisation's earlier open one to
        // the same user, so re-inviting cannot pile up rows.
        sqlx::query("DELETE FROM org_invitations WHERE org_id = $1 AND user_id = $2 AND answered_at IS NULL")
            .bind(&inv.org_id)
            .bind(&inv.user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(concat!(
            "INSERT INTO org_invitations (id, org_id, user_id, role, invited_by, created_at, expires_at, ",
            "answered_at) VALUES ($1, $2, $3, $4, $5, ",
            at_ms!("$6"),
            ", ",
            at_ms!("$7"),
            ", ",
            at_ms!("$8"),
            ")"
        ))
        .bind(&inv.id)
        .bind(&inv.org_id)
        .bind(&inv.user_id)
        .bind(inv.role.as_str())
        .bind(&inv.invited_by)
        .bind(inv.created_at_ms)
        .bind(inv.expires_at_ms)
        .bind(inv.answered_at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(in crate::store) async fn accept_invitation(
        &self,
        id: &str,
        user_id: &str,
        now_ms: i64,
    ) -> StoreResult<AcceptOutcome> {
        let mut tx = self.pool.begin().await?;
        lock_membership(&mut tx, user_id).await?;
        // FOR UPDATE: a concurrent accept or decline of the same invitation
        // waits, then finds it answered. The join leaves out invitations
        // whose organisation is gone.
        let open: Option<(String, String)> = sqlx::query_as(concat!(
            "SELECT i.org_id, i.role FROM org_invitations i JOIN organizations o ON o.id = i.org_id ",
            "WHERE i.id = $1 AND i.user_id = $2 AND i.answered_at IS NULL AND i.expires_at > ",
            at_ms!("$3"),
            " FOR UPDATE OF i FOR KEY SHARE OF o"
        ))
        .bind(id)
        .bind(user_id)
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((org_id, role)) = open else {
            return Ok(AcceptOutcome::NotFound);
        };
        let role = stored_role(&role)?;
        let membership = match org_of(&mut tx, user_id).await? {
            Some(current) if current != org_id => return Ok(AcceptOutcome::InAnotherOrg),
            Some(_) => {
                let role: String = sqlx::query_scalar("SELECT role FROM org_members WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_one(&mut *tx)
                    .await?;
                Membership {
                    org_id,
                    user_id: user_id.to_string(),
                    role: stored_role(&role)?,
                }
            }
            None => {
                join(&mut tx, &org_id, user_id, role).await?;
                Membership {
                    org_id,
                    user_id: user_id.to_string(),
                    role,
                }
            }
        };
        sqlx::query(concat!(
            "UPDATE org_invitations SET answered_at = ",
            at_ms!("$2"),
            " WHERE id = $1"
        ))
        .bind(id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AcceptOutcome::Joined(membership))
    }

    pub(in crate::store) async fn decline_invitation(&self, id: &str, user_id: &str, now_ms: i64) -> StoreResult<bool> {
        let done = sqlx::query(concat!(
            "UPDATE org_invitations SET answered_at = ",
            at_ms!("$3"),
            " WHERE id = $1 AND user_id = $2 AND answered_at IS NULL AND expires_at > ",
            at_ms!("$3")
        ))
        .bind(id)
        .bind(user_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(in crate::store) async fn pending_invitations(
        &self,
        user_id: &str,
        now_ms: i64,
    ) -> StoreResult<Vec<InvitationRecord>> {
        let rows: Vec<InvitationRow> = sqlx::query_as(concat!(
            "SELECT id, org_id, user_id, role, invited_by, ",
            ms_of!("created_at"),
            ", ",
            ms_of!("expires_at"),
            ", ",
            ms_of!("answered_at"),
            " FROM org_invitations WHERE user_id = $1 AND answered_at IS NULL AND expires_at > ",
            at_ms!("$2"),
            " ORDER BY id COLLATE \"C\""
        ))
        .bind(user_id)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(invitation_from_row).collect()
    }

    pub(in crate::store) async fn put_member_cap(
        &self,
        org_id: &str,
        user_id: &str,
        cap: Option<Usd>,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        // The same lock as a removal: a cap cannot land after the member left.
        lock_membership(&mut tx, user_id).await?;
        if org_of(&mut tx, user_id).await?.as_deref() != Some(org_id) {
            return Ok(false);
        }
        match cap {
            Some(cap) => {
                sqlx::query(
                    "INSERT INTO member_budget_caps (user_id, org_id, monthly_budget_usd) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id) DO UPDATE SET org_id = excluded.org_id, \
                     monthly_budget_usd = excluded.monthly_budget_usd, updated_at = now()",
                )
                .bind(user_id)
                .bind(org_id)
                .bind(cap.value())
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM member_budget_caps WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    pub(in crate::store) async fn user_budgets(&self, user_id: &str) -> StoreResult<(Option<Usd>, Option<Usd>)> {
        let (own, cap): (Option<Decimal>, Option<Decimal>) = sqlx::query_as(
            "SELECT (SELECT monthly_budget_usd FROM budget_limits WHERE entity = 'user:' || $1), \
                    (SELECT monthly_budget_usd FROM member_budget_caps WHERE user_id = $1)",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok((
            own.map(|b| stored_usd(b, "budget_limits.monthly_budget_usd"))
                .transpose()?,
            cap.map(|b| stored_usd(b, "member_budget_caps.monthly_budget_usd"))
                .transpose()?,
        ))
    }
}

fn invitation_from_row(row: InvitationRow) -> StoreResult<InvitationRecord> {
    let (id, org_id, user_id, role, invited_by, created_at_ms, expires_at_ms, answered_at_ms) = row;
    Ok(InvitationRecord {
        id,
        org_id,
        user_id,
        role: stored_role(&role)?,
        invited_by,
        created_at_ms,
        expires_at_ms,
        answered_at_ms,
    })
}
