//! Fetching the issuer's key set (JWKS) and keeping the keys we may use.
//!
//! A key set can hold keys for other purposes (encryption, other
//! algorithms, other key types); those are skipped one by one rather than
//! failing the whole set, so an issuer adding an EC key does not break us.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Verification keys by `kid`.
pub type KeySet = HashMap<String, Arc<DecodingKey>>;

/// A key set larger than this is refused: real ones are a few KiB, and the
/// body is held in memory while parsed.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// RSA moduli shorter than this are not trusted (RFC 7518 §3.3).
pub const MIN_RSA_MODULUS_BYTES: usize = 2048 / 8;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("the key set is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    #[error("the key set is not a JWKS document: {0}")]
    NotJwks(#[from] serde_json::Error),
    #[error("the key set has no RS256 signing key")]
    NoUsableKeys,
}

/// GETs and parses the key set at `url`. Redirects are not followed (the
/// client is built that way): the key URL is configuration, and a redirect
/// could lead off https.
pub async fn fetch_key_set(client: &reqwest::Client, url: &Url) -> Result<KeySet, FetchError> {
    let mut response = client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status().as_u16()));
    }
    if response.content_length().is_some_and(|len| len > MAX_JWKS_BYTES as u64) {
        return Err(FetchError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    parse_key_set(&body)
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<Value>,
}

/// The members of a JWK that decide whether we use it.
#[derive(Deserialize)]
struct RsaJwk {
    kty: String,
    #[serde(rename = "use", default)]
    usage: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

/// The RS256 signing keys of a JWKS document. An empty result is an error:
/// installing it would throw away keys that still work.
pub fn parse_key_set(body: &[u8]) -> Result<KeySet, FetchError> {
    let document: Document = serde_json::from_slice(body)?;
    let mut keys = KeySet::new();
    for jwk in document.keys {
        match usable_key(jwk) {
            Some((kid, key)) => {
                // Two keys with one kid: keep the first, as the token cannot
                // say which it means.
                keys.entry(kid).or_insert_with(|| Arc::new(key));
            }
            None => tracing::debug!("skipping a JWKS key that is not an RS256 signing key"),
        }
    }
    if keys.is_empty() {
        return Err(FetchError::NoUsableKeys);
    }
    Ok(keys)
}

fn usable_key(jwk: Value) -> Option<(String, DecodingKey)> {
    let jwk: RsaJwk = serde_json::from_value(jwk).ok()?;
    let signing = jwk.usage.as_deref().is_none_or(|u| u == "sig");
    let rs256 = jwk.alg.as_deref().is_none_or(|a| a == "RS256");
    if jwk.kty != "RSA" || !signing || !rs256 {
        return None;
    }
    let kid = jwk.kid.filter(|k| !k.is_empty())?;
    let n = decode_uint(jwk.n.as_deref()?)?;
    let e = decode_uint(jwk.e.as_deref()?)?;
    if n.len() < MIN_RSA_MODULUS_BYTES || e.is_empty() {
        return None;
    }
    Some((kid, DecodingKey::from_rsa_raw_components(&n, &e)))
}

/// A base64url big-endian unsigned integer, without leading zero bytes
/// (tolerating padding, which some issuers emit).
fn decode_uint(text: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()?;
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    Some(bytes[first..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn modulus(bytes: usize) -> String {
        let mut n = vec![0xC5; bytes];
        n.insert(0, 0);
        URL_SAFE_NO_PAD.encode(n)
    }

    #[test]
    fn keeps_only_rs256_signing_keys() {
        let n = modulus(256);
        let document = json!({"keys": [
            {"kty": "RSA", "kid": "a", "n": n, "e": "AQAB", "use": "sig", "alg": "RS256"},
            {"kty": "RSA", "kid": "b", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "n": n, "e": "AQAB", "use": "enc"},
            {"kty": "RSA", "kid": "ps", "n": n, "e": "AQAB", "alg": "PS256"},
            {"kty": "RSA", "kid": "short", "n": modulus(128), "e": "AQAB"},
            {"kty": "RSA", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "no-e", "n": n},
            {"kty": "RSA", "kid": "bad-n", "n": "!!", "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": 5},
            "not an object",
        ]});
        let keys = parse_key_set(document.to_string().as_bytes()).expect("key set");
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["a", "b"]);
    }

    #[test]
    fn a_set_without_usable_keys_is_an_error() {
        let only_ec = json!({"keys": [{"kty": "EC", "kid": "ec"}]}).to_string();
        assert!(matches!(
            parse_key_set(only_ec.as_bytes()),
            Err(FetchError::NoUsableKeys)
        ));
        assert!(matches!(parse_key_set(b"{}"), Err(FetchError::NotJwks(_))));
        assert!(matches!(parse_key_set(b"<html>"), Err(FetchError::NotJwks(_))));
    }
}
