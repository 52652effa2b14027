//! Whose limits a request is about, and whether the caller may say so.

use super::error::ApiError;
use crate::entity::{EntityKey, EntityKind};
use crate::identity::{Guest, Principal};
use crate::store::UsageSubject;
use serde::Deserialize;

/// A guest named by a service credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestRef {
    pub ip: String,
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// The resolved subject.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Entities that must all allow, in key order.
    pub entities: Vec<EntityKey>,
}

impl Subject {
    fn user(id: &str) -> Result<Self, ApiError> {
        let key = EntityKey::user(id).map_err(|e| ApiError::invalid("user_id", e))?;
        Ok(Subject { entities: vec![key] })
    }

    fn guest(guest: &Guest) -> Self {
        let mut entities = guest.entities();
        entities.sort();
        Subject { entities }
    }

    /// How the ledger records who was charged: one column per entity kind.
    pub fn usage(&self) -> UsageSubject {
        let mut usage = UsageSubject::default();
        for key in &self.entities {
            let id = Some(key.id().to_string());
            match key.kind() {
                EntityKind::User => usage.user_id = id,
                EntityKind::Org => usage.organization_id = id,
                EntityKind::Ip => usage.guest_ip = id,
                EntityKind::Fingerprint => usage.guest_fingerprint = id,
            }
        }
        usage
    }

    fn named_guest(guest: &GuestRef) -> Result<Self, ApiError> {
        let ip = EntityKey::ip_str(&guest.ip).map_err(|e| ApiError::invalid("guest.ip", e))?;
        let fingerprint = guest
            .fingerprint
            .as_deref()
            .map(EntityKey::fingerprint)
            .transpose()
            .map_err(|e| ApiError::invalid("guest.fingerprint", e))?;
        Ok(Self::guest(&Guest { ip, fingerprint }))
    }
}

/// Resolves the subject of a check, usage or status request: a service
/// credential names exactly one of `user_id` / `guest`; anyone else is
/// their own subject and may name neither.
pub fn resolve(caller: &Principal, user_id: Option<&str>, guest: Option<&GuestRef>) -> Result<Subject, ApiError> {
    match caller {
        Principal::Admin => match (user_id, guest) {
            (Some(id), None) => Subject::user(id),
            (None, Some(g)) => Subject::named_guest(g),
            (Some(_), Some(_)) => Err(ApiError::invalid("user_id", "name either user_id or guest, not both")),
            (None, None) => Err(ApiError::invalid(
                "user_id",
                "a service credential must name the subject: user_id or guest",
            )),
        },
        Principal::Guest(g) => {
            if user_id.is_some() || guest.is_some() {
                return Err(ApiError::unauthorized(
                    "only a service credential may name user_id or guest; send the credential in Authorization",
                ));
            }
            Ok(Subject::guest(g))
        }
    }
}

/// May `caller` act on every one of `entities`? (For reservation ids,
/// which carry their entities.)
pub fn may_act_on(caller: &Principal, entities: &[EntityKey]) -> bool {
    match caller {
        Principal::Admin => true,
        Principal::Guest(g) => {
            let own = g.entities();
            entities.iter().all(|e| own.contains(e))
        }
    }
}
