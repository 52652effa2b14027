//! Test harness: a real node on loopback over a real database.
#![allow(dead_code)]

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use sqlx::Connection;
use std::sync::Arc;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tollgate::config::ServeConfig;
use tollgate::http::AppState;
use tollgate::node::{Node, NodeError};
use tollgate::router::LocalEntities;

/// At least 32 characters: shorter admin tokens refuse to start.
pub const ADMIN: &str = "test-admin-token-0123456789abcdef";

/// The HS256 secret of [`TestNode::start_with_jwt`] nodes.
pub const JWT_SECRET: &str = "test-jwt-secret-at-least-32-bytes-long!";
pub const JWT_ISSUER: &str = "https://tollgate-test.example/";
pub const JWT_AUDIENCE: &str = "https://api.tollgate.test";

/// A valid HS256 access token for `sub` (an hour from now).
pub fn user_token(sub: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = serde_json::json!({
        "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "sub": sub, "iat": now, "exp": now + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("sign")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database for one test: its URL, and the temp dir keeping a SQLite
/// file alive. None for Postgres when TOLLGATE_TEST_DATABASE_URL is unset.
pub struct TestDb {
    pub url: String,
    _dir: Option<TempDir>,
    /// (server URL, database name) of a Postgres database to drop.
    postgres: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((base, name)) = self.postgres.take() else {
            return;
        };
        // Drop runs inside the test's runtime; do the async work on a
        // thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&base).await.ok()?;
                // `name` is generated from hex digits only.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop a test database (harmless)");
        }
    }
}

impl TestDb {
    /// A database the test owns and manages itself (the outage tests' own
    /// Postgres server, a SQLite file on a small filesystem).
    pub fn at(url: String) -> TestDb {
        TestDb {
            url,
            _dir: None,
            postgres: None,
        }
    }

    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("tollgate.db").display());
                Some(TestDb {
                    url,
                    _dir: Some(dir),
                    postgres: None,
                })
            }
            Backend::Postgres => {
                let Ok(base) = std::env::var("TOLLGATE_TEST_DATABASE_URL") else {
                    // CI always sets it: there a missing database is a
                    // failure, never a silent skip.
                    assert!(
                        std::env::var("CI").is_err(),
                        "CI is set but TOLLGATE_TEST_DATABASE_URL is not: the Postgres tests cannot run"
                    );
                    eprintln!("TOLLGATE_TEST_DATABASE_URL unset: skipping Postgres");
                    return None;
                };
                let name = format!("tollgate_t_{}", uuid::Uuid::new_v4().simple());
                let mut admin = sqlx::PgConnection::connect(&base)
                    .await
                    .unwrap_or_else(|e| panic!("cannot connect to {base}: {e}"));
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .expect("create test database");
                let mut url = url::Url::parse(&base).expect("TOLLGATE_TEST_DATABASE_URL is a URL");
                url.set_path(&format!("/{name}"));
                Some(TestDb {
                    url: url.to_string(),
                    _dir: None,
                    postgres: Some((base, name)),
                })
            }
        }
    }
}

/// Generates `<name>::sqlite` and `<name>::postgres` tests from
/// `async fn <name>(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::Backend::Postgres).await;
            }
        }
    };
}

/// A node serving HTTP on a loopback port, in this process.
pub struct TestNode {
    pub base: String,
    /// `http://…` of the `--ops-listen` listener, when configured.
    pub ops_base: Option<String>,
    pub client: reqwest::Client,
    pub state: Arc<AppState>,
    pub entities: Arc<LocalEntities>,
    shutdown: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<Result<(), NodeError>>>,
}

impl TestNode {
    pub async fn start(db: &TestDb) -> TestNode {
        Self::start_with(db, |_| {}).await
    }

    pub async fn start_with(db: &TestDb, tweak: impl FnOnce(&mut ServeConfig)) -> TestNode {
        let mut config = ServeConfig::for_database(&db.url);
        config.admin_token = Some(ADMIN.to_string());
        tweak(&mut config);
        let node = Node::start(&config).await.expect("node starts");
        let state = node.state().clone();
        let entities = node.entities().clone();
        let ops_base = node.ops_addr().map(|a| format!("http://{a}"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(node.serve(listener, async {
            let _ = rx.await;
        }));
        TestNode {
            base,
            ops_base,
            // Idle connections are dropped before the node's keep-alive
            // timeout (5 s) closes them under a request.
            client: reqwest::Client::builder()
                .pool_idle_timeout(std::time::Duration::from_secs(3))
                .build()
                .expect("client"),
            state,
            entities,
            shutdown: Some(tx),
            join: Some(join),
        }
    }

    /// A node that accepts HS256 user tokens made by [`user_token`].
    pub async fn start_with_jwt(db: &TestDb) -> TestNode {
        Self::start_with(db, |c| {
            c.jwt.jwt_issuer = Some(JWT_ISSUER.to_string());
            c.jwt.jwt_audience = Some(JWT_AUDIENCE.to_string());
            c.jwt.jwt_hs256_secret = Some(JWT_SECRET.to_string());
        })
        .await
    }

    /// Any request with an optional JSON body, as `token`.
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        self.send(method, path, token, body.map(|b| b.to_string())).await
    }

    /// Graceful stop: in-flight requests finish, counters are flushed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(join) = self.join.take() {
            join.await.expect("serve task").expect("clean shutdown");
        }
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<String>) -> Reply {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, headers, json }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, token, Some(body.to_string()))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::PUT, path, Some(ADMIN), Some(body.to_string()))
            .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(reqwest::Method::DELETE, path, token, None).await
    }

    /// A check by the service credential.
    pub async fn check(&self, body: Value) -> Reply {
        self.post("/v1/check", Some(ADMIN), body).await
    }

    pub async fn usage(&self, body: Value) -> Reply {
        self.post("/v1/usage", Some(ADMIN), body).await
    }

    /// `GET /v1/status?user_id=…` as the service credential.
    pub async fn user_status(&self, user: &str) -> Reply {
        self.get(&format!("/v1/status?user_id={user}"), Some(ADMIN)).await
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The budget entry for `entity`.
    pub fn budget(&self, entity: &str) -> &Value {
        self.json["budgets"]
            .as_array()
            .and_then(|b| b.iter().find(|x| x["entity"] == entity))
            .unwrap_or_else(|| panic!("no budget for {entity} in {}", self.json))
    }

    /// The `used` count of one entity's window.
    pub fn used(&self, entity: &str, window: &str) -> u64 {
        self.json["limits"]
            .as_array()
            .and_then(|l| l.iter().find(|x| x["entity"] == entity && x["window"] == window))
            .and_then(|x| x["used"].as_u64())
            .unwrap_or_else(|| panic!("no {window} limit for {entity} in {}", self.json))
    }
}
