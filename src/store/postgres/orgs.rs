//! Organisations and members, Postgres flavour.
//!
//! A user belongs to at most one organisation, and `users.organization_id`
//! must follow `org_members`. Every transaction that changes a user's
//! membership first takes a transaction-scoped advisory lock on that user,
//! so its "is this user already a member?" read and the write that follows
//! cannot interleave with another node's (as SQLite's `BEGIN IMMEDIATE`
//! guarantees there). One lock per transaction, taken first: no deadlocks.

use super::PgStore;
use crate::store::identity::memberships;
use crate::store::{CreateOrgOutcome, MemberOutcome, Membership, OrgRecord, OrgRole, OrgUpdate, Removal, StoreResult};
use sqlx::postgres::PgConnection;
use sqlx::{Postgres, QueryBuilder};

/// An `organizations` row: id, name, billing e-mail, tier, owner, created.
type OrgRow = (String, String, Option<String>, String, String, i64);

impl PgStore {
    pub(in crate::store) async fn create_org(&self, org: &OrgRecord) -> StoreResult<CreateOrgOutcome> {
        let mut tx = self.pool.begin().await?;
        lock_membership(&mut tx, &org.owner_user_id).await?;
        if let Some(org_id) = org_of(&mut tx, &org.owner_user_id).await? {
            return Ok(CreateOrgOutcome::OwnerInAnotherOrg { org_id });
        }
        sqlx::query(concat!(
            "INSERT INTO organizations (id, name, billing_email, subscription_tier, owner_user_id, created_at, ",
            "updated_at) VALUES ($1, $2, $3, $4, $5, ",
            at_ms!("$6"),
            ", ",
            at_ms!("$6"),
            ")"
        ))
        .bind(&org.id)
        .bind(&org.name)
        .bind(&org.billing_email)
        .bind(&org.tier)
        .bind(&org.owner_user_id)
        .bind(org.created_at_ms)
        .execute(&mut *tx)
        .await?;
        join(&mut tx, &org.id, &org.owner_user_id, OrgRole::Owner).await?;
        tx.commit().await?;
        Ok(CreateOrgOutcome::Created)
    }

    pub(in crate::store) async fn get_org(&self, id: &str) -> StoreResult<Option<OrgRecord>> {
        let row: Option<OrgRow> = sqlx::query_as(concat!(
            "SELECT id, name, billing_email, subscription_tier, owner_user_id, ",
            ms_of!("created_at"),
            " FROM organizations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(id, name, billing_email, tier, owner_user_id, created_at_ms)| OrgRecord {
                id,
                name,
                billing_email,
                tier,
                owner_user_id,
                created_at_ms,
            },
        ))
    }

    pub(in crate::store) async fn update_org(&self, id: &str, update: &OrgUpdate) -> StoreResult<bool> {
        let mut query = QueryBuilder::<Postgres>::new("UPDATE organizations SET updated_at = now()");
        if let Some(name) = &update.name {
            query.push(", name = ").push_bind(name.clone());
        }
        if let Some(email) = &update.billing_email {
            query.push(", billing_email = ").push_bind(email.clone());
        }
        if let Some(tier) = &update.tier {
            query.push(", subscription_tier = ").push_bind(tier.clone());
        }
        query.push(" WHERE id = ").push_bind(id.to_string());
        let done = query.build().execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    pub(in crate::store) async fn put_member(
        &self,
        org_id: &str,
        user_id: &str,
        role: OrgRole,
    ) -> StoreResult<MemberOutcome> {
        let mut tx = self.pool.begin().await?;
        lock_membership(&mut tx, user_id).await?;
        // KEY SHARE: the organisation cannot be deleted under the new member
        // (the foreign key would take the same lock on insert).
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM organizations WHERE id = $1 FOR KEY SHARE")
            .bind(org_id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            return Ok(MemberOutcome::NoSuchOrg);
        }
        let outcome = match org_of(&mut tx, user_id).await? {
            Some(current) if current != org_id => return Ok(MemberOutcome::InAnotherOrg { org_id: current }),
            Some(_) => {
                sqlx::query("UPDATE org_members SET role = $2 WHERE user_id = $1")
                    .bind(user_id)
                    .bind(role.as_str())
                    .execute(&mut *tx)
                    .await?;
                MemberOutcome::RoleChanged
            }
            None => {
                join(&mut tx, org_id, user_id, role).await?;
                MemberOutcome::Added
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    pub(in crate::store) async fn remove_member(
        &self,
        org_id: &str,
        user_id: &str,
        now_ms: i64,
    ) -> StoreResult<Option<Removal>> {
        let mut tx = self.pool.begin().await?;
        lock_membership(&mut tx, user_id).await?;
        let done = sqlx::query("DELETE FROM org_members WHERE user_id = $1 AND org_id = $2")
            .bind(user_id)
            .bind(org_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query("UPDATE users SET organization_id = NULL, updated_at = now() WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let revoked_keys: Vec<String> = sqlx::query_scalar(concat!(
            "UPDATE api_keys SET revoked_at = ",
            at_ms!("$3"),
            " WHERE org_id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING id"
        ))
        .bind(org_id)
        .bind(user_id)
        .bind(now_ms)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM api_key_secrets WHERE key_id IN \
                 (SELECT id FROM api_keys WHERE org_id = $1 AND user_id = $2)",
        )
        .bind(org_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM member_budget_caps WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(Removal { revoked_keys }))
    }

    pub(in crate::store) async fn list_members(&self, org_id: &str) -> StoreResult<Vec<Membership>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT org_id, user_id, role FROM org_members WHERE org_id = $1 ORDER BY user_id COLLATE \"C\"",
        )
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        memberships(rows)
    }

    pub(in crate::store) async fn load_memberships(&self) -> StoreResult<Vec<Membership>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT org_id, user_id, role FROM org_members ORDER BY org_id COLLATE \"C\", user_id COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        memberships(rows)
    }

    pub(in crate::store) async fn org_tier(&self, org_id: &str) -> StoreResult<Option<String>> {
        let tier = sqlx::query_scalar("SELECT subscription_tier FROM organizations WHERE id = $1")
            .bind(org_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(tier)
    }
}

/// Serialises membership changes of one user until the transaction ends.
pub(super) async fn lock_membership(conn: &mut PgConnection, user_id: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('tollgate.org_members:' || $1, 0))")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The organisation a user belongs to, if any.
pub(super) async fn org_of(conn: &mut PgConnection, user_id: &str) -> StoreResult<Option<String>> {
    let org_id = sqlx::query_scalar("SELECT org_id FROM org_members WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(conn)
        .await?;
    Ok(org_id)
}

/// Makes a user (known to be in no organisation) a member, and points their
/// `users` row at the organisation, creating the row (tier `free`) if needed.
pub(super) async fn join(conn: &mut PgConnection, org_id: &str, user_id: &str, role: OrgRole) -> StoreResult<()> {
    sqlx::query("INSERT INTO org_members (user_id, org_id, role) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(org_id)
        .bind(role.as_str())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO users (id, organization_id) VALUES ($1, $2) \
         ON CONFLICT (id) DO UPDATE SET organization_id = excluded.organization_id, updated_at = now()",
    )
    .bind(user_id)
    .bind(org_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
