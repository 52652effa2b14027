//! The admin token: a bearer secret for operators (and, for now, the
//! service credential a chat backend uses).
//!
//! Only its SHA-256 is kept. A configured token must be at least
//! [`MIN_ADMIN_TOKEN_LEN`] characters. If none is configured and none is
//! stored, one is generated at first start and written to a file only its
//! owner can read (`--admin-token-file`); then its hash is stored. It is
//! never printed: terminals, log collectors and CI keep stderr.

use crate::store::{Store, StoreError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use subtle::ConstantTimeEq;

const SETTING: &str = "admin_token_sha256";

/// The admin token is everything, everywhere: 32 characters is the least
/// that is not guessable from a short list (a generated one has 43).
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error(
        "the configured admin token (--admin-token / TOLLGATE_ADMIN_TOKEN) has {0} characters; it must have at least {MIN_ADMIN_TOKEN_LEN} (generate one with `openssl rand -base64 32`)"
    )]
    TooShort(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not write the generated admin token to {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
}

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
#[derive(Debug, PartialEq, Eq)]
pub enum AdminTokenSource {
    /// `--admin-token` / `TOLLGATE_ADMIN_TOKEN`.
    Configured,
    /// The hash stored by an earlier start.
    Stored,
    /// Generated now and written to this file (mode 0600).
    Generated(PathBuf),
}

/// Resolves the admin token at start-up (see the module docs). `file` is
/// where a generated token goes.
pub async fn resolve(
    store: &Store,
    configured: Option<&str>,
    file: &Path,
) -> Result<(AdminToken, AdminTokenSource), AdminTokenError> {
    if let Some(secret) = configured {
        let length = secret.chars().count();
        if length < MIN_ADMIN_TOKEN_LEN {
            return Err(AdminTokenError::TooShort(length));
        }
        return Ok((AdminToken::from_secret(secret), AdminTokenSource::Configured));
    }
    if let Some(token) = stored(store).await? {
        return Ok((token, AdminTokenSource::Stored));
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("tga_{}", URL_SAFE_NO_PAD.encode(bytes));
    let token = AdminToken::from_secret(&secret);
    // The file first: a hash stored for a secret nobody can read would
    // lock the operator out for good.
    write_secret(file, &secret).map_err(|source| AdminTokenError::File {
        path: file.to_path_buf(),
        source,
    })?;
    if store.put_setting_if_absent(SETTING, &hex_encode(&token.sha256)).await? {
        return Ok((token, AdminTokenSource::Generated(file.to_path_buf())));
    }
    // Another node stored one first; use it, and do not leave a secret
    // that opens nothing.
    let _ = std::fs::remove_file(file);
    match stored(store).await? {
        Some(token) => Ok((token, AdminTokenSource::Stored)),
        None => Err(AdminTokenError::Store(StoreError::Corrupt {
            column: SETTING,
            value: "stored by another node but unreadable".into(),
        })),
    }
}

/// Writes `secret` to a new file readable by its owner only. An old file
/// is replaced, never reused: its mode could be wider.
fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

async fn stored(store: &Store) -> Result<Option<AdminToken>, StoreError> {
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
    #[cfg(unix)]
    fn the_secret_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "old").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_secret(&path, "tga_new").expect("write secret");
        let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "tga_new\n");
    }

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
