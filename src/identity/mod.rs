//! Identity: who is calling, decided once per request from its headers.
//!
//! A bearer token must be valid (a wrong one is a 401, never a silent
//! downgrade to guest); no credential at all makes the caller a guest.

pub mod admin_token;
pub mod guest;
pub mod jwt;

pub use admin_token::AdminToken;
pub use guest::Guest;

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::SocketAddr;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The admin token: manages everything, and acts as a service
    /// credential (may name any subject in a check).
    Admin,
    /// No credential.
    Guest(Guest),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the Authorization header must be `Bearer <token>`")]
    MalformedAuthorization,
    #[error("the token is not valid")]
    InvalidToken,
    #[error(transparent)]
    Guest(#[from] guest::GuestError),
}

/// Authenticates requests.
#[derive(Debug, Clone)]
pub struct Authenticator {
    pub admin: AdminToken,
    pub trusted_proxies: Vec<IpNet>,
}

impl Authenticator {
    pub fn authenticate(&self, headers: &HeaderMap, peer: SocketAddr) -> Result<Principal, AuthError> {
        match headers.get(axum::http::header::AUTHORIZATION) {
            None => Ok(Principal::Guest(guest::from_request(
                headers,
                peer,
                &self.trusted_proxies,
            )?)),
            Some(value) => {
                let token = value
                    .to_str()
                    .ok()
                    .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .ok_or(AuthError::MalformedAuthorization)?;
                if self.admin.verify(token) {
                    Ok(Principal::Admin)
                } else {
                    metrics::counter!("tollgate_auth_failures_total").increment(1);
                    Err(AuthError::InvalidToken)
                }
            }
        }
    }
}
