//! Identity: who is calling, decided once per request from its headers.
//!
//! A bearer token must be valid (a wrong one is a 401, never a silent
//! downgrade to guest); no credential at all makes the caller a guest.
//! Three kinds of token are told apart by their shape: API keys start with
//! `tg_`, JWTs are three dot-separated base64url parts, and anything else
//! is compared with the admin token.

pub mod access;
pub mod admin_token;
pub mod alert_access;
pub mod api_keys;
pub mod directory;
pub mod guest;
pub mod jwt;
pub mod key_ring;
pub mod principal;
pub mod scope;

pub use access::{Access, Admission, BudgetAuthority, Denied, KeyAction};
pub use admin_token::AdminToken;
pub use directory::Directory;
pub use guest::Guest;
pub use key_ring::KeyRing;
pub use principal::Principal;

use crate::limits::calendar::now_ms;
use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the Authorization header must be `Bearer <token>`")]
    MalformedAuthorization,
    #[error("the token is not valid")]
    InvalidToken,
    #[error("the API key is not valid (unknown, revoked, or past its rotation grace period)")]
    InvalidApiKey,
    #[error("the token's issuer cannot be reached to check its signing keys")]
    KeysUnavailable,
    #[error(transparent)]
    Guest(#[from] guest::GuestError),
}

/// Authenticates requests.
#[derive(Clone)]
pub struct Authenticator {
    pub admin: AdminToken,
    pub keys: Arc<KeyRing>,
    pub jwt: Option<jwt::JwtVerifier>,
    pub trusted_proxies: Vec<IpNet>,
    /// IPv6 guests are keyed by this prefix of their address.
    pub guest_ipv6_prefix: u8,
}

impl Authenticator {
    pub async fn authenticate(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<Principal, AuthError> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(Principal::Guest(guest::from_request(
                headers,
                peer,
                &self.trusted_proxies,
                self.guest_ipv6_prefix,
            )?));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| failed(peer, "token", "malformed", AuthError::MalformedAuthorization))?;

        if token.starts_with(api_keys::SECRET_PREFIX) {
            return match self.keys.lookup(token, now_ms()) {
                Some(grant) if grant.scopes.contains(scope::Scope::Admin) => Ok(Principal::Admin),
                Some(grant) => Ok(Principal::Key(grant)),
                None => Err(failed(peer, "api_key", "unknown_key", AuthError::InvalidApiKey)),
            };
        }
        if self.admin.verify(token) {
            return Ok(Principal::Admin);
        }
        if let Some(verifier) = &self.jwt
            && jwt::looks_like_jwt(token)
        {
            return match verifier.verify(token).await {
                Ok(verified) if verified.admin => Ok(Principal::Admin),
                Ok(verified) if verified.service => Ok(Principal::Key(Arc::new(service_grant(&verified.subject)))),
                Ok(verified) => Ok(Principal::User {
                    user_id: Arc::from(verified.subject.as_str()),
                }),
                Err(jwt::JwtError::KeysUnavailable) => {
                    Err(failed(peer, "jwt", "keys_unavailable", AuthError::KeysUnavailable))
                }
                Err(e) => Err(failed(peer, "jwt", e.reason(), AuthError::InvalidToken)),
            };
        }
        Err(failed(peer, "token", "unrecognised", AuthError::InvalidToken))
    }
}

/// A service JWT acts like a `service` key of no organisation: it may name
/// any subject, and is not itself a user (so [`Principal::service_reach`]
/// stays the one test of "is this a service credential"). The id names the
/// token's subject for `created_by` columns and logs.
fn service_grant(subject: &str) -> key_ring::KeyGrant {
    let scopes: scope::Scopes = [scope::Scope::Service].into_iter().collect();
    key_ring::KeyGrant::new(&format!("jwt:{subject}"), scopes, None, None, None)
}

/// Counts and logs a failed authentication (never the token itself):
/// `credential` is what the token looked like (`api_key`, `jwt`, or
/// `token` when it matched nothing), `reason` why it was refused — both
/// from closed sets.
fn failed(peer: SocketAddr, credential: &'static str, reason: &'static str, error: AuthError) -> AuthError {
    metrics::counter!("tollgate_auth_failures_total", "credential" => credential, "reason" => reason).increment(1);
    tracing::info!(%peer, credential, reason, "authentication failed");
    error
}

/// Counts a request refused for carrying no credential where one is
/// needed (`tollgate_auth_failures_total{credential="none", reason="missing"}`).
pub fn count_missing_credential() {
    metrics::counter!("tollgate_auth_failures_total", "credential" => "none", "reason" => "missing").increment(1);
}
