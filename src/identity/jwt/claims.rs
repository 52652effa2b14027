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

/// The permission (Auth0 RBAC) or OAuth scope that makes a caller an admin.
pub const ADMIN_PERMISSION: &str = "tollgate:admin";

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The `sub` claim, already valid as a user entity id.
    pub subject: String,
    /// `permissions` or `scope` grants [`ADMIN_PERMISSION`].
    pub admin: bool,
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
    pub(super) fn into_verified(self, issuer: &str) -> Result<VerifiedToken, JwtError> {
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
        let admin = grants(self.permissions.as_ref(), self.scope.as_ref());
        Ok(VerifiedToken { subject, admin })
    }
}

/// Auth0 RBAC puts permissions in a `permissions` array; OAuth scopes are
/// one space-separated `scope` string. Either may grant admin; values of
/// other types grant nothing.
fn grants(permissions: Option<&Value>, scope: Option<&Value>) -> bool {
    let in_permissions = match permissions {
        Some(Value::Array(items)) => items.iter().any(|p| p.as_str() == Some(ADMIN_PERMISSION)),
        _ => false,
    };
    let in_scope = match scope {
        Some(Value::String(scope)) => scope.split_ascii_whitespace().any(|s| s == ADMIN_PERMISSION),
        _ => false,
    };
    in_permissions || in_scope
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn verify(claims: Value) -> Result<VerifiedToken, JwtError> {
        serde_json::from_value::<Claims>(claims)
            .map_err(|_| JwtError::Malformed)?
            .into_verified("https://issuer/")
    }

    #[test]
    fn admin_from_permissions_or_scope() {
        let base = |extra: Value| {
            let mut claims = json!({"iss": "https://issuer/", "sub": "auth0|1"});
            if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
                claims.extend(extra.clone());
            }
            verify(claims).map(|t| t.admin)
        };
        assert_eq!(base(json!({})), Ok(false));
        assert_eq!(base(json!({"permissions": ["read", "tollgate:admin"]})), Ok(true));
        assert_eq!(base(json!({"permissions": ["tollgate:admin:x"]})), Ok(false));
        assert_eq!(base(json!({"permissions": "tollgate:admin"})), Ok(false));
        assert_eq!(base(json!({"scope": "openid tollgate:admin profile"})), Ok(true));
        assert_eq!(base(json!({"scope": "openid tollgate:administrator"})), Ok(false));
        assert_eq!(base(json!({"scope": ["tollgate:admin"]})), Ok(false));
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
