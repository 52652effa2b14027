//! API keys: created, rotated and revoked through the store, served from
//! the in-memory [`KeyRing`].
//!
//! A secret is `tg_` followed by 32 random bytes in base64url; it is shown
//! once, when created or rotated, and only its SHA-256 is stored.

use super::key_ring::{KeyEntry, KeyGrant, KeyRing, SecretHash};
use super::scope::Scopes;
use crate::limits::calendar::now_ms;
use crate::store::{ApiKeyRecord, KeySecret, Store, StoreError};
use base64::Engine;
use rand::RngCore;
use std::sync::Arc;
use std::time::Duration;

/// Every secret starts with this, so the authenticator can tell keys from
/// JWTs and leaked keys are easy to find with a scanner.
pub const SECRET_PREFIX: &str = "tg_";

/// Longest grace period a rotation may give the old secret (30 days).
pub const MAX_GRACE_PERIOD_S: u64 = 30 * 24 * 3600;

/// A fresh secret: 256 random bits from the OS-seeded CSPRNG.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A new key as the API describes it.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub scopes: Scopes,
    pub org_id: Option<Arc<str>>,
    pub user_id: Option<Arc<str>>,
    pub created_by: Option<String>,
}

/// Key management: the store is written first, then memory.
#[derive(Clone)]
pub struct ApiKeys {
    store: Store,
    ring: Arc<KeyRing>,
}

impl ApiKeys {
    /// Loads every live key into a new ring.
    pub async fn load(store: Store) -> Result<ApiKeys, StoreError> {
        let ring = Arc::new(KeyRing::default());
        let mut keys = Vec::new();
        for (record, secrets) in store.load_api_keys(now_ms()).await? {
            keys.push(ring_entry(&record, secrets)?);
        }
        ring.replace_all(keys);
        Ok(ApiKeys { store, ring })
    }

    pub fn ring(&self) -> &Arc<KeyRing> {
        &self.ring
    }

    /// Creates a key; returns its record and its secret (shown once).
    /// `None` (nothing created) if the key is bound to a user who is not,
    /// or no longer, a member of its organisation.
    pub async fn create(&self, new: NewKey) -> Result<Option<(ApiKeyRecord, String)>, StoreError> {
        let secret = generate_secret();
        let record = ApiKeyRecord {
            id: format!("key_{}", uuid::Uuid::new_v4().simple()),
            name: new.name,
            scopes: new.scopes.names(),
            org_id: new.org_id.as_deref().map(str::to_string),
            user_id: new.user_id.as_deref().map(str::to_string),
            created_by: new.created_by,
            created_at_ms: now_ms(),
            revoked_at_ms: None,
            last_used_at_ms: None,
        };
        let hash = SecretHash::of(&secret);
        if !self.store.create_api_key(&record, &hash.to_hex()).await? {
            return Ok(None);
        }
        self.ring.insert(Arc::new(grant_of(&record)?), hash, None);
        Ok(Some((record, secret)))
    }

    /// A new secret for the key; the old ones stay valid for `grace`.
    /// `None` if there is no such live key.
    pub async fn rotate(&self, id: &str, grace: Duration) -> Result<Option<(String, i64)>, StoreError> {
        let secret = generate_secret();
        let hash = SecretHash::of(&secret);
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let old_expires_at_ms = now_ms().saturating_add(grace_ms);
        if !self.store.rotate_api_key(id, &hash.to_hex(), old_expires_at_ms).await? {
            return Ok(None);
        }
        self.ring.rotate(id, hash, old_expires_at_ms);
        Ok(Some((secret, old_expires_at_ms)))
    }

    /// Revokes the key at once. `false` if there was no such live key.
    pub async fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let found = self.store.revoke_api_key(id, now_ms()).await?;
        // Forget it in memory even if the store had already revoked it
        // (another node, say): a revoked key must stop working here too.
        self.ring.revoke(id);
        Ok(found)
    }

    /// Re-reads one key from the store (another node changed it).
    pub async fn reload(&self, id: &str) -> Result<(), StoreError> {
        let mut found = None;
        for (record, secrets) in self.store.load_api_keys(now_ms()).await? {
            if record.id == id {
                found = Some(ring_entry(&record, secrets)?);
            }
        }
        self.ring.replace_key(id, found);
        Ok(())
    }

    /// Re-reads every key from the store (a periodic reconciliation in a
    /// cluster, for changes this node missed). Pending last-use marks are
    /// written first.
    pub async fn reload_all(&self) -> Result<usize, StoreError> {
        self.write_last_used().await?;
        let mut keys = Vec::new();
        for (record, secrets) in self.store.load_api_keys(now_ms()).await? {
            keys.push(ring_entry(&record, secrets)?);
        }
        let n = keys.len();
        self.ring.replace_all(keys);
        Ok(n)
    }

    /// The key's record, with this node's knowledge of its last use.
    pub async fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let Some(mut record) = self.store.get_api_key(id).await? else {
            return Ok(None);
        };
        if let Some(grant) = self.ring.get(id) {
            let seen = grant.last_used_ms();
            if seen > 0 && record.last_used_at_ms.is_none_or(|at| at < seen) {
                record.last_used_at_ms = Some(seen);
            }
        }
        Ok(Some(record))
    }

    /// Writes keys' last use in one batch and drops expired secrets.
    pub async fn write_last_used(&self) -> Result<usize, StoreError> {
        self.ring.purge_expired(now_ms());
        let used = self.ring.take_last_used();
        if used.is_empty() {
            return Ok(0);
        }
        match self.store.touch_api_keys(&used).await {
            Ok(()) => Ok(used.len()),
            Err(e) => {
                self.ring.unmark(&used);
                Err(e)
            }
        }
    }

    /// Runs [`Self::write_last_used`] every `every` until aborted.
    pub fn spawn_last_used_writer(self, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.write_last_used().await {
                    tracing::warn!(error = %e, "could not write API keys' last use; will retry");
                }
            }
        })
    }
}

/// A stored key and its live secrets, as the ring holds them.
fn ring_entry(record: &ApiKeyRecord, secrets: Vec<KeySecret>) -> Result<KeyEntry, StoreError> {
    let grant = Arc::new(grant_of(record)?);
    let secrets = secrets
        .into_iter()
        .map(|secret| {
            SecretHash::from_hex(&secret.secret_hash)
                .map(|hash| (hash, secret.expires_at_ms))
                .ok_or_else(|| StoreError::Corrupt {
                    column: "api_key_secrets.secret_hash",
                    value: secret.secret_hash.clone(),
                })
        })
        .collect::<Result<_, _>>()?;
    Ok((grant, secrets))
}

fn grant_of(record: &ApiKeyRecord) -> Result<KeyGrant, StoreError> {
    let scopes = Scopes::parse(record.scopes.iter().map(String::as_str)).map_err(|e| StoreError::Corrupt {
        column: "api_keys.scopes",
        value: e.0,
    })?;
    Ok(KeyGrant::new(
        &record.id,
        scopes,
        record.org_id.as_deref(),
        record.user_id.as_deref(),
        record.last_used_at_ms,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_long_and_distinct() {
        let a = generate_secret();
        let b = generate_secret();
        assert!(a.starts_with(SECRET_PREFIX));
        // 32 bytes in unpadded base64 are 43 characters.
        assert_eq!(a.len(), SECRET_PREFIX.len() + 43);
        assert!(
            a[3..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
    }
}
