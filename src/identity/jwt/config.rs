//! JWT settings: flags with environment fallbacks, all optional. With none
//! of them set, bearer JWTs are simply not accepted.

use super::claims::RoleClaims;
use clap::Args;
use reqwest::Url;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// Least time between two key-set fetches caused by unknown `kid`s: a
/// stream of tokens with made-up `kid`s must not become a stream of
/// requests to the issuer.
pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// A key-set fetch that takes longer than this is abandoned; requests that
/// need it are refused rather than held.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Shorter HS256 secrets are accepted (development) but warned about.
pub const MIN_HS256_SECRET_LEN: usize = 32;

/// How end-user access tokens are verified.
#[derive(Clone, Args)]
pub struct JwtConfig {
    /// Issuer of accepted access tokens, compared exactly with their `iss`
    /// (Auth0: `https://<tenant>.auth0.com/`, trailing slash included).
    /// Setting it enables JWT authentication.
    #[arg(long, env = "TOLLGATE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Audience accepted tokens must name in `aud` (the Auth0 API identifier).
    #[arg(long, env = "TOLLGATE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Where the issuer publishes its RS256 signing keys
    /// [default: <issuer>.well-known/jwks.json]. Must be https, except on
    /// loopback.
    #[arg(long, env = "TOLLGATE_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// Development only: verify HS256 tokens with this shared secret instead
    /// of RS256 tokens against the issuer's keys.
    #[arg(long, env = "TOLLGATE_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<String>,

    /// Also believe the `scope` claim for `tollgate:admin` and the service
    /// permission. Off by default: a scope is what the client asked for,
    /// and without RBAC any user may ask for any scope. Roles come from
    /// `permissions` (Auth0 RBAC) only.
    #[arg(long, env = "TOLLGATE_JWT_ADMIN_FROM_SCOPE")]
    pub jwt_admin_from_scope: bool,

    /// The permission (in `permissions`; in `scope` too with
    /// --jwt-admin-from-scope) that makes a JWT a service credential: it may
    /// record usage and settle reservations for any subject, like a
    /// `service` API key. Give it to your backend's machine-to-machine
    /// client only.
    #[arg(long, env = "TOLLGATE_JWT_SERVICE_PERMISSION", default_value = super::claims::DEFAULT_SERVICE_PERMISSION)]
    pub jwt_service_permission: String,

    /// Least time between two key-set fetches caused by unknown `kid`s
    /// (not a flag; tests shorten it).
    #[arg(skip = DEFAULT_MIN_REFETCH_INTERVAL)]
    pub jwks_min_refetch_interval: Duration,

    /// Timeout of one key-set fetch (not a flag; tests shorten it).
    #[arg(skip = DEFAULT_FETCH_TIMEOUT)]
    pub jwks_fetch_timeout: Duration,
}

/// A JWT configuration that cannot work. Reported at startup, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtConfigError {
    #[error("JWT authentication is configured but --jwt-issuer (TOLLGATE_JWT_ISSUER) is not set")]
    MissingIssuer,
    #[error("JWT authentication is configured but --jwt-audience (TOLLGATE_JWT_AUDIENCE) is not set")]
    MissingAudience,
    #[error("--jwks-url and --jwt-hs256-secret exclude each other (HS256 mode fetches no keys)")]
    ConflictingModes,
    #[error("the JWKS URL `{0}` is not a valid URL")]
    BadJwksUrl(String),
    #[error("the JWKS URL `{0}` must use https (plain http is allowed on loopback only)")]
    InsecureJwksUrl(String),
    #[error("cannot build the HTTP client for JWKS fetches: {0}")]
    HttpClient(String),
    #[error("--jwt-service-permission must be one word, other than `tollgate:admin`")]
    BadServicePermission,
}

/// Where verification keys come from.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum KeyMode {
    Jwks(Url),
    Hs256(Vec<u8>),
}

/// The secret stays out of logs.
impl fmt::Debug for KeyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMode::Jwks(url) => f.debug_tuple("Jwks").field(&url.as_str()).finish(),
            KeyMode::Hs256(_) => f.debug_tuple("Hs256").field(&"[redacted]").finish(),
        }
    }
}

/// A checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Resolved {
    pub issuer: String,
    pub audience: String,
    pub mode: KeyMode,
    pub roles: RoleClaims,
}

impl JwtConfig {
    /// JWT authentication off (tests, benches).
    pub fn disabled() -> Self {
        JwtConfig {
            jwt_issuer: None,
            jwt_audience: None,
            jwks_url: None,
            jwt_hs256_secret: None,
            jwt_admin_from_scope: false,
            jwt_service_permission: super::claims::DEFAULT_SERVICE_PERMISSION.to_string(),
            jwks_min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
            jwks_fetch_timeout: DEFAULT_FETCH_TIMEOUT,
        }
    }

    /// Whether any JWT setting is present (valid or not).
    pub fn is_enabled(&self) -> bool {
        [
            &self.jwt_issuer,
            &self.jwt_audience,
            &self.jwks_url,
            &self.jwt_hs256_secret,
        ]
        .into_iter()
        .any(|v| present(v).is_some())
    }

    /// Checks the settings without building anything: issuer and audience
    /// are required as soon as any JWT setting is given.
    pub fn validate(&self) -> Result<(), JwtConfigError> {
        self.resolve().map(|_| ())
    }

    pub(super) fn resolve(&self) -> Result<Option<Resolved>, JwtConfigError> {
        if !self.is_enabled() {
            return Ok(None);
        }
        let issuer = present(&self.jwt_issuer).ok_or(JwtConfigError::MissingIssuer)?;
        let audience = present(&self.jwt_audience).ok_or(JwtConfigError::MissingAudience)?;
        // The secret is used byte for byte, untrimmed.
        let secret = self.jwt_hs256_secret.as_deref().filter(|s| !s.trim().is_empty());
        let mode = match (secret, present(&self.jwks_url)) {
            (Some(_), Some(_)) => return Err(JwtConfigError::ConflictingModes),
            (Some(secret), None) => KeyMode::Hs256(secret.as_bytes().to_vec()),
            (None, Some(url)) => KeyMode::Jwks(parse_jwks_url(url)?),
            (None, None) => KeyMode::Jwks(parse_jwks_url(&default_jwks_url(issuer))?),
        };
        let service_permission = self.jwt_service_permission.trim();
        if service_permission.is_empty() || service_permission.contains(char::is_whitespace) {
            return Err(JwtConfigError::BadServicePermission);
        }
        if service_permission == super::claims::ADMIN_PERMISSION {
            return Err(JwtConfigError::BadServicePermission);
        }
        Ok(Some(Resolved {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            mode,
            roles: RoleClaims {
                service_permission: service_permission.to_string(),
                from_scope: self.jwt_admin_from_scope,
            },
        }))
    }
}

/// Secrets never reach logs: `ServeConfig` is `Debug`.
impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwks_url", &self.jwks_url)
            .field(
                "jwt_hs256_secret",
                &self.jwt_hs256_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("jwt_admin_from_scope", &self.jwt_admin_from_scope)
            .field("jwt_service_permission", &self.jwt_service_permission)
            .field("jwks_min_refetch_interval", &self.jwks_min_refetch_interval)
            .field("jwks_fetch_timeout", &self.jwks_fetch_timeout)
            .finish()
    }
}

/// An empty value (say `TOLLGATE_JWT_ISSUER=` in a compose file) counts as
/// unset.
fn present(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// `<issuer>.well-known/jwks.json`, with exactly one slash between: Auth0
/// issuers end with `/`, others often do not.
pub fn default_jwks_url(issuer: &str) -> String {
    if issuer.ends_with('/') {
        format!("{issuer}.well-known/jwks.json")
    } else {
        format!("{issuer}/.well-known/jwks.json")
    }
}

/// Keys fetched over plain http could be replaced by anyone on the path, so
/// http is allowed only to this machine (tests, a local mock issuer).
fn parse_jwks_url(text: &str) -> Result<Url, JwtConfigError> {
    let url = Url::parse(text).map_err(|_| JwtConfigError::BadJwksUrl(text.to_string()))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(JwtConfigError::InsecureJwksUrl(text.to_string())),
        _ => Err(JwtConfigError::BadJwksUrl(text.to_string())),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let unbracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.eq_ignore_ascii_case("localhost") || unbracketed.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(issuer: Option<&str>, audience: Option<&str>, jwks: Option<&str>, secret: Option<&str>) -> JwtConfig {
        JwtConfig {
            jwt_issuer: issuer.map(str::to_string),
            jwt_audience: audience.map(str::to_string),
            jwks_url: jwks.map(str::to_string),
            jwt_hs256_secret: secret.map(str::to_string),
            ..JwtConfig::disabled()
        }
    }

    #[test]
    fn disabled_resolves_to_nothing() {
        assert_eq!(JwtConfig::disabled().resolve(), Ok(None));
        assert_eq!(config(Some(" "), Some(""), None, None).resolve(), Ok(None));
    }

    #[test]
    fn issuer_and_audience_are_required() {
        let missing_issuer = config(None, Some("api"), None, None);
        assert_eq!(missing_issuer.validate(), Err(JwtConfigError::MissingIssuer));
        let missing_audience = config(Some("https://t.auth0.com/"), None, None, None);
        assert_eq!(missing_audience.validate(), Err(JwtConfigError::MissingAudience));
        let secret_only = config(None, None, None, Some("s"));
        assert_eq!(secret_only.validate(), Err(JwtConfigError::MissingIssuer));
        let url_only = config(None, None, Some("https://x/jwks"), None);
        assert_eq!(url_only.validate(), Err(JwtConfigError::MissingIssuer));
    }

    #[test]
    fn default_jwks_url_minds_the_slash() {
        for issuer in ["https://t.auth0.com/", "https://t.auth0.com"] {
            let resolved = config(Some(issuer), Some("api"), None, None).resolve();
            let Ok(Some(Resolved {
                mode: KeyMode::Jwks(url),
                ..
            })) = resolved
            else {
                panic!("not JWKS mode: {issuer}");
            };
            assert_eq!(url.as_str(), "https://t.auth0.com/.well-known/jwks.json");
        }
    }

    #[test]
    fn jwks_url_must_be_https_unless_loopback() {
        let with_url = |url| config(Some("https://i/"), Some("a"), Some(url), None).validate();
        assert_eq!(with_url("https://i/keys"), Ok(()));
        assert_eq!(with_url("http://127.0.0.1:9/keys"), Ok(()));
        assert_eq!(with_url("http://[::1]:9/keys"), Ok(()));
        assert_eq!(with_url("http://localhost/keys"), Ok(()));
        assert!(matches!(
            with_url("http://i/keys"),
            Err(JwtConfigError::InsecureJwksUrl(_))
        ));
        assert!(matches!(with_url("not a url"), Err(JwtConfigError::BadJwksUrl(_))));
        assert!(matches!(with_url("ftp://i/keys"), Err(JwtConfigError::BadJwksUrl(_))));
    }

    #[test]
    fn hs256_mode_excludes_jwks() {
        let hs = config(Some("https://i/"), Some("a"), None, Some("secret")).resolve();
        assert!(matches!(
            hs,
            Ok(Some(Resolved {
                mode: KeyMode::Hs256(_),
                ..
            }))
        ));
        let both = config(Some("https://i/"), Some("a"), Some("https://i/k"), Some("secret"));
        assert_eq!(both.validate(), Err(JwtConfigError::ConflictingModes));
    }

    #[test]
    fn flags_parse_and_unflagged_fields_keep_defaults() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            jwt: JwtConfig,
        }
        let cli = Cli::try_parse_from([
            "tollgate",
            "--jwt-issuer",
            "https://t.auth0.com/",
            "--jwt-audience",
            "api",
            "--jwks-url",
            "https://t.auth0.com/keys",
        ]);
        let Ok(Cli { jwt }) = cli else {
            panic!("flags did not parse")
        };
        assert_eq!(jwt.jwt_issuer.as_deref(), Some("https://t.auth0.com/"));
        assert_eq!(jwt.jwt_audience.as_deref(), Some("api"));
        assert_eq!(jwt.jwks_url.as_deref(), Some("https://t.auth0.com/keys"));
        assert_eq!(jwt.jwks_min_refetch_interval, DEFAULT_MIN_REFETCH_INTERVAL);
        assert_eq!(jwt.jwks_fetch_timeout, DEFAULT_FETCH_TIMEOUT);
        assert!(Cli::try_parse_from(["tollgate", "--jwt-hs256-secret", "s"]).is_ok());
    }

    #[test]
    fn debug_hides_the_secret() {
        let shown = format!("{:?}", config(Some("https://i/"), Some("a"), None, Some("hunter2")));
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
