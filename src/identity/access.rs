//! Who may do what: every authorisation decision of the API, in one place,
//! with no IO (the directory is in memory).
//!
//! The rule that keeps tenants apart: a caller never learns that another
//! tenant's resource exists. Anything outside the caller's reach is
//! [`Denied::Hidden`] (a 404, the same answer as for a resource that does
//! not exist). [`Denied::Forbidden`] (403) is only for actions on the
//! caller's own tenant that its credential is not allowed to take, and
//! [`Denied::Unauthenticated`] (401) for callers with no credential.

use super::directory::Directory;
use super::principal::Principal;
use super::scope::{Scope, Scopes};
use crate::entity::{EntityKey, EntityKind};
use crate::store::KeyListing;
use std::sync::Arc;

/// Why an action is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No credential was presented (401).
    Unauthenticated,
    /// The caller's credential may not do this (403).
    Forbidden(&'static str),
    /// Not the caller's to see (404).
    Hidden,
}

/// Whose limits a check, usage or status is about, as named by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named<'a> {
    User(&'a str),
    Guest,
    Nothing,
}

/// What a check, usage or status may act on, once allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acting {
    /// This user (and their organisation, if any).
    User(Arc<str>),
    /// The guest the caller named.
    NamedGuest,
    /// The anonymous caller itself.
    SelfGuest,
}

/// An organisation and a user an action is narrowed to (`None`: any).
pub type Reach = (Option<Arc<str>>, Option<Arc<str>>);

/// How a member gets into an organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A platform admin adds the user at once.
    Direct,
    /// Anyone else may only invite; the user joins by accepting.
    Invite,
}

/// Which budget `PUT/DELETE /v1/users/{id}/budget` sets for this caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetAuthority {
    /// The user's own budget (platform admins only).
    Own,
    /// The cap the user's organisation puts on them as a member (its
    /// managers). It ends with the membership.
    MemberCap { org_id: Arc<str> },
}

/// What a caller wants to do with an existing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    Read,
    Rotate,
    Revoke,
}

/// Decisions for one caller.
pub struct Access<'a> {
    pub principal: &'a Principal,
    pub directory: &'a Directory,
}

impl<'a> Access<'a> {
    pub fn new(principal: &'a Principal, directory: &'a Directory) -> Self {
        Access { principal, directory }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self.principal, Principal::Admin)
    }

    /// Admin-only routes (tiers, prices, user tiers).
    pub fn admin_only(&self) -> Result<(), Denied> {
        match self.principal {
            Principal::Admin => Ok(()),
            Principal::Guest(_) => Err(Denied::Unauthenticated),
            _ => Err(Denied::Forbidden("this route needs an admin credential")),
        }
    }

    /// Any credential at all (not a guest).
    pub fn signed_in(&self) -> Result<(), Denied> {
        match self.principal {
            Principal::Guest(_) => Err(Denied::Unauthenticated),
            _ => Ok(()),
        }
    }

    /// The subject of a check, usage or status request.
    pub fn subject(&self, named: Named<'_>) -> Result<Acting, Denied> {
        if let Principal::Guest(_) = self.principal {
            return match named {
                Named::Nothing => Ok(Acting::SelfGuest),
                _ => Err(Denied::Unauthenticated),
            };
        }
        if let Some(reach) = self.principal.service_reach() {
            return match (named, reach) {
                (Named::User(user), None) => Ok(Acting::User(Arc::from(user))),
                (Named::User(user), Some(org)) if self.directory.is_member(user, org) => {
                    Ok(Acting::User(Arc::from(user)))
                }
                (Named::User(_), Some(_)) => Err(Denied::Hidden),
                (Named::Guest, None) => Ok(Acting::NamedGuest),
                (Named::Guest, Some(_)) => Err(Denied::Forbidden(
                    "an organisation's service key names its members only, not guests",
                )),
                (Named::Nothing, _) => match self.principal.own_user() {
                    Some(own) => Ok(Acting::User(own.clone())),
                    None => Err(Denied::Forbidden(
                        "a service credential must name the subject: user_id or guest",
                    )),
                },
            };
        }
        let Some(own) = self.principal.own_user() else {
            return Err(Denied::Forbidden(
                "this credential has neither the check nor the service scope",
            ));
        };
        match named {
            Named::Nothing => Ok(Acting::User(own.clone())),
            Named::User(user) if user == &**own => Ok(Acting::User(own.clone())),
            Named::User(_) => Err(Denied::Hidden),
            Named::Guest => Err(Denied::Forbidden("a user credential acts only as its own user")),
        }
    }

    /// Recording usage, settling a reservation and releasing one write
    /// money: they say what a model call really cost, which only the
    /// backend that made the call knows. So only a service credential (the
    /// admin token, a `service` key, a service JWT) may; a guest is asked
    /// to authenticate (401) and an end user's own credential is refused
    /// (403), even for itself: otherwise a user could record a $0 call, or
    /// release the hold of a call that is still running and spend it again.
    pub fn may_write_money(&self) -> Result<(), Denied> {
        match self.principal {
            Principal::Guest(_) => Err(Denied::Unauthenticated),
            _ if self.principal.service_reach().is_some() => Ok(()),
            _ => Err(Denied::Forbidden(
                "only a service credential records usage or settles and releases reservations",
            )),
        }
    }

    /// May the caller settle or release a hold on all of `entities`?
    /// (Reservation ids name their entities.) Only service credentials,
    /// within their reach: an organisation's service key touches only its
    /// members' and its own holds.
    pub fn may_act_on(&self, entities: &[EntityKey]) -> bool {
        let Some(reach) = self.principal.service_reach() else {
            return false;
        };
        entities.iter().all(|key| match (key.kind(), reach) {
            (_, None) => true,
            (EntityKind::User, Some(org)) => self.directory.is_member(key.id(), org),
            (EntityKind::Org, Some(org)) => &**org == key.id(),
            (EntityKind::Ip | EntityKind::Fingerprint, Some(_)) => false,
        })
    }

    /// May the caller see the organisation at all? (Members and the org's
    /// own keys may; anyone else learns nothing.)
    pub fn may_read_org(&self, org_id: &str) -> Result<(), Denied> {
        match self.principal {
            Principal::Admin => Ok(()),
            Principal::Guest(_) => Err(Denied::Unauthenticated),
            Principal::Key(grant) if grant.org_id.as_deref() == Some(org_id) => Ok(()),
            _ => match self.principal.own_user() {
                Some(user) if self.directory.is_member(user, org_id) => Ok(()),
                _ => Err(Denied::Hidden),
            },
        }
    }

    /// May the caller manage the organisation (members, budget, name,
    /// keys, usage summary)? Admins, the org's `org_admin` keys, and its
    /// owners and admins signed in as themselves.
    pub fn may_manage_org(&self, org_id: &str) -> Result<(), Denied> {
        self.may_read_org(org_id)?;
        let allowed = match self.principal {
            Principal::Admin => true,
            Principal::Key(grant) => grant.scopes.contains(Scope::OrgAdmin),
            Principal::User { user_id } => self.directory.membership(user_id).is_some_and(|m| m.is_org_admin()),
            Principal::Guest(_) => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(Denied::Forbidden(
                "only the organisation's owners and admins may do this",
            ))
        }
    }

    /// Changing an organisation's tier is billing: admins only, but the
    /// org's own managers get a 403 rather than a 404.
    pub fn may_set_org_tier(&self, org_id: &str) -> Result<(), Denied> {
        self.may_read_org(org_id)?;
        self.admin_only()
            .map_err(|_| Denied::Forbidden("only an admin may change an organisation's tier"))
    }

    /// A user's budget: admins set the user's own; managers of the user's
    /// organisation set only a member cap, which can lower the user's limit
    /// but never outlives the membership. A user in no organisation (or
    /// only invited to one) is nobody's but the admins'.
    pub fn may_manage_user_budget(&self, user_id: &str) -> Result<BudgetAuthority, Denied> {
        if self.is_admin() {
            return Ok(BudgetAuthority::Own);
        }
        self.signed_in()?;
        match self.directory.org_of(user_id) {
            Some(org) => {
                self.may_manage_org(&org)?;
                Ok(BudgetAuthority::MemberCap { org_id: org })
            }
            None => Err(Denied::Hidden),
        }
    }

    /// Adding someone to an organisation: a platform admin adds them
    /// directly; the organisation's own managers may only invite (the
    /// user's consent makes the membership).
    pub fn may_add_member(&self, org_id: &str) -> Result<Admission, Denied> {
        self.may_manage_org(org_id)?;
        Ok(if self.is_admin() {
            Admission::Direct
        } else {
            Admission::Invite
        })
    }

    /// The user signed in under their *own* credential: their JWT, or a
    /// personal `check` key (no organisation) that acts as them. Keys an
    /// organisation holds for a member do not count: the organisation must
    /// not be able to consent, or revoke, in the member's name.
    pub fn own_credential_user(&self) -> Option<&'a Arc<str>> {
        match self.principal {
            Principal::User { user_id } => Some(user_id),
            Principal::Key(grant) if grant.org_id.is_none() && grant.scopes.contains(Scope::Check) => {
                grant.user_id.as_ref()
            }
            _ => None,
        }
    }

    /// Answering (or listing) invitations: only the invited user, as
    /// themselves. Returns who that is; the store matches the invitation
    /// against them, so an invitation for anyone else is simply not found.
    pub fn invitee(&self) -> Result<Arc<str>, Denied> {
        match (self.principal, self.own_credential_user()) {
            (Principal::Guest(_), _) => Err(Denied::Unauthenticated),
            (_, Some(user)) => Ok(user.clone()),
            _ => Err(Denied::Hidden),
        }
    }

    /// May the caller create a key with these scopes for this org/user?
    /// Returns the key's org and user (a user's own key defaults to them).
    pub fn may_create_key(&self, scopes: Scopes, org_id: Option<&str>, user_id: Option<&str>) -> Result<Reach, Denied> {
        let org = org_id.map(Arc::from);
        let user = user_id.map(Arc::from);
        match self.principal {
            Principal::Admin => Ok((org, user)),
            Principal::Guest(_) => Err(Denied::Unauthenticated),
            _ if scopes.contains(Scope::Admin) => Err(Denied::Forbidden("only an admin may create admin keys")),
            _ => {
                if let Some(org_id) = org_id {
                    self.may_manage_org(org_id)?;
                    if let Some(user) = user_id
                        && !self.directory.is_member(user, org_id)
                    {
                        return Err(Denied::Hidden);
                    }
                    return Ok((org, user));
                }
                // A personal key: a signed-in user may give themselves a
                // `check` key, nothing more.
                match self.principal {
                    Principal::User { user_id: own } => {
                        if user_id.is_some_and(|u| u != &**own) {
                            return Err(Denied::Hidden);
                        }
                        let check_only: Scopes = [Scope::Check].into_iter().collect();
                        if !scopes.is_subset_of(check_only) {
                            return Err(Denied::Forbidden("a user may create only `check` keys for themselves"));
                        }
                        Ok((None, Some(own.clone())))
                    }
                    Principal::Key(grant) if grant.scopes.contains(Scope::OrgAdmin) => {
                        // An org admin key creates keys in its own org.
                        let Some(own_org) = grant.org_id.clone() else {
                            return Err(Denied::Forbidden("this key may not create keys"));
                        };
                        if let Some(user) = user_id
                            && !self.directory.is_member(user, &own_org)
                        {
                            return Err(Denied::Hidden);
                        }
                        Ok((Some(own_org), user))
                    }
                    _ => Err(Denied::Forbidden("this credential may not create keys")),
                }
            }
        }
    }

    /// May the caller read, rotate or revoke a key owned by this org/user?
    /// Besides the key's owners, the user a key acts as may read and revoke
    /// it under their own credential, even when an organisation made it: a
    /// user can always shut off what speaks for them. Rotating an
    /// organisation's key would hand the user its secret, so that stays
    /// with the organisation.
    pub fn may_manage_key(
        &self,
        key_org: Option<&str>,
        key_user: Option<&str>,
        action: KeyAction,
    ) -> Result<(), Denied> {
        match self.principal {
            Principal::Admin => return Ok(()),
            Principal::Guest(_) => return Err(Denied::Unauthenticated),
            _ => {}
        }
        if let (Some(own), Some(user)) = (self.own_credential_user(), key_user)
            && &**own == user
            && (action != KeyAction::Rotate || key_org.is_none())
        {
            return Ok(());
        }
        match key_org {
            Some(org) => self.may_manage_org(org).map_err(|_| Denied::Hidden),
            None => Err(Denied::Hidden),
        }
    }

    /// Which keys `GET /v1/api-keys` lists for the caller: admins all; an
    /// organisation's managers its keys; a user (under their own
    /// credential) the keys acting as them, wherever they came from.
    pub fn key_listing(&self) -> Result<KeyListing, Denied> {
        match self.principal {
            Principal::Admin => return Ok(KeyListing::All),
            Principal::Guest(_) => return Err(Denied::Unauthenticated),
            Principal::Key(grant) if grant.scopes.contains(Scope::OrgAdmin) => {
                if let Some(org) = &grant.org_id {
                    return Ok(KeyListing::Reach {
                        org_id: Some(org.to_string()),
                        user_id: None,
                    });
                }
            }
            _ => {}
        }
        let Some(own) = self.own_credential_user() else {
            return Err(Denied::Forbidden("this credential may not list keys"));
        };
        let managed_org = self
            .directory
            .org_of(own)
            .filter(|org| self.may_manage_org(org).is_ok());
        Ok(KeyListing::Reach {
            org_id: managed_org.map(|org| org.to_string()),
            user_id: Some(own.to_string()),
        })
    }

    /// The filters a usage summary runs with: the caller's reach narrows
    /// what it asked for, and anything outside it is hidden.
    pub fn summary_scope(&self, org_id: Option<&str>, user_id: Option<&str>) -> Result<Reach, Denied> {
        let within = |org: &str| match user_id {
            Some(u) if !self.directory.is_member(u, org) => Err(Denied::Hidden),
            _ => Ok((Some(Arc::from(org)), user_id.map(Arc::from))),
        };
        match self.principal {
            Principal::Admin => Ok((org_id.map(Arc::from), user_id.map(Arc::from))),
            Principal::Guest(_) => Err(Denied::Unauthenticated),
            Principal::Key(grant) if grant.org_id.is_some() && !grant.scopes.contains(Scope::Check) => {
                let own_org = grant.org_id.as_deref().unwrap_or_default();
                if org_id.is_some_and(|o| o != own_org) {
                    return Err(Denied::Hidden);
                }
                within(own_org)
            }
            Principal::Key(grant) if grant.org_id.is_none() && grant.scopes.contains(Scope::Service) => {
                Ok((org_id.map(Arc::from), user_id.map(Arc::from)))
            }
            _ => {
                let Some(own) = self.principal.own_user() else {
                    return Err(Denied::Forbidden("this credential may not read usage summaries"));
                };
                if let Some(org) = org_id {
                    self.may_read_org(org)?;
                    if self.may_manage_org(org).is_ok() {
                        return within(org);
                    }
                }
                // Anyone else sees only their own usage.
                match user_id {
                    Some(u) if u != &**own => Err(Denied::Hidden),
                    _ => Ok((org_id.map(Arc::from), Some(own.clone()))),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
