//! Who belongs to which organisation, in memory.
//!
//! A check for a user in an organisation must also count against the
//! organisation, so every check asks "which org is this user in?". The
//! answer comes from here, never from the database: the directory is loaded
//! at start-up and changed only after the store accepted a membership
//! change.

use crate::store::{Membership, OrgRole};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

/// A user's membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberOf {
    pub org_id: Arc<str>,
    pub role: OrgRole,
}

impl MemberOf {
    /// Owners and admins manage the organisation.
    pub fn is_org_admin(&self) -> bool {
        matches!(self.role, OrgRole::Owner | OrgRole::Admin)
    }
}

#[derive(Debug, Default)]
pub struct Directory {
    members: RwLock<HashMap<Arc<str>, MemberOf, foldhash::fast::RandomState>>,
}

impl Directory {
    pub fn new(memberships: Vec<Membership>) -> Self {
        let directory = Directory::default();
        for m in memberships {
            directory.set(&m.user_id, &m.org_id, m.role);
        }
        directory
    }

    /// The user's organisation and role, if any.
    pub fn membership(&self, user_id: &str) -> Option<MemberOf> {
        self.members.read().get(user_id).cloned()
    }

    /// The user's organisation, if any.
    pub fn org_of(&self, user_id: &str) -> Option<Arc<str>> {
        self.members.read().get(user_id).map(|m| m.org_id.clone())
    }

    /// Is `user_id` a member of `org_id`?
    pub fn is_member(&self, user_id: &str, org_id: &str) -> bool {
        self.members.read().get(user_id).is_some_and(|m| &*m.org_id == org_id)
    }

    pub fn set(&self, user_id: &str, org_id: &str, role: OrgRole) {
        self.members.write().insert(
            Arc::from(user_id),
            MemberOf {
                org_id: Arc::from(org_id),
                role,
            },
        );
    }

    /// Replaces every membership at once (a reconciliation with the store).
    pub fn replace_all(&self, memberships: Vec<Membership>) {
        let fresh = Directory::new(memberships);
        let map = std::mem::take(&mut *fresh.members.write());
        *self.members.write() = map;
    }

    pub fn remove(&self, user_id: &str) {
        self.members.write().remove(user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_is_one_org_per_user() {
        let d = Directory::default();
        d.set("u1", "o1", OrgRole::Owner);
        assert!(d.is_member("u1", "o1"));
        assert!(d.membership("u1").is_some_and(|m| m.is_org_admin()));
        d.set("u1", "o2", OrgRole::Member);
        assert!(!d.is_member("u1", "o1"));
        assert_eq!(d.org_of("u1").as_deref(), Some("o2"));
        d.remove("u1");
        assert_eq!(d.org_of("u1"), None);
    }
}
