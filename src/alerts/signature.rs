//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>).
//!
//! A receiver checks `webhook-signature` against
//! `base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}"))`,
//! where the key is the base64 *decoding* of the secret after its `whsec_`
//! prefix, exactly as the Standard Webhooks libraries (and Svix) do, so a
//! receiver can verify with any of them instead of our own code.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// The prefix every signing secret carries.
pub const SECRET_PREFIX: &str = "whsec_";

/// Random bytes in a new secret: 256 bits, like an HMAC-SHA256 key should be.
const SECRET_BYTES: usize = 32;

/// A secret that is not `whsec_` + base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook signing secret is whsec_ followed by base64")]
pub struct BadSecret;

/// A fresh signing secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The HMAC key of a secret (the decoded bytes after `whsec_`).
fn key(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or(BadSecret)?;
    STANDARD.decode(encoded).map_err(|_| BadSecret)
}

/// The three headers of one signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `webhook-id`: the delivery's id, the same on every retry so receivers
    /// can deduplicate.
    pub id: String,
    /// `webhook-timestamp`: Unix seconds when this attempt was signed.
    pub timestamp: String,
    /// `webhook-signature`: `v1,` + base64 HMAC.
    pub signature: String,
}

/// Signs `body` for delivery `id` at `unix_seconds`.
pub fn sign(secret: &str, id: &str, unix_seconds: i64, body: &[u8]) -> Result<SignedHeaders, BadSecret> {
    let timestamp = unix_seconds.to_string();
    let signature = format!("v1,{}", STANDARD.encode(mac(&key(secret)?, id, &timestamp, body)));
    Ok(SignedHeaders {
        id: id.to_string(),
        timestamp,
        signature,
    })
}

/// Does `header` (a space-separated list of `v1,<base64>` signatures, as a
/// receiver gets it) hold a valid signature of `body`? Compared in constant
/// time. What a receiver does; here for tests and the README's example.
pub fn verify(secret: &str, id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Ok(key) = key(secret) else {
        return false;
    };
    header.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|sig| {
        STANDARD.decode(sig).is_ok_and(|bytes| {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes keys of any length");
            m.update(&signed_content(id, timestamp, body));
            m.verify_slice(&bytes).is_ok()
        })
    })
}

fn signed_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

fn mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    m.update(&signed_content(id, timestamp, body));
    m.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the Standard Webhooks specification (and Svix's docs).
    #[test]
    fn matches_the_standard_webhooks_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signed = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(signed.signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(signed.timestamp, "1614265330");
        assert!(verify(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            body,
            &signed.signature
        ));
    }

    #[test]
    fn a_changed_body_id_or_timestamp_does_not_verify() {
        let secret = new_secret();
        let s = sign(&secret, "d1", 100, b"{}").unwrap();
        assert!(verify(&secret, "d1", "100", b"{}", &s.signature));
        assert!(!verify(&secret, "d1", "100", b"{ }", &s.signature));
        assert!(!verify(&secret, "d2", "100", b"{}", &s.signature));
        assert!(!verify(&secret, "d1", "101", b"{}", &s.signature));
        assert!(!verify(&new_secret(), "d1", "100", b"{}", &s.signature));
        // A list with one good signature among others verifies.
        assert!(verify(&secret, "d1", "100", b"{}", &format!("v1,AAAA {}", s.signature)));
    }

    #[test]
    fn new_secrets_are_32_random_bytes() {
        let a = new_secret();
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(key(&a).unwrap().len(), SECRET_BYTES);
        assert_ne!(a, new_secret());
        assert_eq!(sign("no-prefix", "x", 1, b""), Err(BadSecret));
    }
}
