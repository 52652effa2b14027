//! The admin token: a bearer secret for operators (and, for now, the
//! service credential a chat backend uses).
//!
//! Only its SHA-256 is kept. If none is configured and none is stored, one
//! is generated at first start, printed once to stderr, and its hash stored.

use crate::store::{Store, StoreResult};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};
use subtle::ConstantTimeEq;

const SETTING: &str = "admin_token_sha256";

/// A verifier for the admin token.
#[derive(Debug, Clone)]
pub struct AdminToken {
    sha256: [u8; 32],
    /// The secret once a request has proven it (or as configured): later
    /// requests are compared to it directly, in constant time, instead of
    /// hashing every request.
    known: Arc<OnceLock<Box<[u8]>>>,
}

impl AdminToken {
    pub fn from_secret(secret: &str) -> Self {
        let known = OnceLock::new();
        let _ = known.set(secret.as_bytes().into());
        AdminToken {
            sha256: Sha256::digest(secret.as_bytes()).into(),
            known: Arc::new(known),
        }
    }

    fn from_hex(hex: &str) -> Option<Self> {
        let bytes = hex_decode(hex)?;
        Some(AdminToken {
            sha256: bytes.try_into().ok()?,
            known: Arc::new(OnceLock::new()),
        })
    }

    /// Constant-time check of a presented secret.
    pub fn verify(&self, presented: &str) -> bool {
        if let Some(known) = self.known.get() {
            // `ct_eq` on slices of different lengths is false without
            // looking at contents; the length of the secret is not secret.
            return bool::from(presented.as_bytes().ct_eq(known));
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let ok: bool = digest.ct_eq(&self.sha256).into();
        if ok {
            let _ = self.known.set(presented.as_bytes().into());
        }
        ok
    }
}

/// Where the admin token came from.
#[derive(Debug)]
pub enum AdminTokenSource {
    /// `--admin-token` / `TOLLGATE_ADMIN_TOKEN`.
    Configured,
    /// The hash stored by an earlier start.
    Stored,
    /// Generated now; the secret must be shown to the operator once.
    Generated(String),
}

/// Resolves the admin token at start-up (see the module docs).
pub async fn resolve(store: &Store, configured: Option<&str>) -> StoreResult<(AdminToken, AdminTokenSource)> {
    if let Some(secret) = configured {
        return Ok((AdminToken::from_secret(secret), AdminTokenSource::Configured));
    }
    if let Some(token) = stored(store).await? {
        return Ok((token, AdminTokenSource::Stored));
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("tga_{}", URL_SAFE_NO_PAD.encode(bytes));
    let token = AdminToken::from_secret(&secret);
    if store.put_setting_if_absent(SETTING, &hex_encode(&token.sha256)).await? {
        return Ok((token, AdminTokenSource::Generated(secret)));
    }
    // Another node stored one first; use it.
    match stored(store).await? {
        Some(token) => Ok((token, AdminTokenSource::Stored)),
        None => Ok((token, AdminTokenSource::Generated(secret))),
    }
}

async fn stored(store: &Store) -> StoreResult<Option<AdminToken>> {
    Ok(store
        .get_setting(SETTING)
        .await?
        .as_deref()
        .and_then(AdminToken::from_hex))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_secret() {
        let t = AdminToken::from_secret("s3cret");
        assert!(t.verify("s3cret"));
        assert!(!t.verify("s3cret "));
        let again = AdminToken::from_hex(&hex_encode(&t.sha256)).unwrap();
        assert!(!again.verify("guess"));
        assert!(again.verify("s3cret"));
        // Once proven, the secret is compared directly; still exact.
        assert!(again.verify("s3cret"));
        assert!(!again.verify("s3cre"));
        assert!(!again.verify("s3cret!"));
    }
}
