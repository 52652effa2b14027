//! Who may manage alert channels and read alerts: pure decisions, the
//! same 404-for-other-tenants rule as the rest of the API.
//!
//! A platform admin manages channels without an organisation (they hear
//! every alert) and any organisation's; an organisation's managers (owners,
//! admins, its `org_admin` keys) manage their own organisation's channels
//! only. Alerts are read by admins (any), an organisation's managers (the
//! organisation's and its current members') and a user (their own).

use super::access::{Access, Denied};
use super::principal::Principal;
use super::scope::Scope;
use crate::entity::{EntityKey, EntityKind};
use std::sync::Arc;

/// Whose alerts (or channels) a read covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertReach {
    /// Everything (platform admins).
    All,
    /// One organisation's, and (for alerts) its members'.
    Org(Arc<str>),
    /// One entity's alone.
    Entity(EntityKey),
}

impl Access<'_> {
    /// The organisation the caller manages, if any: an `org_admin` key's
    /// own organisation, or a signed-in owner's or admin's.
    pub fn managed_org(&self) -> Option<Arc<str>> {
        match self.principal {
            Principal::Key(grant) if grant.scopes.contains(Scope::OrgAdmin) => grant.org_id.clone(),
            Principal::User { user_id } => self
                .directory
                .membership(user_id)
                .filter(|m| m.is_org_admin())
                .map(|m| m.org_id),
            _ => None,
        }
    }

    /// May the caller create or delete a channel of `org_id` (None: a
    /// platform channel)?
    pub fn may_manage_channel(&self, org_id: Option<&str>) -> Result<(), Denied> {
        match (self.principal, org_id) {
            (Principal::Admin, _) => Ok(()),
            (Principal::Guest(_), _) => Err(Denied::Unauthenticated),
            (_, None) => Err(Denied::Forbidden(
                "only a platform admin manages channels without org_id (they receive every alert)",
            )),
            (_, Some(org)) => self.may_manage_org(org),
        }
    }

    /// Which channels a listing shows: an admin's every channel (or one
    /// organisation's, if asked), a manager's own organisation's.
    pub fn channel_listing(&self, org_id: Option<&str>) -> Result<AlertReach, Denied> {
        match self.principal {
            Principal::Admin => Ok(org_id.map_or(AlertReach::All, |o| AlertReach::Org(Arc::from(o)))),
            Principal::Guest(_) => Err(Denied::Unauthenticated),
            _ => match org_id {
                Some(org) => self.may_manage_org(org).map(|()| AlertReach::Org(Arc::from(org))),
                None => self.managed_org().map(AlertReach::Org).ok_or(Denied::Forbidden(
                    "only platform admins and organisation managers have alert channels",
                )),
            },
        }
    }

    /// Whose alerts `GET /v1/alerts` returns: `entity` if the caller may
    /// see it, else, without one, everything the caller may see.
    pub fn alert_reach(&self, entity: Option<&EntityKey>) -> Result<AlertReach, Denied> {
        match self.principal {
            Principal::Admin => return Ok(entity.map_or(AlertReach::All, |e| AlertReach::Entity(e.clone()))),
            Principal::Guest(_) => return Err(Denied::Unauthenticated),
            _ => {}
        }
        let own = self.principal.own_user();
        let managed = self.managed_org();
        let Some(entity) = entity else {
            return match (managed, own) {
                (Some(org), _) => Ok(AlertReach::Org(org)),
                (None, Some(user)) => EntityKey::user(user)
                    .map(AlertReach::Entity)
                    .map_err(|_| Denied::Forbidden("this credential's user id is not a valid entity")),
                (None, None) => Err(Denied::Forbidden("this credential may not read alerts")),
            };
        };
        let visible = match entity.kind() {
            EntityKind::User => {
                own.is_some_and(|u| &**u == entity.id())
                    || managed
                        .as_deref()
                        .is_some_and(|org| self.directory.is_member(entity.id(), org))
            }
            EntityKind::Org => {
                if managed.as_deref() == Some(entity.id()) {
                    true
                } else {
                    // A member who does not manage the organisation gets a
                    // 403, anyone else the usual 404.
                    self.may_manage_org(entity.id())?;
                    true
                }
            }
            EntityKind::Ip | EntityKind::Fingerprint => false,
        };
        if visible {
            Ok(AlertReach::Entity(entity.clone()))
        } else {
            Err(Denied::Hidden)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::directory::Directory;
    use crate::identity::guest::Guest;
    use crate::store::{Membership, OrgRole};

    fn directory() -> Directory {
        let m = |org: &str, user: &str, role| Membership {
            org_id: org.into(),
            user_id: user.into(),
            role,
        };
        Directory::new(vec![
            m("a", "alice", OrgRole::Owner),
            m("a", "amy", OrgRole::Member),
            m("b", "bob", OrgRole::Admin),
            m("b", "ben", OrgRole::Member),
        ])
    }

    fn user(id: &str) -> Principal {
        Principal::User { user_id: Arc::from(id) }
    }

    fn key(id: &str) -> EntityKey {
        EntityKey::parse(id).unwrap()
    }

    #[test]
    fn channels_admin_any_manager_own_org_others_refused() {
        let dir = directory();
        let admin = Principal::Admin;
        assert_eq!(Access::new(&admin, &dir).may_manage_channel(None), Ok(()));
        assert_eq!(Access::new(&admin, &dir).may_manage_channel(Some("b")), Ok(()));
        let alice = user("alice");
        let alice = Access::new(&alice, &dir);
        assert_eq!(alice.may_manage_channel(Some("a")), Ok(()));
        assert_eq!(alice.may_manage_channel(Some("b")), Err(Denied::Hidden));
        assert!(matches!(alice.may_manage_channel(None), Err(Denied::Forbidden(_))));
        assert_eq!(alice.channel_listing(None), Ok(AlertReach::Org(Arc::from("a"))));
        assert_eq!(alice.channel_listing(Some("b")), Err(Denied::Hidden));
        let amy = user("amy");
        let amy = Access::new(&amy, &dir);
        assert!(matches!(amy.may_manage_channel(Some("a")), Err(Denied::Forbidden(_))));
        assert!(matches!(amy.channel_listing(None), Err(Denied::Forbidden(_))));
        let guest = Principal::Guest(Guest {
            ip: key("ip:10.0.0.9"),
            fingerprint: None,
        });
        assert_eq!(
            Access::new(&guest, &dir).may_manage_channel(Some("a")),
            Err(Denied::Unauthenticated)
        );
    }

    #[test]
    fn alerts_admin_any_manager_org_and_members_user_own() {
        let dir = directory();
        let admin = Principal::Admin;
        assert_eq!(Access::new(&admin, &dir).alert_reach(None), Ok(AlertReach::All));
        let bob = user("bob");
        let bob = Access::new(&bob, &dir);
        assert_eq!(bob.alert_reach(None), Ok(AlertReach::Org(Arc::from("b"))));
        assert_eq!(
            bob.alert_reach(Some(&key("user:ben"))),
            Ok(AlertReach::Entity(key("user:ben")))
        );
        assert_eq!(
            bob.alert_reach(Some(&key("org:b"))),
            Ok(AlertReach::Entity(key("org:b")))
        );
        assert_eq!(bob.alert_reach(Some(&key("user:amy"))), Err(Denied::Hidden));
        assert_eq!(bob.alert_reach(Some(&key("org:a"))), Err(Denied::Hidden));
        assert_eq!(bob.alert_reach(Some(&key("ip:10.0.0.1"))), Err(Denied::Hidden));
        let ben = user("ben");
        let ben = Access::new(&ben, &dir);
        assert_eq!(ben.alert_reach(None), Ok(AlertReach::Entity(key("user:ben"))));
        assert_eq!(ben.alert_reach(Some(&key("user:bob"))), Err(Denied::Hidden));
        assert!(matches!(
            ben.alert_reach(Some(&key("org:b"))),
            Err(Denied::Forbidden(_))
        ));
        let guest = Principal::Guest(Guest {
            ip: key("ip:10.0.0.9"),
            fingerprint: None,
        });
        assert_eq!(
            Access::new(&guest, &dir).alert_reach(None),
            Err(Denied::Unauthenticated)
        );
    }
}
