//! What an API key may do.
//!
//! Scopes are additive: a key with `["service", "org_admin"]` may both name
//! subjects in checks and manage its organisation. `admin` implies all.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One scope, as written in `POST /v1/api-keys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Checks and usage for the key's own user only.
    Check,
    /// May name any subject in checks and usage (within its organisation
    /// if it has one).
    Service,
    /// Manages its organisation: members, budget, keys, usage summary.
    OrgAdmin,
    /// Everything.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Check, Scope::Service, Scope::OrgAdmin, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Check => "check",
            Scope::Service => "service",
            Scope::OrgAdmin => "org_admin",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?} (expected check, service, org_admin or admin)")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_string()))
    }
}

/// A set of scopes (a bit set: copied around on every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Is every scope of `self` also in `other`?
    pub fn is_subset_of(self, other: Scopes) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Parses stored or requested scope names.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Scopes, UnknownScope> {
        let mut scopes = Scopes::default();
        for name in names {
            scopes.insert(name.trim().parse()?);
        }
        Ok(scopes)
    }

    pub fn names(self) -> Vec<String> {
        self.iter().map(|s| s.as_str().to_string()).collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut scopes = Scopes::default();
        for scope in iter {
            scopes.insert(scope);
        }
        scopes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips() {
        let scopes = Scopes::parse(["service", "org_admin"]).expect("valid");
        assert!(scopes.contains(Scope::Service) && scopes.contains(Scope::OrgAdmin));
        assert!(!scopes.contains(Scope::Admin));
        assert_eq!(scopes.names(), vec!["service", "org_admin"]);
        assert!(Scopes::parse(["root"]).is_err());
    }

    #[test]
    fn subsets() {
        let check: Scopes = [Scope::Check].into_iter().collect();
        let both: Scopes = [Scope::Check, Scope::Service].into_iter().collect();
        assert!(check.is_subset_of(both));
        assert!(!both.is_subset_of(check));
    }
}
