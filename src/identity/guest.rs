//! Who a guest is: their IP address (folded to a network for IPv6) and
//! browser fingerprint.
//!
//! Behind a proxy the TCP peer is the proxy, and the client's address is in
//! `X-Forwarded-For`. Only the entries that trusted proxies appended can be
//! believed: everything to their left was written by the client. So the
//! header is walked from the right, skipping trusted proxies, and the first
//! untrusted address is the guest. A client that prepends made-up entries
//! changes nothing.

use crate::entity::EntityKey;
use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The header a browser's fingerprint arrives in.
pub const FINGERPRINT_HEADER: &str = "x-tollgate-fingerprint";

/// The header proxies append the address they received a request from to.
pub const FORWARDED_FOR_HEADER: &str = "x-forwarded-for";

/// Default IPv6 prefix one guest is keyed by. One subscriber is normally
/// given a whole /64 (RFC 6177), and can pick any of its 2^64 addresses:
/// keyed by address, one IPv6 guest would be unlimited.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

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

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// One `X-Forwarded-For` entry: an address, or an address with a port
/// (`203.0.113.7:5123`, `[2001:db8::1]:443`), which some proxies write.
fn parse_entry(entry: &str) -> Result<IpAddr, GuestError> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
        .map_err(|_| GuestError::BadForwardedFor)
}

/// Walks `X-Forwarded-For` entries (in header order, `None` for a part
/// that is not text) from the right: the first address that is not a
/// trusted proxy is the client; if every entry is trusted, the left-most.
/// A malformed entry reached on the way is an error; entries left of the
/// client are never looked at. `Ok(None)` for no entries at all.
pub fn forwarded_client(entries: &[Option<&str>], trusted: &[IpNet]) -> Result<Option<IpAddr>, GuestError> {
    let mut leftmost = None;
    for entry in entries.iter().rev() {
        let ip = parse_entry(entry.ok_or(GuestError::BadForwardedFor)?)?;
        if !is_trusted(ip, trusted) {
            return Ok(Some(ip));
        }
        leftmost = Some(ip);
    }
    Ok(leftmost)
}

/// The client's IP: the TCP peer, or (when the peer is a trusted proxy)
/// the right-most untrusted `X-Forwarded-For` entry. Repeated header lines
/// are joined in order, as RFC 9110 §5.3 says.
pub fn client_ip(headers: &HeaderMap, peer: SocketAddr, trusted: &[IpNet]) -> Result<IpAddr, GuestError> {
    let peer_ip = peer.ip().to_canonical();
    if !is_trusted(peer_ip, trusted) {
        return Ok(peer_ip);
    }
    let mut entries: Vec<Option<&str>> = Vec::new();
    for line in headers.get_all(FORWARDED_FOR_HEADER) {
        match line.to_str() {
            Ok(text) => entries.extend(text.split(',').map(Some)),
            Err(_) => entries.push(None),
        }
    }
    Ok(forwarded_client(&entries, trusted)?.unwrap_or(peer_ip))
}

/// The guest calling without credentials; IPv6 addresses are folded to
/// their `ipv6_prefix` network.
pub fn from_request(
    headers: &HeaderMap,
    peer: SocketAddr,
    trusted: &[IpNet],
    ipv6_prefix: u8,
) -> Result<Guest, GuestError> {
    let ip = EntityKey::guest_ip(client_ip(headers, peer, trusted)?, ipv6_prefix);
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
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = nets(&["10.0.0.0/8"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.2")]);
        let proxy: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        assert_eq!(client_ip(&h, proxy, &trusted).unwrap().to_string(), "203.0.113.7");
        assert_eq!(client_ip(&h, stranger, &trusted).unwrap().to_string(), "198.51.100.1");
        let bad = headers(&[("x-forwarded-for", "nope")]);
        assert_eq!(client_ip(&bad, proxy, &trusted), Err(GuestError::BadForwardedFor));
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let trusted = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        let proxy: SocketAddr = "127.0.0.1:9".parse().unwrap();
        // The client wrote 10.66.0.3; the proxy appended 198.51.100.77.
        let h = headers(&[("x-forwarded-for", "10.66.0.3, 198.51.100.77")]);
        assert_eq!(client_ip(&h, proxy, &trusted).unwrap().to_string(), "198.51.100.77");
        // Trusted hops on the right are skipped; garbage left of the
        // client is never reached.
        let h = headers(&[("x-forwarded-for", "nope, 203.0.113.9, 10.0.0.5")]);
        assert_eq!(client_ip(&h, proxy, &trusted).unwrap().to_string(), "203.0.113.9");
        // Repeated lines join in order.
        let h = headers(&[
            ("x-forwarded-for", "192.0.2.1"),
            ("x-forwarded-for", "203.0.113.4, 10.0.0.5"),
        ]);
        assert_eq!(client_ip(&h, proxy, &trusted).unwrap().to_string(), "203.0.113.4");
        // All trusted: the left-most.
        let h = headers(&[("x-forwarded-for", "10.0.0.1, 10.0.0.2")]);
        assert_eq!(client_ip(&h, proxy, &trusted).unwrap().to_string(), "10.0.0.1");
        // Ports and brackets, and mapped IPv4.
        let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
        assert_eq!(client_ip(&h, proxy, &trusted).unwrap().to_string(), "2001:db8::1");
        let h = headers(&[("x-forwarded-for", "::ffff:203.0.113.7")]);
        assert_eq!(client_ip(&h, proxy, &trusted).unwrap().to_string(), "203.0.113.7");
        // A malformed entry reached on the walk is refused.
        let h = headers(&[("x-forwarded-for", "203.0.113.9, , 10.0.0.5")]);
        assert_eq!(client_ip(&h, proxy, &trusted), Err(GuestError::BadForwardedFor));
        // No header: the proxy itself.
        assert_eq!(
            client_ip(&HeaderMap::new(), proxy, &trusted).unwrap().to_string(),
            "127.0.0.1"
        );
    }

    #[test]
    fn ipv6_guests_are_keyed_by_their_network() {
        let proxy: SocketAddr = "[2001:db8:1:2::99]:9".parse().unwrap();
        let g = from_request(&HeaderMap::new(), proxy, &[], 64).unwrap();
        assert_eq!(g.ip.as_str(), "ip:2001:db8:1:2::/64");
        let mapped: SocketAddr = "[::ffff:203.0.113.7]:9".parse().unwrap();
        let g = from_request(&HeaderMap::new(), mapped, &[], 64).unwrap();
        assert_eq!(g.ip.as_str(), "ip:203.0.113.7");
    }

    fn entry() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u8..4, any::<u8>()).prop_map(|(a, b)| format!("10.0.{a}.{b}")),
            (any::<u8>(), any::<u8>()).prop_map(|(a, b)| format!("203.0.{a}.{b}")),
            any::<u16>().prop_map(|a| format!("2001:db8::{a:x}")),
            "[a-z ]{0,6}",
        ]
    }

    proptest! {
        /// Whatever a client prepends to X-Forwarded-For, the guest found
        /// is the same, once the right part names an untrusted address (or
        /// is refused before reaching the prepended part).
        #[test]
        fn spoofed_left_entries_change_nothing(
            tail in proptest::collection::vec(entry(), 1..5),
            spoofed in proptest::collection::vec(entry(), 0..5),
        ) {
            let trusted = nets(&["10.0.0.0/8"]);
            let tail_refs: Vec<Option<&str>> = tail.iter().map(|s| Some(s.as_str())).collect();
            let alone = forwarded_client(&tail_refs, &trusted);
            let decided = match &alone {
                Ok(Some(ip)) => !is_trusted(*ip, &trusted),
                Ok(None) => false,
                Err(_) => true,
            };
            prop_assume!(decided);
            let all: Vec<Option<&str>> = spoofed.iter().map(|s| Some(s.as_str())).chain(tail_refs).collect();
            prop_assert_eq!(forwarded_client(&all, &trusted), alone);
        }
    }
}
