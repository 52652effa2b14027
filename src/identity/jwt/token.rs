//! The outside of a token: its shape and its header, read before any key
//! is chosen.
//!
//! The header is parsed here rather than by `jsonwebtoken` so that an
//! algorithm the library has no name for (`none`) is reported as the wrong
//! algorithm instead of a parse error, and so that the `kid` is known before
//! a key lookup (which may fetch).

use super::JwtError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// Longest token considered at all. Auth0 access tokens are ~1 KiB; this
/// bounds the work an attacker can make us do before any signature check.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Whether `token` has the shape of a compact JWS: three base64url segments
/// separated by dots.
///
/// Cheap and synchronous, for routing a bearer token to the JWT verifier or
/// elsewhere (API keys start with `tg_` and have no dots). The signature
/// segment may be empty so that unsigned (`alg: none`) tokens are routed
/// here and refused as JWTs rather than as unknown API keys.
pub fn looks_like_jwt(token: &str) -> bool {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return false;
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    !header.is_empty() && !payload.is_empty() && [header, payload, signature].iter().all(|s| is_base64url(s))
}

fn is_base64url(segment: &str) -> bool {
    segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The header fields this service looks at. Others are ignored (the library
/// parses the header again, strictly, during verification).
#[derive(Debug, Deserialize)]
pub struct PeekedHeader {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
}

/// Reads the header of a token that [`looks_like_jwt`], without verifying.
pub fn peek_header(token: &str) -> Result<PeekedHeader, JwtError> {
    if !looks_like_jwt(token) {
        return Err(JwtError::Malformed);
    }
    let encoded = token.split('.').next().ok_or(JwtError::Malformed)?;
    let json = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| JwtError::Malformed)?;
    serde_json::from_slice(&json).map_err(|_| JwtError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(looks_like_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."));
        assert!(!looks_like_jwt("tg_live_abcdef"));
        assert!(!looks_like_jwt(""));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt(".b.c"));
        assert!(!looks_like_jwt("a..c"));
        assert!(!looks_like_jwt("a.b.c="));
        assert!(!looks_like_jwt("a+b.c.d"));
        assert!(!looks_like_jwt(&"a.b.".repeat(MAX_TOKEN_LEN)));
    }

    #[test]
    fn peeks_at_alg_and_kid() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1","typ":"JWT"}"#);
        let peeked = peek_header(&format!("{header}.e30.")).expect("header");
        assert_eq!(peeked.alg, "none");
        assert_eq!(peeked.kid.as_deref(), Some("k1"));
        assert_eq!(peek_header("e30.e30.e30").map(|_| ()), Err(JwtError::Malformed));
        assert_eq!(peek_header("bm90IGpzb24.e30.").map(|_| ()), Err(JwtError::Malformed));
    }
}
