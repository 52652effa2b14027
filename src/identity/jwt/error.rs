//! Why a token was refused.
//!
//! Every variant is about the token's *shape or standing*, never its
//! contents: these messages reach logs and, through the authenticator,
//! possibly clients, and a token (or a claim copied from one) must not.

use jsonwebtoken::errors::ErrorKind;

/// A refused token. `Display` never includes anything taken from the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url segments of JSON, too long, or claims that are
    /// not a JSON object.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// The header names an algorithm other than the pinned one (this covers
    /// `none`, and HS256 tokens presented to an RS256 verifier).
    #[error("the token is signed with an algorithm that is not accepted")]
    WrongAlgorithm,
    /// RS256 tokens must say which key signed them.
    #[error("the token names no signing key (kid)")]
    MissingKid,
    /// The issuer's key set has no key with the token's `kid`, even after a
    /// refetch (or a refetch was not allowed yet).
    #[error("the token is signed with a key the issuer does not publish")]
    UnknownKid,
    /// The issuer's key set could not be fetched and the cache cannot decide.
    #[error("the issuer's signing keys are unavailable")]
    KeysUnavailable,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token is for another audience")]
    WrongAudience,
    /// A registered claim this service requires (`exp`, `iss`, `aud`) is
    /// absent or not of the right type.
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(&'static str),
    #[error("the token names no subject")]
    MissingSubject,
    /// The subject is not usable as a user id (too long, or contains
    /// whitespace or control characters).
    #[error("the token's subject is not a valid user id")]
    InvalidSubject,
}

impl JwtError {
    /// A stable, low-cardinality label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Malformed => "malformed",
            JwtError::WrongAlgorithm => "wrong_algorithm",
            JwtError::MissingKid => "missing_kid",
            JwtError::UnknownKid => "unknown_kid",
            JwtError::KeysUnavailable => "keys_unavailable",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::WrongIssuer => "wrong_issuer",
            JwtError::WrongAudience => "wrong_audience",
            JwtError::MissingClaim(_) => "missing_claim",
            JwtError::MissingSubject => "missing_subject",
            JwtError::InvalidSubject => "invalid_subject",
        }
    }
}

impl From<jsonwebtoken::errors::Error> for JwtError {
    /// Maps the library's verdict. The library's own messages are dropped:
    /// some of them quote parts of the input.
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        match err.kind() {
            ErrorKind::InvalidSignature => JwtError::BadSignature,
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
            ErrorKind::InvalidAudience => JwtError::WrongAudience,
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => JwtError::WrongAlgorithm,
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "sub" => JwtError::MissingSubject,
                "exp" => JwtError::MissingClaim("exp"),
                "iss" => JwtError::MissingClaim("iss"),
                "aud" => JwtError::MissingClaim("aud"),
                _ => JwtError::Malformed,
            },
            // A key we built ourselves that the crypto backend rejects
            // (e.g. an RSA modulus it will not use) cannot have signed it.
            ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => JwtError::BadSignature,
            _ => JwtError::Malformed,
        }
    }
}
