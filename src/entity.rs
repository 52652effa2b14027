//! Entity keys: the names of everything that has its own counters and budget.
//!
//! A key is written `kind:id` — `user:<auth0 sub>`, `org:<uuid>`,
//! `ip:<normalised address>`, `fp:<fingerprint>`. The key is the unit of
//! ownership: one actor per key, one owner node per key in a cluster.

use ipnet::{IpNet, Ipv6Net};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// Longest id accepted after the `kind:` prefix. Auth0 subjects and browser
/// fingerprints are far shorter; anything longer is a client bug or abuse.
pub const MAX_ID_LEN: usize = 256;

/// What kind of thing an entity is; decides its default tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    User,
    Org,
    Ip,
    Fingerprint,
}

impl EntityKind {
    pub fn prefix(self) -> &'static str {
        match self {
            EntityKind::User => "user",
            EntityKind::Org => "org",
            EntityKind::Ip => "ip",
            EntityKind::Fingerprint => "fp",
        }
    }

    /// Guests (IP and fingerprint) are limited by the `guest` tier.
    pub fn is_guest(self) -> bool {
        matches!(self, EntityKind::Ip | EntityKind::Fingerprint)
    }
}

/// Why a string is not a valid entity id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_ID_LEN} bytes")]
    TooLong,
    #[error("must not contain control characters or whitespace")]
    BadCharacter,
    #[error("is not a valid IP address")]
    BadIp,
    #[error("must look like kind:id with kind one of user, org, ip, fp")]
    BadKind,
}

/// A validated entity key. Cheap to clone (one `Arc`).
///
/// ```
/// use tollgate::entity::EntityKey;
///
/// let guest = EntityKey::ip_str("::ffff:203.0.113.7").unwrap();
/// assert_eq!(guest.as_str(), "ip:203.0.113.7"); // one address, one key
/// assert!(EntityKey::user("has space").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityKey {
    kind: EntityKind,
    /// The full `kind:id` text; `kind` is kept alongside to avoid re-parsing.
    text: Arc<str>,
}

/// On the wire (the cluster's RPC) a key is its `kind:id` text, parsed
/// and validated again on arrival.
impl serde::Serialize for EntityKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for EntityKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        EntityKey::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl EntityKey {
    /// A user by their identity-provider subject (Auth0 `sub`).
    pub fn user(id: &str) -> Result<Self, KeyError> {
        Self::new(EntityKind::User, id)
    }

    /// An organisation by id.
    pub fn org(id: &str) -> Result<Self, KeyError> {
        Self::new(EntityKind::Org, id)
    }

    /// A guest IP address, normalised so that one address has one key
    /// (`::ffff:1.2.3.4` and `1.2.3.4` are the same guest).
    pub fn ip(addr: IpAddr) -> Self {
        let addr = normalise_ip(addr);
        EntityKey {
            kind: EntityKind::Ip,
            text: format!("ip:{addr}").into(),
        }
    }

    /// A guest by address, IPv6 folded to its `ipv6_prefix` network
    /// (`ip:2001:db8:1:2::/64`): one subscriber holds a whole /64, so
    /// keying by address would let it pick a fresh guest per request.
    /// IPv4 (and IPv4-mapped IPv6) stays one address. A prefix of 128 or
    /// more keeps IPv6 addresses whole.
    ///
    /// ```
    /// use tollgate::entity::EntityKey;
    ///
    /// let a = EntityKey::guest_ip("2001:db8:1:2::7".parse().unwrap(), 64);
    /// let b = EntityKey::guest_ip("2001:db8:1:2:ffff::1".parse().unwrap(), 64);
    /// assert_eq!(a, b);
    /// assert_eq!(a.as_str(), "ip:2001:db8:1:2::/64");
    /// assert_eq!(EntityKey::parse(a.as_str()).unwrap(), a);
    /// ```
    pub fn guest_ip(addr: IpAddr, ipv6_prefix: u8) -> Self {
        match normalise_ip(addr) {
            IpAddr::V6(v6) if ipv6_prefix < 128 => match Ipv6Net::new(v6, ipv6_prefix) {
                Ok(net) => Self::ip_net(IpNet::V6(net.trunc())),
                Err(_) => Self::ip(IpAddr::V6(v6)),
            },
            other => Self::ip(other),
        }
    }

    /// Parses and normalises a textual IP address, or a network as
    /// [`EntityKey::guest_ip`] writes it (`2001:db8:1:2::/64`; host bits
    /// are cleared, and a full-length prefix is the bare address).
    pub fn ip_str(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.contains('/') {
            let net: IpNet = text.parse().map_err(|_| KeyError::BadIp)?;
            return Ok(match net {
                IpNet::V6(v6) if v6.prefix_len() < 128 && v6.addr().to_ipv4_mapped().is_none() => {
                    Self::ip_net(IpNet::V6(v6.trunc()))
                }
                IpNet::V4(v4) if v4.prefix_len() < 32 => Self::ip_net(IpNet::V4(v4.trunc())),
                other => Self::ip(other.addr()),
            });
        }
        let addr: IpAddr = text.parse().map_err(|_| KeyError::BadIp)?;
        Ok(Self::ip(addr))
    }

    fn ip_net(net: IpNet) -> Self {
        EntityKey {
            kind: EntityKind::Ip,
            text: format!("ip:{net}").into(),
        }
    }

    /// A guest browser fingerprint.
    pub fn fingerprint(fp: &str) -> Result<Self, KeyError> {
        Self::new(EntityKind::Fingerprint, fp)
    }

    fn new(kind: EntityKind, id: &str) -> Result<Self, KeyError> {
        validate_id(id)?;
        Ok(EntityKey {
            kind,
            text: format!("{}:{id}", kind.prefix()).into(),
        })
    }

    /// Parses a full `kind:id` key, as stored in the database.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let (kind, id) = text.split_once(':').ok_or(KeyError::BadKind)?;
        match kind {
            "user" => Self::user(id),
            "org" => Self::org(id),
            "ip" => Self::ip_str(id),
            "fp" => Self::fingerprint(id),
            _ => Err(KeyError::BadKind),
        }
    }

    pub fn kind(&self) -> EntityKind {
        self.kind
    }

    /// The id without the `kind:` prefix.
    pub fn id(&self) -> &str {
        &self.text[self.kind.prefix().len() + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntityKey({})", self.text)
    }
}

fn validate_id(id: &str) -> Result<(), KeyError> {
    if id.is_empty() {
        return Err(KeyError::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(KeyError::TooLong);
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(KeyError::BadCharacter);
    }
    Ok(())
}

fn normalise_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_text() {
        for text in [
            "user:auth0|abc",
            "org:7f1c",
            "ip:203.0.113.7",
            "fp:fp-a",
            "ip:2001:db8::1",
            "ip:2001:db8:1:2::/64",
            "ip:10.0.0.0/8",
        ] {
            let key = EntityKey::parse(text).expect(text);
            assert_eq!(key.as_str(), text);
            assert_eq!(EntityKey::parse(key.as_str()).expect(text), key);
        }
    }

    #[test]
    fn mapped_ipv4_is_the_same_guest() {
        assert_eq!(
            EntityKey::ip_str("::ffff:203.0.113.7").unwrap(),
            EntityKey::ip_str("203.0.113.7").unwrap()
        );
        assert_eq!(EntityKey::ip_str("203.0.113.7").unwrap().id(), "203.0.113.7");
    }

    #[test]
    fn networks_are_canonical() {
        assert_eq!(
            EntityKey::ip_str("2001:db8:1:2:3::9/64").unwrap().as_str(),
            "ip:2001:db8:1:2::/64"
        );
        assert_eq!(EntityKey::ip_str("2001:db8::9/128").unwrap().as_str(), "ip:2001:db8::9");
        assert_eq!(EntityKey::ip_str("203.0.113.7/32").unwrap().as_str(), "ip:203.0.113.7");
        assert_eq!(EntityKey::ip_str("2001:db8::/999"), Err(KeyError::BadIp));
        let v6: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        assert_eq!(EntityKey::guest_ip(v6, 128).as_str(), "ip:2001:db8:1:2::1");
        assert_eq!(EntityKey::guest_ip(v6, 48).as_str(), "ip:2001:db8:1::/48");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(EntityKey::guest_ip(mapped, 64).as_str(), "ip:192.0.2.1");
    }

    #[test]
    fn bad_ids_are_named() {
        assert_eq!(EntityKey::user(""), Err(KeyError::Empty));
        assert_eq!(EntityKey::user("a b"), Err(KeyError::BadCharacter));
        assert_eq!(EntityKey::user(&"x".repeat(300)), Err(KeyError::TooLong));
        assert_eq!(EntityKey::ip_str("999.1.1.1"), Err(KeyError::BadIp));
        assert_eq!(EntityKey::parse("team:x"), Err(KeyError::BadKind));
    }
}
