//! The claims this service reads after the signature and the registered
//! claims (`exp`, `nbf`, `iss`, `aud`) have been checked by `jsonwebtoken`.
//!
//! Fields are loose JSON values so that an unexpected type in a claim we do
//! not require (say, `scope` as an array) cannot turn a valid token into a
//! parse error; each is then judged here, field by field.

use super::JwtError;
use crate::entity::{EntityKey, KeyError};
use serde::Deserialize;
use serde_json::Value;

/// The permission (Auth0 RBAC) that makes a caller an admin.
pub const ADMIN_PERMISSION: &str = "tollgate:admin";

/// The default permission that makes a caller a service credential.
pub const DEFAULT_SERVICE_PERMISSION: &str = "tollgate:service";

/// Which claims grant a role. `permissions` is written by the issuer's
/// RBAC from what an administrator assigned; `scope` is what the client
/// *asked for*, and unless the issuer restricts requestable scopes (Auth0
/// with RBAC off does not), any user may ask for any scope. So `scope`
/// grants roles only when the operator opts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleClaims {
    /// The permission that makes a token a service credential (it may
    /// record usage for any subject).
    pub service_permission: String,
    /// Believe `scope` too (`--jwt-admin-from-scope`).
    pub from_scope: bool,
}

impl Default for RoleClaims {
    fn default() -> Self {
        RoleClaims {
            service_permission: DEFAULT_SERVICE_PERMISSION.to_string(),
            from_scope: false,
        }
    }
}

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The `sub` claim, already valid as a user entity id.
    pub subject: String,
    /// Grants [`ADMIN_PERMISSION`] (see [`RoleClaims`]).
    pub admin: bool,
    /// Grants [`RoleClaims::service_permission`].
    pub service: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct Claims {
    #[serde(default)]
    iss: Option<Value>,
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    permissions: Option<Value>,
    #[serde(default)]
    scope: Option<Value>,
}

impl Claims {
    /// Checks what the library does not and extracts the result.
    pub(super) fn into_verified(self, issuer: &str, roles: &RoleClaims) -> Result<VerifiedToken, JwtError> {
        // The library accepts an array `iss` that merely contains the issuer;
        // an issuer is one string, matched exactly.
        match self.iss {
            Some(Value::String(iss)) if iss == issuer => {}
            None => return Err(JwtError::MissingClaim("iss")),
            Some(_) => return Err(JwtError::WrongIssuer),
        }
        let subject = match self.sub {
            Some(Value::String(sub)) => sub,
            _ => return Err(JwtError::MissingSubject),
        };
        // The subject becomes `user:<sub>`; refuse here what the entity
        // layer would refuse later, so a verified token is always usable.
        match EntityKey::user(&subject) {
            Ok(_) => {}
            Err(KeyError::Empty) => return Err(JwtError::MissingSubject),
            Err(_) => return Err(JwtError::InvalidSubject),
        }
        let scope = if roles.from_scope { self.scope.as_ref() } else { None };
        let admin = grants(ADMIN_PERMISSION, self.permissions.as_ref(), scope);
        let service = grants(&roles.service_permission, self.permissions.as_ref(), scope);
        Ok(VerifiedToken {
            subject,
            admin,
            service,
        })
    }
}

/// Auth0 RBAC puts permissions in a `permissions` array; OAuth scopes are
/// one space-separated `scope` string (`None` here unless believed).
/// Values of other types grant nothing.
fn grants(wanted: &str, permissions: Option<&Value>, scope: Option<&Value>) -> bool {
    let in_permissions = match permissions {
        Some(Value::Array(items)) => items.iter().any(|p| p.as_str() == Some(wanted)),
        _ => false,
    };
    let in_scope = match scope {
        Some(Value::String(scope)) => scope.split_ascii_whitespace().any(|s| s == wanted),
        _ => false,
    };
    in_permissions || in_scope
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verify(claims: Value) -> Result<VerifiedToken, JwtError> {
        verify_with(claims, &RoleClaims::default())
    }

    fn verify_with(claims: Value, roles: &RoleClaims) -> Result<VerifiedToken, JwtError> {
        serde_json::from_value::<Claims>(claims)
            .map_err(|_| JwtError::Malformed)?
            .into_verified("https://issuer/", roles)
    }

    /// `(admin, service)` for a token with `extra` claims.
    fn roles(extra: Value, rules: &RoleClaims) -> Result<(bool, bool), JwtError> {
        let mut claims = json!({"iss": "https://issuer/", "sub": "auth0|1"});
        if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            claims.extend(extra.clone());
        }
        verify_with(claims, rules).map(|t| (t.admin, t.service))
    }

    #[test]
    fn roles_come_from_permissions_only_by_default() {
        let rules = RoleClaims::default();
        let base = |extra: Value| roles(extra, &rules);
        assert_eq!(base(json!({})), Ok((false, false)));
        assert_eq!(
            base(json!({"permissions": ["read", "tollgate:admin"]})),
            Ok((true, false))
        );
        assert_eq!(base(json!({"permissions": ["tollgate:service"]})), Ok((false, true)));
        assert_eq!(base(json!({"permissions": ["tollgate:admin:x"]})), Ok((false, false)));
        assert_eq!(base(json!({"permissions": "tollgate:admin"})), Ok((false, false)));
        // A scope the client merely asked for grants nothing.
        assert_eq!(
            base(json!({"scope": "openid tollgate:admin profile"})),
            Ok((false, false))
        );
        assert_eq!(base(json!({"scope": "tollgate:service"})), Ok((false, false)));
    }

    #[test]
    fn scope_grants_roles_only_when_opted_in() {
        let rules = RoleClaims {
            from_scope: true,
            ..RoleClaims::default()
        };
        let base = |extra: Value| roles(extra, &rules);
        assert_eq!(
            base(json!({"scope": "openid tollgate:admin profile"})),
            Ok((true, false))
        );
        assert_eq!(base(json!({"scope": "tollgate:service"})), Ok((false, true)));
        assert_eq!(
            base(json!({"scope": "openid tollgate:administrator"})),
            Ok((false, false))
        );
        assert_eq!(base(json!({"scope": ["tollgate:admin"]})), Ok((false, false)));
        assert_eq!(base(json!({"permissions": ["tollgate:admin"]})), Ok((true, false)));
    }

    #[test]
    fn the_service_permission_is_configurable() {
        let rules = RoleClaims {
            service_permission: "billing:record".into(),
            from_scope: false,
        };
        assert_eq!(
            roles(json!({"permissions": ["billing:record"]}), &rules),
            Ok((false, true))
        );
        assert_eq!(
            roles(json!({"permissions": ["tollgate:service"]}), &rules),
            Ok((false, false))
        );
    }

    #[test]
    fn subject_and_issuer_rules() {
        let ok = verify(json!({"iss": "https://issuer/", "sub": "auth0|1"}));
        assert_eq!(ok.map(|t| t.subject), Ok("auth0|1".to_string()));
        assert_eq!(verify(json!({"iss": "https://issuer/"})), Err(JwtError::MissingSubject));
        assert_eq!(
            verify(json!({"iss": "https://issuer/", "sub": ""})),
            Err(JwtError::MissingSubject)
        );
        assert_eq!(
            verify(json!({"iss": "https://issuer/", "sub": 7})),
            Err(JwtError::MissingSubject)
        );
        let long = "x".repeat(257);
        assert_eq!(
            verify(json!({"iss": "https://issuer/", "sub": long})),
            Err(JwtError::InvalidSubject)
        );
        assert_eq!(
            verify(json!({"iss": "https://issuer/", "sub": "a b"})),
            Err(JwtError::InvalidSubject)
        );
        assert_eq!(verify(json!({"sub": "a"})), Err(JwtError::MissingClaim("iss")));
        assert_eq!(
            verify(json!({"iss": ["https://issuer/", "x"], "sub": "a"})),
            Err(JwtError::WrongIssuer)
        );
        assert_eq!(
            verify(json!({"iss": "https://issuer", "sub": "a"})),
            Err(JwtError::WrongIssuer)
        );
    }
}
