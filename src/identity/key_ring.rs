//! API keys in memory: the hot path finds a key by its secret's hash
//! without touching the database.
//!
//! The ring holds every live secret (a rotated key has two until the old
//! one's grace period ends). It is filled from the store at start-up and
//! changed only after the store has accepted a change, so memory never
//! knows a key the database does not.

use super::scope::Scopes;
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// SHA-256 of a secret. Secrets carry 256 random bits, so a fast hash is
/// enough: there is nothing to brute-force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// Lowercase hex, as stored.
    pub fn to_hex(self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(SecretHash(bytes))
    }
}

/// What a key may do, shared by every request that presents it.
#[derive(Debug)]
pub struct KeyGrant {
    pub id: Arc<str>,
    pub scopes: Scopes,
    pub org_id: Option<Arc<str>>,
    pub user_id: Option<Arc<str>>,
    /// Last use seen by this node (Unix ms), and the last one written to
    /// the store: `last_used_at` is written in batches, never per request.
    last_used_ms: AtomicI64,
    persisted_ms: AtomicI64,
}

/// How often (ms) a key's last use is refreshed in memory: coarse enough
/// that busy keys do not bounce a cache line on every request.
const TOUCH_GRANULARITY_MS: i64 = 1_000;

impl KeyGrant {
    pub fn new(
        id: &str,
        scopes: Scopes,
        org_id: Option<&str>,
        user_id: Option<&str>,
        last_used_ms: Option<i64>,
    ) -> Self {
        let last = last_used_ms.unwrap_or(0);
        KeyGrant {
            id: Arc::from(id),
            scopes,
            org_id: org_id.map(Arc::from),
            user_id: user_id.map(Arc::from),
            last_used_ms: AtomicI64::new(last),
            persisted_ms: AtomicI64::new(last),
        }
    }

    fn touch(&self, now_ms: i64) {
        if now_ms - self.last_used_ms.load(Ordering::Relaxed) >= TOUCH_GRANULARITY_MS {
            self.last_used_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// Last use known to this node (Unix ms; 0 = never).
    pub fn last_used_ms(&self) -> i64 {
        self.last_used_ms.load(Ordering::Relaxed)
    }
}

/// A key with each of its live secrets and when that secret expires.
pub type KeyEntry = (Arc<KeyGrant>, Vec<(SecretHash, Option<i64>)>);

#[derive(Debug)]
struct Slot {
    grant: Arc<KeyGrant>,
    /// `None`: valid until rotated or revoked.
    expires_at_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct Inner {
    by_hash: HashMap<SecretHash, Slot, foldhash::fast::RandomState>,
    by_id: HashMap<Arc<str>, Arc<KeyGrant>, foldhash::fast::RandomState>,
}

/// Every live key, by secret hash and by id.
#[derive(Debug, Default)]
pub struct KeyRing {
    inner: RwLock<Inner>,
}

impl KeyRing {
    /// The key a presented secret belongs to, if it is live at `now_ms`.
    pub fn lookup(&self, secret: &str, now_ms: i64) -> Option<Arc<KeyGrant>> {
        let hash = SecretHash::of(secret);
        let inner = self.inner.read();
        let slot = inner.by_hash.get(&hash)?;
        if slot.expires_at_ms.is_some_and(|at| at <= now_ms) {
            return None;
        }
        slot.grant.touch(now_ms);
        Some(slot.grant.clone())
    }

    /// The key with this id, if live.
    pub fn get(&self, id: &str) -> Option<Arc<KeyGrant>> {
        self.inner.read().by_id.get(id).cloned()
    }

    /// Adds a key with one of its secrets (call once per secret).
    pub fn insert(&self, grant: Arc<KeyGrant>, secret: SecretHash, expires_at_ms: Option<i64>) {
        let mut inner = self.inner.write();
        let grant = inner.by_id.entry(grant.id.clone()).or_insert(grant).clone();
        inner.by_hash.insert(secret, Slot { grant, expires_at_ms });
    }

    /// A new secret for `id`; its current secrets expire at
    /// `old_expires_at_ms` (or earlier, if they already would).
    pub fn rotate(&self, id: &str, secret: SecretHash, old_expires_at_ms: i64) -> bool {
        let mut inner = self.inner.write();
        let Some(grant) = inner.by_id.get(id).cloned() else {
            return false;
        };
        for slot in inner.by_hash.values_mut().filter(|s| *s.grant.id == *id) {
            slot.expires_at_ms = Some(
                slot.expires_at_ms
                    .map_or(old_expires_at_ms, |at| at.min(old_expires_at_ms)),
            );
        }
        inner.by_hash.insert(
            secret,
            Slot {
                grant,
                expires_at_ms: None,
            },
        );
        true
    }

    /// Replaces one key's secrets (`None`: the key is gone) in one step, so
    /// no request sees the key missing while it is reloaded.
    pub fn replace_key(&self, id: &str, key: Option<KeyEntry>) {
        let mut inner = self.inner.write();
        inner.by_id.remove(id);
        inner.by_hash.retain(|_, slot| *slot.grant.id != *id);
        if let Some((grant, secrets)) = key {
            inner.by_id.insert(grant.id.clone(), grant.clone());
            for (hash, expires_at_ms) in secrets {
                inner.by_hash.insert(
                    hash,
                    Slot {
                        grant: grant.clone(),
                        expires_at_ms,
                    },
                );
            }
        }
    }

    /// Replaces every key at once (a reconciliation with the store).
    pub fn replace_all(&self, keys: Vec<KeyEntry>) {
        let mut fresh = Inner::default();
        for (grant, secrets) in keys {
            fresh.by_id.insert(grant.id.clone(), grant.clone());
            for (hash, expires_at_ms) in secrets {
                fresh.by_hash.insert(
                    hash,
                    Slot {
                        grant: grant.clone(),
                        expires_at_ms,
                    },
                );
            }
        }
        *self.inner.write() = fresh;
    }

    /// Forgets a key and all its secrets at once.
    pub fn revoke(&self, id: &str) -> bool {
        let mut inner = self.inner.write();
        let found = inner.by_id.remove(id).is_some();
        inner.by_hash.retain(|_, slot| *slot.grant.id != *id);
        found
    }

    /// Drops secrets whose grace period has ended.
    pub fn purge_expired(&self, now_ms: i64) {
        let mut inner = self.inner.write();
        inner
            .by_hash
            .retain(|_, slot| slot.expires_at_ms.is_none_or(|at| at > now_ms));
    }

    /// Keys used since their last use was last written, with that use;
    /// marks them written. (If the write fails, call [`Self::unmark`].)
    pub fn take_last_used(&self) -> Vec<(String, i64)> {
        let inner = self.inner.read();
        inner
            .by_id
            .values()
            .filter_map(|grant| {
                let used = grant.last_used_ms.load(Ordering::Relaxed);
                let persisted = grant.persisted_ms.swap(used, Ordering::Relaxed);
                (used > persisted).then(|| (grant.id.to_string(), used))
            })
            .collect()
    }

    /// Undoes [`Self::take_last_used`] for keys whose write failed, so the
    /// next round retries them.
    pub fn unmark(&self, failed: &[(String, i64)]) {
        let inner = self.inner.read();
        for (id, _) in failed {
            if let Some(grant) = inner.by_id.get(id.as_str()) {
                grant.persisted_ms.store(0, Ordering::Relaxed);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.read().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::scope::Scope;

    fn grant(id: &str) -> Arc<KeyGrant> {
        Arc::new(KeyGrant::new(
            id,
            [Scope::Service].into_iter().collect(),
            None,
            None,
            None,
        ))
    }

    #[test]
    fn hash_hex_round_trips() {
        let h = SecretHash::of("tg_abc");
        assert_eq!(SecretHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(SecretHash::from_hex("zz"), None);
    }

    #[test]
    fn rotation_keeps_the_old_secret_until_its_grace_ends() {
        let ring = KeyRing::default();
        ring.insert(grant("k1"), SecretHash::of("old"), None);
        assert!(ring.rotate("k1", SecretHash::of("new"), 1_000));
        assert!(ring.lookup("old", 999).is_some());
        assert!(ring.lookup("old", 1_000).is_none());
        assert!(ring.lookup("new", 5_000).is_some());
        // A second rotation never extends the first one's grace.
        assert!(ring.rotate("k1", SecretHash::of("newer"), 9_000));
        assert!(ring.lookup("old", 1_500).is_none());
        assert!(ring.lookup("new", 8_000).is_some());
        ring.purge_expired(10_000);
        assert!(ring.lookup("new", 8_000).is_none());
        assert!(ring.lookup("newer", 10_000).is_some());
    }

    #[test]
    fn replacing_a_key_swaps_its_secrets_in_one_step() {
        let ring = KeyRing::default();
        ring.insert(grant("k1"), SecretHash::of("a"), None);
        ring.replace_key("k1", Some((grant("k1"), vec![(SecretHash::of("b"), None)])));
        assert!(ring.lookup("a", 0).is_none());
        assert!(ring.lookup("b", 0).is_some());
        ring.replace_all(vec![(grant("k2"), vec![(SecretHash::of("c"), Some(10))])]);
        assert!(ring.lookup("b", 0).is_none());
        assert!(ring.lookup("c", 5).is_some());
        ring.replace_key("k2", None);
        assert!(ring.is_empty());
    }

    #[test]
    fn revocation_is_immediate() {
        let ring = KeyRing::default();
        ring.insert(grant("k1"), SecretHash::of("a"), None);
        ring.insert(grant("k2"), SecretHash::of("b"), None);
        assert!(ring.revoke("k1"));
        assert!(ring.lookup("a", 0).is_none());
        assert!(ring.lookup("b", 0).is_some());
        assert!(!ring.revoke("k1"));
    }

    #[test]
    fn last_use_is_reported_once() {
        let ring = KeyRing::default();
        ring.insert(grant("k1"), SecretHash::of("a"), None);
        assert!(ring.take_last_used().is_empty());
        ring.lookup("a", 5_000);
        assert_eq!(ring.take_last_used(), vec![("k1".to_string(), 5_000)]);
        assert!(ring.take_last_used().is_empty());
    }
}
