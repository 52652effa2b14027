//! Whose limits a request is about, and whether the caller may say so.

use super::AppState;
use super::error::ApiError;
use crate::entity::{EntityKey, EntityKind, KeyError};
use crate::identity::access::{Acting, Named};
use crate::identity::{Access, Directory, Guest, Principal};
use crate::store::UsageSubject;
use serde::Deserialize;
use std::net::IpAddr;
use utoipa::ToSchema;

/// A guest named by a service credential: limited by its IP and, when
/// given, by its browser fingerprint too.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GuestRef {
    /// The guest's IP address (v4 or v6). An IPv6 guest is keyed by its
    /// network (`--guest-ipv6-prefix`, default /64), as an anonymous one is.
    #[schema(example = "203.0.113.7")]
    pub ip: String,
    /// The guest's browser fingerprint (1-256 bytes, no spaces).
    #[serde(default)]
    #[schema(example = "fp-3c1a9e")]
    pub fingerprint: Option<String>,
}

/// The resolved subject.
#[derive(Debug, Clone)]
pub struct Subject {
    /// Entities that must all allow, in key order: a user and their
    /// organisation, or a guest's IP and fingerprint.
    pub entities: Vec<EntityKey>,
}

impl Subject {
    /// A user, and their organisation if they belong to one: both must
    /// allow, and spend counts against both.
    fn user(id: &str, directory: &Directory) -> Result<Self, ApiError> {
        let key = EntityKey::user(id).map_err(|e| ApiError::invalid("user_id", e))?;
        let mut entities = vec![key];
        if let Some(org) = directory.org_of(id) {
            entities.push(EntityKey::org(&org).map_err(|e| ApiError::invalid("organization id", e))?);
        }
        entities.sort();
        Ok(Subject { entities })
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

    /// A guest named by a service credential, keyed like an anonymous one
    /// (IPv6 folded to `ipv6_prefix`), so both ways of naming a guest
    /// count against the same entities.
    fn named_guest(guest: &GuestRef, ipv6_prefix: u8) -> Result<Self, ApiError> {
        let addr: IpAddr = guest
            .ip
            .trim()
            .parse()
            .map_err(|_| ApiError::invalid("guest.ip", KeyError::BadIp))?;
        let ip = EntityKey::guest_ip(addr, ipv6_prefix);
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
/// credential names exactly one of `user_id` / `guest`; a user credential
/// is its own subject (and may name only itself); a guest is itself. A
/// named guest's IPv6 address is folded to `ipv6_prefix`.
pub fn resolve(
    caller: &Principal,
    directory: &Directory,
    user_id: Option<&str>,
    guest: Option<&GuestRef>,
    ipv6_prefix: u8,
) -> Result<Subject, ApiError> {
    let named = match (user_id, guest) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("user_id", "name either user_id or guest, not both")),
        (Some(id), None) => Named::User(id),
        (None, Some(_)) => Named::Guest,
        (None, None) => Named::Nothing,
    };
    if named == Named::Nothing && caller.service_reach().is_some() && caller.own_user().is_none() {
        // Not a malformed request (a user credential leaves the subject
        // out): a service credential has no subject of its own.
        return Err(ApiError::forbidden(
            "a service credential must name the subject: user_id or guest",
        ));
    }
    let acting = Access::new(caller, directory).subject(named).map_err(|denied| {
        ApiError::denied(
            denied,
            "no such user for this credential",
            "only a service credential may name user_id or guest; send the credential in Authorization",
        )
    })?;
    match (acting, guest, caller) {
        (Acting::User(id), _, _) => Subject::user(&id, directory),
        (Acting::NamedGuest, Some(g), _) => Subject::named_guest(g, ipv6_prefix),
        (Acting::SelfGuest, _, Principal::Guest(g)) => Ok(Subject::guest(g)),
        _ => Err(ApiError::invalid("guest", "a guest must be named by ip")),
    }
}

/// Bounds what a guest's request may bring into memory: each entity of
/// `subject` not yet resident counts against the guest's IP for this
/// second (`--max-new-entities-per-ip`); beyond it, 429 `rate_limited`
/// with `Retry-After`. Credentialed callers pass (see
/// [`crate::service::new_entities`]).
pub fn bound_new_entities(app: &AppState, caller: &Principal, subject: &Subject) -> Result<(), ApiError> {
    let Principal::Guest(guest) = caller else {
        return Ok(());
    };
    let now = crate::limits::calendar::now_ms();
    app.new_entities
        .admit(&app.router, &guest.ip, &subject.entities, now)
        .map_err(|refused| {
            let secs = u64::try_from(refused.retry_at_ms.saturating_sub(now)).map_or(1, |ms| ms.div_ceil(1000).max(1));
            ApiError::rate_limited(
                "this client is bringing too many new guests or fingerprints into memory per second",
                secs,
            )
        })
}

/// Refuses callers that may not write money (record usage, settle or
/// release a reservation): guests 401, end users 403.
pub fn may_write_money(caller: &Principal, directory: &Directory) -> Result<(), ApiError> {
    Access::new(caller, directory).may_write_money().map_err(|denied| {
        ApiError::denied(
            denied,
            "not found",
            "recording usage needs a service credential in Authorization",
        )
    })
}

/// May `caller` settle or release holds on every one of `entities`? (For
/// reservation ids, which carry their entities.)
pub fn may_act_on(caller: &Principal, directory: &Directory, entities: &[EntityKey]) -> bool {
    Access::new(caller, directory).may_act_on(entities)
}
