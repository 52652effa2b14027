//! Reservation ids.
//!
//! A reservation is held on every entity of its check, so its id says
//! which: `rsv_` + base64url(16-byte UUID ‖ entity keys, newline-separated).
//! Any node can then settle or release it without a lookup table, and an
//! id's entities are checked against the caller's rights like any subject.

use crate::entity::EntityKey;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::fmt;
use uuid::Uuid;

const PREFIX: &str = "rsv_";
/// Longest id accepted (four maximal keys fit comfortably).
const MAX_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationId {
    pub hold: Uuid,
    pub entities: Vec<EntityKey>,
}

impl ReservationId {
    pub fn new(entities: Vec<EntityKey>) -> Self {
        ReservationId {
            hold: Uuid::new_v4(),
            entities,
        }
    }

    /// Parses an id; None if it is not one Tollgate issued.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > MAX_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text.strip_prefix(PREFIX)?).ok()?;
        if bytes.len() < 17 {
            return None;
        }
        let (uuid, rest) = bytes.split_at(16);
        let hold = Uuid::from_slice(uuid).ok()?;
        let rest = std::str::from_utf8(rest).ok()?;
        let entities = rest
            .split('\n')
            .map(EntityKey::parse)
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        Some(ReservationId { hold, entities })
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bytes = self.hold.as_bytes().to_vec();
        for (i, key) in self.entities.iter().enumerate() {
            if i > 0 {
                bytes.push(b'\n');
            }
            bytes.extend_from_slice(key.as_str().as_bytes());
        }
        write!(f, "{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = ReservationId::new(vec![
            EntityKey::ip_str("203.0.113.7").unwrap(),
            EntityKey::fingerprint("fp-a").unwrap(),
        ]);
        assert_eq!(ReservationId::parse(&id.to_string()), Some(id));
        assert_eq!(ReservationId::parse("rsv_"), None);
        assert_eq!(ReservationId::parse("nonsense"), None);
        assert_eq!(ReservationId::parse("rsv_!!!"), None);
    }
}
