//! JWT verification against a real key set served over loopback HTTP, with
//! RSA keys generated here and tokens signed by `jsonwebtoken` (or crafted
//! by hand where no honest library would produce them).

mod common;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tollgate::identity::jwt::{JwtConfig, JwtConfigError, JwtError, JwtVerifier, VerifiedToken, looks_like_jwt};

const AUDIENCE: &str = "https://api.tollgate.test";
const SUBJECT: &str = "auth0|user-1";
const HS256_SECRET: &str = "a development secret of at least 32 bytes";

// --- keys --------------------------------------------------------------

/// An RSA key pair as a signer and as a published JWK.
struct TestKey {
    kid: &'static str,
    encoding: EncodingKey,
    jwk: Value,
    public_pem: String,
}

/// Two keys, generated once per test binary (2048-bit keygen is slow).
fn keys() -> &'static [TestKey; 2] {
    static KEYS: OnceLock<[TestKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| [generate("key-a"), generate("key-b")])
}

fn key_a() -> &'static TestKey {
    &keys()[0]
}

fn key_b() -> &'static TestKey {
    &keys()[1]
}

fn generate(kid: &'static str) -> TestKey {
    let private = KeyPair::generate(KeySize::Rsa2048).expect("RSA keygen");
    let public = private.public_key();
    let pkcs8: Pkcs8V1Der<'_> = private.as_der().expect("PKCS#8 DER");
    let spki: PublicKeyX509Der<'_> = public.as_der().expect("SPKI DER");
    TestKey {
        kid,
        encoding: EncodingKey::from_rsa_der(pkcs1_from_pkcs8(pkcs8.as_ref())),
        jwk: json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        }),
        public_pem: pem("PUBLIC KEY", spki.as_ref()),
    }
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo`, which is
/// what `EncodingKey::from_rsa_der` takes. AWS-LC writes PKCS#8 only:
/// `SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING key }`.
fn pkcs1_from_pkcs8(der: &[u8]) -> &[u8] {
    /// Splits one DER TLV off `input`: (tag, contents, rest).
    fn tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, first) = (input[0], input[1]);
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let n = usize::from(first & 0x7f);
            let len = input[2..2 + n].iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b));
            (len, 2 + n)
        };
        (tag, &input[header..header + len], &input[header + len..])
    }
    let (_, info, _) = tlv(der);
    let (_, _, rest) = tlv(info); // version
    let (_, _, rest) = tlv(rest); // algorithm identifier
    let (tag, key, _) = tlv(rest);
    assert_eq!(tag, 0x04, "PKCS#8 private key is an OCTET STRING");
    key
}

/// `der` as a PEM block with 64-column lines.
fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

// --- a key-set server --------------------------------------------------

/// Serves a JWKS on 127.0.0.1 and counts the requests it gets.
struct JwksServer {
    base: String,
    state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

struct ServerState {
    jwks: Mutex<Value>,
    requests: AtomicUsize,
    up: AtomicBool,
    /// Held before answering, so that concurrent verifications pile up.
    delay: Mutex<Duration>,
}

impl JwksServer {
    async fn start(jwks: Value) -> JwksServer {
        let state = Arc::new(ServerState {
            jwks: Mutex::new(jwks),
            requests: AtomicUsize::new(0),
            up: AtomicBool::new(true),
            delay: Mutex::new(Duration::ZERO),
        });
        let app = Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JwksServer {
            base: format!("http://{addr}/"),
            state,
            task,
        }
    }

    /// The issuer whose default key URL is this server's.
    fn issuer(&self) -> &str {
        &self.base
    }

    fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    fn publish(&self, jwks: Value) {
        *self.state.jwks.lock() = jwks;
    }

    fn set_up(&self, up: bool) {
        self.state.up.store(up, Ordering::SeqCst);
    }

    fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock() = delay;
    }

    fn config(&self, min_refetch: Duration) -> JwtConfig {
        JwtConfig {
            jwt_issuer: Some(self.issuer().to_string()),
            jwt_audience: Some(AUDIENCE.to_string()),
            jwks_min_refetch_interval: min_refetch,
            jwks_fetch_timeout: Duration::from_secs(5),
            ..JwtConfig::disabled()
        }
    }

    fn verifier(&self, min_refetch: Duration) -> JwtVerifier {
        JwtVerifier::new(&self.config(min_refetch))
            .expect("valid config")
            .expect("JWT enabled")
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_jwks(State(state): State<Arc<ServerState>>) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let delay = *state.delay.lock();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if !state.up.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let body = state.jwks.lock().clone();
    axum::Json(body).into_response()
}

const LONG: Duration = Duration::from_secs(3600);

// --- tokens ------------------------------------------------------------

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Valid claims for `issuer`, changed by `patch` (a `null` removes a claim).
fn claims(issuer: &str, patch: Value) -> Value {
    let mut claims = json!({
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": SUBJECT,
        "iat": now(),
        "exp": now() + 600,
    });
    if let (Some(claims), Some(patch)) = (claims.as_object_mut(), patch.as_object()) {
        for (name, value) in patch {
            if value.is_null() {
                claims.remove(name);
            } else {
                claims.insert(name.clone(), value.clone());
            }
        }
    }
    claims
}

fn sign_rs256(key: &TestKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign RS256")
}

fn signed(key: &TestKey, claims: &Value) -> String {
    sign_rs256(key, Some(key.kid), claims)
}

fn sign_hs256(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("sign HS256")
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// An unsigned token, as an attacker would write it.
fn alg_none(kid: &str, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64_json(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64_json(claims)
    )
}

/// `token` with its payload replaced by `claims`, signature kept.
fn with_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64_json(claims), parts[2])
}

/// `token` with one bit of its signature flipped (re-encoded canonically).
fn with_flipped_signature_bit(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("signature");
    let middle = signature.len() / 2;
    signature[middle] ^= 0x01;
    format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(signature))
}

async fn accepted(verifier: &JwtVerifier, token: &str) -> VerifiedToken {
    match verifier.verify(token).await {
        Ok(verified) => verified,
        Err(err) => panic!("refused ({err:?}): {token}"),
    }
}

/// The refusal, after checking that its message quotes nothing from the token.
async fn refused(verifier: &JwtVerifier, token: &str) -> JwtError {
    let err = match verifier.verify(token).await {
        Ok(verified) => panic!("accepted {verified:?}"),
        Err(err) => err,
    };
    let message = err.to_string();
    for part in token.split('.').filter(|p| p.len() > 3) {
        assert!(!message.contains(part), "{message:?} quotes the token");
    }
    assert!(!message.contains(SUBJECT), "{message:?} quotes the subject");
    err
}

// --- RS256 against the key set -----------------------------------------

#[tokio::test]
async fn accepts_tokens_signed_with_a_published_key() {
    let server = JwksServer::start(jwks(&[key_a(), key_b()])).await;
    let verifier = server.verifier(LONG);
    assert!(verifier.warm_up().await);
    assert_eq!(server.requests(), 1);

    let iss = server.issuer();
    let verified = accepted(&verifier, &signed(key_a(), &claims(iss, json!({})))).await;
    assert_eq!(
        verified,
        VerifiedToken {
            subject: SUBJECT.to_string(),
            admin: false,
            service: false,
        }
    );
    accepted(&verifier, &signed(key_b(), &claims(iss, json!({})))).await;

    // `aud` as an array containing the audience.
    let aud_array = claims(iss, json!({"aud": ["https://other.test", AUDIENCE]}));
    accepted(&verifier, &signed(key_a(), &aud_array)).await;

    // Within the 60 s leeway on both ends.
    let just_expired = claims(iss, json!({"exp": now() - 30}));
    accepted(&verifier, &signed(key_a(), &just_expired)).await;
    let almost_valid = claims(iss, json!({"nbf": now() + 30}));
    accepted(&verifier, &signed(key_a(), &almost_valid)).await;

    // Known keys never refetch.
    assert_eq!(server.requests(), 1);
}

/// Every kind of bad token, with the error it must get. `iss` is the
/// accepted issuer; tokens are signed with the test keys.
fn forged_tokens(iss: &str) -> Vec<(&'static str, String, JwtError)> {
    let iss = iss.to_string();
    let good = claims(&iss, json!({}));
    let good_token = signed(key_a(), &good);
    vec![
        ("alg none", alg_none(key_a().kid, &good), JwtError::WrongAlgorithm),
        (
            "HS256 keyed with the RSA public key",
            sign_hs256(key_a().public_pem.as_bytes(), Some(key_a().kid), &good),
            JwtError::WrongAlgorithm,
        ),
        (
            "expired beyond leeway",
            signed(key_a(), &claims(&iss, json!({"exp": now() - 120}))),
            JwtError::Expired,
        ),
        (
            "not yet valid beyond leeway",
            signed(key_a(), &claims(&iss, json!({"nbf": now() + 120}))),
            JwtError::NotYetValid,
        ),
        (
            "wrong issuer",
            signed(key_a(), &claims(&iss, json!({"iss": "https://evil.test/"}))),
            JwtError::WrongIssuer,
        ),
        (
            "issuer without its trailing slash",
            signed(key_a(), &claims(&iss, json!({"iss": iss.trim_end_matches('/')}))),
            JwtError::WrongIssuer,
        ),
        (
            "wrong audience",
            signed(key_a(), &claims(&iss, json!({"aud": "https://other.test"}))),
            JwtError::WrongAudience,
        ),
        (
            "audience array without ours",
            signed(key_a(), &claims(&iss, json!({"aud": ["https://other.test"]}))),
            JwtError::WrongAudience,
        ),
        (
            "unknown kid",
            sign_rs256(key_a(), Some("no-such-key"), &good),
            JwtError::UnknownKid,
        ),
        ("no kid", sign_rs256(key_a(), None, &good), JwtError::MissingKid),
        (
            "signed by an unpublished key under a published kid",
            sign_rs256(key_b(), Some(key_a().kid), &good),
            JwtError::BadSignature,
        ),
        (
            "tampered payload",
            with_payload(&good_token, &claims(&iss, json!({"sub": "auth0|someone-else"}))),
            JwtError::BadSignature,
        ),
        (
            "tampered signature",
            with_flipped_signature_bit(&good_token),
            JwtError::BadSignature,
        ),
        (
            "signature stripped",
            format!("{}.", good_token.rsplit_once('.').map(|(m, _)| m).unwrap_or_default()),
            JwtError::BadSignature,
        ),
        (
            "missing exp",
            signed(key_a(), &claims(&iss, json!({"exp": null}))),
            JwtError::MissingClaim("exp"),
        ),
        (
            "missing sub",
            signed(key_a(), &claims(&iss, json!({"sub": null}))),
            JwtError::MissingSubject,
        ),
        (
            "empty sub",
            signed(key_a(), &claims(&iss, json!({"sub": ""}))),
            JwtError::MissingSubject,
        ),
        (
            "overlong sub",
            signed(key_a(), &claims(&iss, json!({"sub": "x".repeat(257)}))),
            JwtError::InvalidSubject,
        ),
        ("garbage", "garbage".to_string(), JwtError::Malformed),
        ("garbage segments", "aaaa.bbbb.cccc".to_string(), JwtError::Malformed),
        ("empty", String::new(), JwtError::Malformed),
        (
            "a tollgate API key",
            "tg_0123456789abcdef".to_string(),
            JwtError::Malformed,
        ),
        (
            "header not JSON",
            format!("{}.{}.", URL_SAFE_NO_PAD.encode("nope"), b64_json(&good)),
            JwtError::Malformed,
        ),
        (
            "oversized",
            format!("{}.{}.sig", "e".repeat(9000), "e"),
            JwtError::Malformed,
        ),
    ]
}

#[tokio::test]
async fn refuses_forged_and_invalid_tokens() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let verifier = server.verifier(LONG);
    assert!(verifier.warm_up().await);
    let iss = server.issuer().to_string();
    let good_token = signed(key_a(), &claims(&iss, json!({})));
    let cases = forged_tokens(&iss);
    for (name, token, expected) in cases {
        let err = refused(&verifier, &token).await;
        assert_eq!(err, expected, "{name}");
    }

    // None of that needed more than the one fetch at startup (the unknown
    // kid was refused without refetching: the interval is an hour).
    assert_eq!(server.requests(), 1);
    accepted(&verifier, &good_token).await;
}

/// Admin and service come from `permissions` (Auth0 RBAC) only: a `scope`
/// is what the client asked for. `--jwt-admin-from-scope` opts in to
/// believing it.
#[tokio::test]
async fn roles_come_from_permissions_not_scope() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let iss = server.issuer();
    let strict = server.verifier(LONG);
    let lenient = JwtVerifier::new(&JwtConfig {
        jwt_admin_from_scope: true,
        ..server.config(LONG)
    })
    .expect("valid config")
    .expect("JWT enabled");
    let roles = |verifier: &JwtVerifier, patch: Value| {
        let token = signed(key_a(), &claims(iss, patch));
        let verifier = verifier.clone();
        async move {
            let v = accepted(&verifier, &token).await;
            (v.admin, v.service)
        }
    };
    let admin_permission = json!({"permissions": ["read:usage", "tollgate:admin"]});
    let admin_scope = json!({"scope": "openid profile tollgate:admin"});
    let service_permission = json!({"permissions": ["tollgate:service"]});
    let service_scope = json!({"scope": "tollgate:service"});
    assert_eq!(roles(&strict, admin_permission.clone()).await, (true, false));
    assert_eq!(roles(&strict, admin_scope.clone()).await, (false, false));
    assert_eq!(roles(&strict, service_permission.clone()).await, (false, true));
    assert_eq!(roles(&strict, service_scope.clone()).await, (false, false));
    assert_eq!(roles(&lenient, admin_permission).await, (true, false));
    assert_eq!(roles(&lenient, admin_scope).await, (true, false));
    assert_eq!(roles(&lenient, service_permission).await, (false, true));
    assert_eq!(roles(&lenient, service_scope).await, (false, true));
    let neither = json!({"permissions": ["read:usage"], "scope": "openid tollgate:administrator"});
    assert_eq!(roles(&lenient, neither).await, (false, false));
    assert_eq!(
        roles(&strict, json!({"permissions": "tollgate:admin"})).await,
        (false, false)
    );
    assert_eq!(roles(&strict, json!({})).await, (false, false));
}

/// Through the API: a JWT whose scope merely asks for `tollgate:admin` is
/// an ordinary user (403 on admin routes); one with the service permission
/// is a service credential (it may name any subject, and
/// `Principal::service_reach` says so); the permission's name is
/// configurable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_and_admin_jwts_through_the_api() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let Some(db) = common::TestDb::new(common::Backend::Sqlite).await else {
        return;
    };
    let node = common::TestNode::start_with(&db, |c| {
        c.jwt = JwtConfig {
            jwt_service_permission: "billing:record".to_string(),
            ..server.config(Duration::ZERO)
        }
    })
    .await;
    let iss = server.issuer().to_string();
    let tier = json!({"daily_limit": 5, "monthly_limit": null, "price_monthly_usd": "0"});

    let scope_admin = signed(key_a(), &claims(&iss, json!({"scope": "tollgate:admin"})));
    let r = node
        .call("PUT", "/v1/tiers/t1", Some(&scope_admin), Some(tier.clone()))
        .await;
    assert_eq!(r.status, 403, "a requested scope made an admin: {}", r.json);
    let rbac_admin = signed(key_a(), &claims(&iss, json!({"permissions": ["tollgate:admin"]})));
    let r = node.call("PUT", "/v1/tiers/t1", Some(&rbac_admin), Some(tier)).await;
    assert_eq!(r.status, 200, "{}", r.json);

    let user = signed(key_a(), &claims(&iss, json!({})));
    let r = node
        .post("/v1/check", Some(&user), json!({"user_id": "someone-else"}))
        .await;
    // Refused as hidden (404), like a subject that does not exist.
    assert!(
        matches!(r.status.as_u16(), 403 | 404),
        "a user JWT named another subject: {}",
        r.json
    );
    let default_name = signed(key_a(), &claims(&iss, json!({"permissions": ["tollgate:service"]})));
    let r = node
        .post("/v1/check", Some(&default_name), json!({"user_id": "someone-else"}))
        .await;
    assert!(
        matches!(r.status.as_u16(), 403 | 404),
        "the configured permission replaces the default: {}",
        r.json
    );
    let service = signed(key_a(), &claims(&iss, json!({"permissions": ["billing:record"]})));
    let r = node
        .post("/v1/check", Some(&service), json!({"user_id": "someone-else"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["limits"][0]["entity"], "user:someone-else", "{}", r.json);

    let mut headers = axum::http::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {service}").parse().expect("header"));
    let principal = node
        .state
        .auth
        .authenticate(&headers, "127.0.0.1:1".parse().expect("addr"))
        .await
        .expect("service JWT");
    assert_eq!(principal.service_reach(), Some(None), "any subject");
    assert!(principal.own_user().is_none(), "a service credential is not a user");
    node.stop().await;
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_without_restart() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let verifier = server.verifier(Duration::ZERO);
    assert!(verifier.warm_up().await);
    let iss = server.issuer();
    accepted(&verifier, &signed(key_a(), &claims(iss, json!({})))).await;

    // The issuer rotates: key B replaces key A.
    server.publish(jwks(&[key_b()]));
    accepted(&verifier, &signed(key_b(), &claims(iss, json!({})))).await;
    assert_eq!(server.requests(), 2);

    // The withdrawn key is gone with the old set.
    let old = signed(key_a(), &claims(iss, json!({})));
    assert_eq!(refused(&verifier, &old).await, JwtError::UnknownKid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tokens_with_a_new_kid_share_one_fetch() {
    let server = JwksServer::start(jwks(&[key_a(), key_b()])).await;
    // Slow answers make the verifications overlap while the fetch is out.
    server.set_delay(Duration::from_millis(200));
    let verifier = server.verifier(LONG);
    let token = signed(key_b(), &claims(server.issuer(), json!({})));

    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let verifier = verifier.clone();
            let token = token.clone();
            tokio::spawn(async move { verifier.verify(&token).await })
        })
        .collect();
    for task in tasks {
        let verified = task.await.expect("task").expect("verified");
        assert_eq!(verified.subject, SUBJECT);
    }
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn unknown_kid_refetches_are_rate_limited() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let iss = server.issuer().to_string();
    let unknown = sign_rs256(key_a(), Some("made-up"), &claims(&iss, json!({})));

    // No startup fetch: the first unknown kid fetches, the next ones may not.
    let verifier = server.verifier(LONG);
    for _ in 0..5 {
        assert_eq!(refused(&verifier, &unknown).await, JwtError::UnknownKid);
    }
    assert_eq!(server.requests(), 1);
    accepted(&verifier, &signed(key_a(), &claims(&iss, json!({})))).await;
    assert_eq!(server.requests(), 1);

    // The interval is what holds them back: without it, each one fetches.
    let eager = server.verifier(Duration::ZERO);
    for _ in 0..3 {
        assert_eq!(refused(&eager, &unknown).await, JwtError::UnknownKid);
    }
    assert_eq!(server.requests(), 4);
}

#[tokio::test]
async fn known_keys_keep_working_while_the_key_set_is_down() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let verifier = server.verifier(Duration::ZERO);
    assert!(verifier.warm_up().await);
    let iss = server.issuer();
    let token = signed(key_a(), &claims(iss, json!({})));

    server.set_up(false);
    accepted(&verifier, &token).await;
    // A new kid cannot be checked while the issuer is down...
    let rotated = signed(key_b(), &claims(iss, json!({})));
    assert_eq!(refused(&verifier, &rotated).await, JwtError::KeysUnavailable);
    assert_eq!(server.requests(), 2);
    // ...and the failed fetch did not throw the cached keys away.
    accepted(&verifier, &token).await;

    server.publish(jwks(&[key_a(), key_b()]));
    server.set_up(true);
    accepted(&verifier, &rotated).await;
    accepted(&verifier, &token).await;
}

#[tokio::test]
async fn a_failed_startup_fetch_is_retried_by_the_first_token() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    server.set_up(false);
    let verifier = server.verifier(LONG);
    assert!(!verifier.warm_up().await);

    server.set_up(true);
    accepted(&verifier, &signed(key_a(), &claims(server.issuer(), json!({})))).await;
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn an_unreachable_key_set_refuses_tokens_without_failing_startup() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let config = JwtConfig {
        jwt_issuer: Some("https://tenant.auth0.test/".to_string()),
        jwt_audience: Some(AUDIENCE.to_string()),
        jwks_url: Some(format!("http://127.0.0.1:{port}/jwks.json")),
        jwks_fetch_timeout: Duration::from_secs(2),
        ..JwtConfig::disabled()
    };
    let verifier = JwtVerifier::new(&config).expect("config").expect("enabled");
    assert!(!verifier.warm_up().await);
    let token = signed(key_a(), &claims("https://tenant.auth0.test/", json!({})));
    assert_eq!(refused(&verifier, &token).await, JwtError::KeysUnavailable);
}

#[tokio::test]
async fn an_explicit_jwks_url_overrides_the_default() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let issuer = "https://tenant.auth0.test/";
    let config = JwtConfig {
        jwt_issuer: Some(issuer.to_string()),
        jwt_audience: Some(AUDIENCE.to_string()),
        jwks_url: Some(format!("{}.well-known/jwks.json", server.base)),
        ..JwtConfig::disabled()
    };
    let verifier = JwtVerifier::new(&config).expect("config").expect("enabled");
    accepted(&verifier, &signed(key_a(), &claims(issuer, json!({})))).await;
    assert_eq!(server.requests(), 1);
}

// --- HS256 (development) -----------------------------------------------

#[tokio::test]
async fn hs256_mode_accepts_its_tokens_and_refuses_rs256() {
    let issuer = "https://dev.tollgate.test/";
    let config = JwtConfig {
        jwt_issuer: Some(issuer.to_string()),
        jwt_audience: Some(AUDIENCE.to_string()),
        jwt_hs256_secret: Some(HS256_SECRET.to_string()),
        ..JwtConfig::disabled()
    };
    let verifier = JwtVerifier::new(&config).expect("config").expect("enabled");
    assert!(verifier.warm_up().await);
    assert_eq!(verifier.algorithm(), Algorithm::HS256);

    let good = claims(issuer, json!({"permissions": ["tollgate:admin"]}));
    let verified = accepted(&verifier, &sign_hs256(HS256_SECRET.as_bytes(), None, &good)).await;
    assert_eq!(
        verified,
        VerifiedToken {
            subject: SUBJECT.to_string(),
            admin: true,
            service: false,
        }
    );

    assert_eq!(
        refused(&verifier, &signed(key_a(), &good)).await,
        JwtError::WrongAlgorithm
    );
    assert_eq!(
        refused(&verifier, &alg_none("k", &good)).await,
        JwtError::WrongAlgorithm
    );
    let other_secret = sign_hs256(b"another secret, also 32 bytes long!", None, &good);
    assert_eq!(refused(&verifier, &other_secret).await, JwtError::BadSignature);
    let expired = sign_hs256(
        HS256_SECRET.as_bytes(),
        None,
        &claims(issuer, json!({"exp": now() - 120})),
    );
    assert_eq!(refused(&verifier, &expired).await, JwtError::Expired);
}

// --- configuration and routing -----------------------------------------

#[test]
fn no_settings_means_no_verifier() {
    assert!(matches!(JwtVerifier::new(&JwtConfig::disabled()), Ok(None)));
    let half = JwtConfig {
        jwt_issuer: Some("https://tenant.auth0.test/".to_string()),
        ..JwtConfig::disabled()
    };
    assert_eq!(
        JwtVerifier::new(&half).map(|v| v.is_some()),
        Err(JwtConfigError::MissingAudience)
    );
}

#[test]
fn looks_like_jwt_routes_bearer_tokens() {
    let token = signed(key_a(), &claims("https://i/", json!({})));
    assert!(looks_like_jwt(&token));
    assert!(looks_like_jwt(&alg_none("k", &json!({}))));
    assert!(!looks_like_jwt("tg_0123456789abcdef"));
    assert!(!looks_like_jwt("not a token"));
}

/// The same through the HTTP API: a node configured with the loopback key
/// set accepts its tokens as the token's user, and answers every forged or
/// invalid one with 401 `invalid_token`; a rotated key set is picked up
/// without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_accepts_good_tokens_and_refuses_forged_ones() {
    let server = JwksServer::start(jwks(&[key_a()])).await;
    let Some(db) = common::TestDb::new(common::Backend::Sqlite).await else {
        return;
    };
    let node = common::TestNode::start_with(&db, |c| c.jwt = server.config(Duration::ZERO)).await;
    let iss = server.issuer().to_string();
    let good = signed(key_a(), &claims(&iss, json!({})));
    let r = node.post("/v1/check", Some(&good), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(r.json["limits"][0]["entity"] == format!("user:{SUBJECT}"), "{}", r.json);

    for (name, token, _) in forged_tokens(&iss) {
        let r = node.post("/v1/check", Some(&token), json!({})).await;
        assert_eq!(r.status, 401, "{name}: {}", r.json);
        assert_eq!(r.json["error"], "invalid_token", "{name}");
    }

    // The issuer rotates its key: tokens with the new kid work at once.
    server.publish(jwks(&[key_b()]));
    let rotated = signed(key_b(), &claims(&iss, json!({})));
    assert_eq!(node.post("/v1/check", Some(&rotated), json!({})).await.status, 200);
    node.stop().await;
}
