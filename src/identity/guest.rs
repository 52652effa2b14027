//! Who a guest is: their IP address and browser fingerprint.

use crate::entity::EntityKey;
use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The header a browser's fingerprint arrives in.
pub const FINGERPRINT_HEADER: &str = "x-tollgate-fingerprint";

/// A guest's entity keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    pub ip: EntityKey,
    pub fingerprint: Option<EntityKey>,
}

impl Guest {
    pub fn entities(&self) -> Vec<EntityKey> {
        std::iter::once(self.ip.clone())
            .chain(self.fingerprint.clone())
            .collect()
    }
}

/// Why a guest could not be identified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    #[error("X-Forwarded-For from a trusted proxy is not a valid IP address")]
    BadForwardedFor,
    #[error("X-Tollgate-Fingerprint {0}")]
    BadFingerprint(crate::entity::KeyError),
}

/// The client's IP: the TCP peer, or the left-most `X-Forwarded-For` entry
/// when the peer is a trusted proxy.
pub fn client_ip(headers: &HeaderMap, peer: SocketAddr, trusted: &[IpNet]) -> Result<IpAddr, GuestError> {
    let peer_ip = peer.ip();
    if !trusted.iter().any(|net| net.contains(&peer_ip)) {
        return Ok(peer_ip);
    }
    let Some(value) = headers.get("x-forwarded-for") else {
        return Ok(peer_ip);
    };
    let first = value
        .to_str()
        .ok()
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .ok_or(GuestError::BadForwardedFor)?;
    first.parse().map_err(|_| GuestError::BadForwardedFor)
}

/// The guest calling without credentials.
pub fn from_request(headers: &HeaderMap, peer: SocketAddr, trusted: &[IpNet]) -> Result<Guest, GuestError> {
    let ip = EntityKey::ip(client_ip(headers, peer, trusted)?);
    let fingerprint = match headers.get(FINGERPRINT_HEADER) {
        None => None,
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| GuestError::BadFingerprint(crate::entity::KeyError::BadCharacter))?;
            Some(EntityKey::fingerprint(text).map_err(GuestError::BadFingerprint)?)
        }
    };
    Ok(Guest { ip, fingerprint })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.2")]);
        let proxy: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        assert_eq!(client_ip(&h, proxy, &trusted).unwrap().to_string(), "203.0.113.7");
        assert_eq!(client_ip(&h, stranger, &trusted).unwrap().to_string(), "198.51.100.1");
        let bad = headers(&[("x-forwarded-for", "nope")]);
        assert_eq!(client_ip(&bad, proxy, &trusted), Err(GuestError::BadForwardedFor));
    }
}
