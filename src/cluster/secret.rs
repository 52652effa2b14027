//! The cluster secret and the keys derived from it.
//!
//! Operators give one secret (`--cluster-secret`). Each protocol uses its own
//! 32-byte key `HMAC-SHA256(secret, label)`, with labels
//! [`GOSSIP_LABEL`] and [`RPC_LABEL`], so a tag computed for one protocol is
//! never valid in the other one.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::ClusterError;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Label of the gossip datagram key.
pub const GOSSIP_LABEL: &[u8] = b"tollgate-gossip-v1";
/// Label of the RPC handshake key; also the protocol string mixed into the
/// handshake MACs.
pub const RPC_LABEL: &[u8] = b"tollgate-rpc-v1";

/// Shortest secret accepted: 16 bytes, so that a trivially guessable secret
/// ("secret", "changeme") is refused at start instead of quietly "securing"
/// the cluster.
pub const MIN_SECRET_LEN: usize = 16;

/// The shared cluster secret. Cheap to clone; `Debug` never prints it.
#[derive(Clone)]
pub struct ClusterSecret(Arc<[u8]>);

impl ClusterSecret {
    /// Wraps the operator's secret; refuses one shorter than
    /// [`MIN_SECRET_LEN`] bytes.
    pub fn new(secret: impl AsRef<[u8]>) -> Result<ClusterSecret, ClusterError> {
        let bytes = secret.as_ref();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(ClusterError::WeakSecret {
                min: MIN_SECRET_LEN,
                got: bytes.len(),
            });
        }
        Ok(ClusterSecret(Arc::from(bytes)))
    }

    /// `HMAC-SHA256(secret, label)`: the key of one protocol.
    pub fn derive(&self, label: &[u8]) -> DerivedKey {
        let mut mac = new_mac(&self.0);
        mac.update(label);
        DerivedKey(mac.finalize().into_bytes().into())
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

/// A 32-byte key derived from the [`ClusterSecret`] for one protocol.
#[derive(Clone)]
pub struct DerivedKey([u8; 32]);

impl DerivedKey {
    /// A fresh HMAC-SHA256 keyed with this key.
    pub(crate) fn mac(&self) -> HmacSha256 {
        new_mac(&self.0)
    }
}

impl fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DerivedKey(<redacted>)")
    }
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC is defined for keys of any length (long keys are hashed first), so
    // `new_from_slice` cannot fail for HMAC-SHA256; the fallback only exists
    // to avoid an `unwrap` and is never taken.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| <HmacSha256 as Mac>::new(&Default::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secret_is_refused() {
        assert!(matches!(
            ClusterSecret::new("short"),
            Err(ClusterError::WeakSecret { got: 5, .. })
        ));
        assert!(ClusterSecret::new("0123456789abcdef").is_ok());
    }

    #[test]
    fn labels_give_distinct_keys_and_debug_is_redacted() {
        let secret = ClusterSecret::new("0123456789abcdef").unwrap();
        assert_ne!(secret.derive(GOSSIP_LABEL).0, secret.derive(RPC_LABEL).0);
        assert_eq!(secret.derive(RPC_LABEL).0, secret.clone().derive(RPC_LABEL).0);
        assert!(!format!("{secret:?}").contains("0123"));
    }
}
