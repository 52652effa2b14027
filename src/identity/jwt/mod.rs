//! End-user access tokens (JWTs): RS256 against the issuer's published keys
//! (Auth0 and the like), or HS256 with a shared secret for development.
//!
//! The algorithm is pinned by configuration, never taken from the token:
//! trusting the header's `alg` is how `none` tokens and HS256 tokens "signed"
//! with the issuer's public key get accepted elsewhere. Beyond the
//! signature, `iss` must match exactly, `aud` must contain our audience,
//! `exp` is required and `exp`/`nbf` get [`LEEWAY_SECS`] of clock skew.
//!
//! ```no_run
//! # async fn example(token: &str) -> anyhow::Result<()> {
//! use tollgate::identity::jwt::{JwtConfig, JwtVerifier};
//!
//! let config = JwtConfig {
//!     jwt_issuer: Some("https://tenant.auth0.com/".into()),
//!     jwt_audience: Some("https://api.example.com".into()),
//!     ..JwtConfig::disabled()
//! };
//! if let Some(verifier) = JwtVerifier::new(&config)? {
//!     verifier.warm_up().await; // best effort
//!     let verified = verifier.verify(token).await?;
//!     println!("{} (admin: {})", verified.subject, verified.admin);
//! }
//! # Ok(())
//! # }
//! ```

mod claims;
mod config;
mod error;
mod jwks;
mod jwks_fetch;
mod token;

pub use claims::{ADMIN_PERMISSION, DEFAULT_SERVICE_PERMISSION, RoleClaims, VerifiedToken};
pub use config::{
    DEFAULT_FETCH_TIMEOUT, DEFAULT_MIN_REFETCH_INTERVAL, JwtConfig, JwtConfigError, MIN_HS256_SECRET_LEN,
    default_jwks_url,
};
pub use error::JwtError;
pub use token::{MAX_TOKEN_LEN, looks_like_jwt};

use claims::Claims;
use config::KeyMode;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use jwks::JwksKeys;
use std::fmt;
use std::sync::Arc;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;

/// Verifies bearer JWTs. Cheap to clone: one `Arc`.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    roles: RoleClaims,
    audience: String,
    /// The one algorithm accepted, and its name as it appears in headers.
    algorithm: Algorithm,
    algorithm_name: &'static str,
    validation: Validation,
    keys: Keys,
}

enum Keys {
    Jwks(JwksKeys),
    Hs256(DecodingKey),
}

impl JwtVerifier {
    /// A verifier for `config`, or `None` when no JWT setting is given.
    /// Fetches nothing: call [`JwtVerifier::warm_up`] at startup.
    pub fn new(config: &JwtConfig) -> Result<Option<JwtVerifier>, JwtConfigError> {
        let Some(resolved) = config.resolve()? else {
            return Ok(None);
        };
        let (algorithm, algorithm_name, keys) = match resolved.mode {
            KeyMode::Jwks(url) => {
                let keys = JwksKeys::new(url, config.jwks_fetch_timeout, config.jwks_min_refetch_interval)?;
                (Algorithm::RS256, "RS256", Keys::Jwks(keys))
            }
            KeyMode::Hs256(secret) => {
                if secret.len() < MIN_HS256_SECRET_LEN {
                    tracing::warn!(
                        "the HS256 JWT secret is shorter than {MIN_HS256_SECRET_LEN} bytes; use HS256 for development only"
                    );
                }
                (
                    Algorithm::HS256,
                    "HS256",
                    Keys::Hs256(DecodingKey::from_secret(&secret)),
                )
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&resolved.issuer]);
        validation.set_audience(&[&resolved.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(Some(JwtVerifier {
            inner: Arc::new(Inner {
                issuer: resolved.issuer,
                roles: resolved.roles,
                audience: resolved.audience,
                algorithm,
                algorithm_name,
                validation,
                keys,
            }),
        }))
    }

    /// Loads the issuer's keys ahead of the first token. Best effort: a
    /// failure is logged, and the first token then triggers a fetch.
    /// Returns whether keys are loaded (always true in HS256 mode).
    pub async fn warm_up(&self) -> bool {
        match &self.inner.keys {
            Keys::Jwks(keys) => keys.warm_up().await,
            Keys::Hs256(_) => true,
        }
    }

    /// Verifies `token` and says whose it is. Failures are logged at debug
    /// level, without the token; the authenticator counts them
    /// (`tollgate_auth_failures_total{credential="jwt", reason}`).
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, JwtError> {
        let verdict = self.check(token).await;
        if let Err(err) = &verdict {
            tracing::debug!(reason = err.reason(), "refused a JWT");
        }
        verdict
    }

    async fn check(&self, token: &str) -> Result<VerifiedToken, JwtError> {
        let header = token::peek_header(token)?;
        if header.alg != self.inner.algorithm_name {
            return Err(JwtError::WrongAlgorithm);
        }
        match &self.inner.keys {
            Keys::Hs256(key) => self.decode(token, key),
            Keys::Jwks(keys) => {
                let kid = header.kid.filter(|kid| !kid.is_empty()).ok_or(JwtError::MissingKid)?;
                let key = keys.key(&kid).await?;
                self.decode(token, &key)
            }
        }
    }

    /// Signature first, then the registered claims, then ours.
    fn decode(&self, token: &str, key: &DecodingKey) -> Result<VerifiedToken, JwtError> {
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.inner.validation)?;
        data.claims.into_verified(&self.inner.issuer, &self.inner.roles)
    }

    /// The algorithm every accepted token must use.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.algorithm
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    pub fn audience(&self) -> &str {
        &self.inner.audience
    }
}

/// No key material in logs.
impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("JwtVerifier");
        s.field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("algorithm", &self.inner.algorithm);
        if let Keys::Jwks(keys) = &self.inner.keys {
            s.field("jwks_url", &keys.url().as_str())
                .field("cached_keys", &keys.cached_keys());
        }
        s.finish()
    }
}
