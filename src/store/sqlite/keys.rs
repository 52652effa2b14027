//! API keys and their secrets, SQLite flavour.

use super::SqliteStore;
use crate::store::identity::{KeyRow, KeyWithSecretRow, api_key_from_row, group_key_rows};
use crate::store::{ApiKeyRecord, KeyListing, KeySecret, StoreResult};
use sqlx::{QueryBuilder, Sqlite};

/// Key uses per `UPDATE … FROM (VALUES …)` statement (2 binds each), well
/// under SQLite's bind-parameter limit.
const TOUCH_CHUNK: usize = 500;

impl SqliteStore {
    pub(in crate::store) async fn create_api_key(
        &self,
        key: &ApiKeyRecord,
        scopes: &str,
        secret_hash: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let (Some(org_id), Some(user_id)) = (&key.org_id, &key.user_id)
            && super::orgs::org_of(&mut tx, user_id).await?.as_ref() != Some(org_id)
        {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO api_keys (id, name, scopes, org_id, user_id, created_by, created_at, revoked_at, \
                 last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(scopes)
        .bind(&key.org_id)
        .bind(&key.user_id)
        .bind(&key.created_by)
        .bind(key.created_at_ms)
        .bind(key.revoked_at_ms)
        .bind(key.last_used_at_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO api_key_secrets (secret_hash, key_id) VALUES ($1, $2)")
            .bind(secret_hash)
            .bind(&key.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(in crate::store) async fn rotate_api_key(
        &self,
        key_id: &str,
        new_secret_hash: &str,
        old_expires_at_ms: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let live: Option<i64> = sqlx::query_scalar("SELECT 1 FROM api_keys WHERE id = $1 AND revoked_at IS NULL")
            .bind(key_id)
            .fetch_optional(&mut *tx)
            .await?;
        if live.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE api_key_secrets SET expires_at = $2 \
             WHERE key_id = $1 AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(key_id)
        .bind(old_expires_at_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO api_key_secrets (secret_hash, key_id) VALUES ($1, $2)")
            .bind(new_secret_hash)
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(in crate::store) async fn revoke_api_key(&self, key_id: &str, now_ms: i64) -> StoreResult<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
            .bind(key_id)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM api_key_secrets WHERE key_id = $1")
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub(in crate::store) async fn get_api_key(&self, key_id: &str) -> StoreResult<Option<ApiKeyRecord>> {
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT id, name, scopes, org_id, user_id, created_by, created_at, revoked_at, last_used_at \
             FROM api_keys WHERE id = $1",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(api_key_from_row))
    }

    pub(in crate::store) async fn list_api_keys(
        &self,
        listing: &KeyListing,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<ApiKeyRecord>> {
        let (all, org_id, user_id) = match listing {
            KeyListing::All => (true, None, None),
            KeyListing::Reach { org_id, user_id } => (false, org_id.as_deref(), user_id.as_deref()),
        };
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT id, name, scopes, org_id, user_id, created_by, created_at, revoked_at, last_used_at \
             FROM api_keys \
             WHERE revoked_at IS NULL AND ($1 OR org_id = $2 OR user_id = $3) AND ($4 IS NULL OR id > $4) \
             ORDER BY id LIMIT $5",
        )
        .bind(all)
        .bind(org_id)
        .bind(user_id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(api_key_from_row).collect())
    }

    pub(in crate::store) async fn load_api_keys(
        &self,
        now_ms: i64,
    ) -> StoreResult<Vec<(ApiKeyRecord, Vec<KeySecret>)>> {
        let rows: Vec<KeyWithSecretRow> = sqlx::query_as(
            "SELECT k.id, k.name, k.scopes, k.org_id, k.user_id, k.created_by, k.created_at, k.revoked_at, \
                    k.last_used_at, s.secret_hash, s.expires_at \
             FROM api_keys k \
             LEFT JOIN api_key_secrets s \
                 ON s.key_id = k.id AND (s.expires_at IS NULL OR s.expires_at > $1) \
             WHERE k.revoked_at IS NULL \
             ORDER BY k.id, s.secret_hash",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(group_key_rows(rows))
    }

    pub(in crate::store) async fn touch_api_keys(&self, latest: &[(&str, i64)]) -> StoreResult<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for chunk in latest.chunks(TOUCH_CHUNK) {
            let mut update = QueryBuilder::<Sqlite>::new("WITH used (id, at) AS (");
            update.push_values(chunk, |mut values, (id, at)| {
                values.push_bind(id.to_string()).push_bind(*at);
            });
            update.push(
                ") UPDATE api_keys SET last_used_at = max(coalesce(api_keys.last_used_at, used.at), used.at) \
                 FROM used WHERE api_keys.id = used.id",
            );
            update.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
