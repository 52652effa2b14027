//! An acknowledged alert survives `kill -9`: a real `tollgate serve`
//! process is killed while its first delivery attempt hangs (the receiver
//! accepted the connection but never read it), restarted on the same
//! database, and the alert arrives with the delivery's id as `webhook-id`.
//! SQLite and Postgres.

mod common;
mod receivers;

use common::{ADMIN, Backend, TestDb};
use receivers::{Receiver, Reply, until};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tollgate::alerts::signature;
use tollgate::store::{ChannelKind, NewChannel, Store};

struct Proc {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Proc {
    async fn start(db: &TestDb) -> Proc {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", &db.url, "--admin-token", ADMIN])
            // The hanging attempt must outlive the process.
            .args(["--alerts-allow-private", "--alert-timeout-ms", "60000"])
            .args(["--alert-retry-base-ms", "200"])
            .env("TOLLGATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tollgate");
        let p = Proc {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        for _ in 0..400 {
            if let Ok(r) = p.client.get(format!("{}/readyz", p.base)).send().await
                && r.status() == 200
            {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node did not become ready");
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ids of every delivery row, as text.
async fn delivery_ids(db: &TestDb, backend: Backend) -> Vec<(String, i64)> {
    let sql = "SELECT CAST(id AS TEXT), CAST(attempts AS BIGINT) FROM alert_deliveries";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
            let rows = sqlx::query_as::<_, (String, i64)>(sql)
                .fetch_all(&pool)
                .await
                .expect("rows");
            pool.close().await;
            rows
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
            let rows = sqlx::query_as::<_, (String, i64)>(sql)
                .fetch_all(&pool)
                .await
                .expect("rows");
            pool.close().await;
            rows
        }
    }
}

async fn an_acknowledged_alert_survives_kill9(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    // The first connection is accepted and left hanging: the request is
    // never read, so the receiver has not seen the alert when we kill.
    let receiver = Receiver::start(vec![Reply::Stall]).await;
    let secret = signature::new_secret();
    {
        let store = Store::open(&db.url).await.expect("store");
        store
            .create_channel(&NewChannel {
                id: "ach_crash".into(),
                kind: ChannelKind::Webhook,
                target: receiver.url("/crash"),
                org_id: None,
                secret: Some(secret.clone()),
                created_by: None,
            })
            .await
            .expect("channel");
    }
    let node = Proc::start(&db).await;
    let (status, body) = node
        .send(
            reqwest::Method::PUT,
            "/v1/users/carol/budget",
            json!({"monthly_budget_usd": "10"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = node
        .send(
            reqwest::Method::POST,
            "/v1/usage",
            json!({"event_id": uuid::Uuid::new_v4(), "user_id": "carol", "model": "m",
                   "input_tokens": 1, "output_tokens": 1, "cost_usd": "6"}),
        )
        .await;
    assert_eq!(status, 200, "usage acknowledged: {body}");
    until(20, "the first attempt to connect", || receiver.accepted() >= 1).await;
    assert!(receiver.received().is_empty(), "the receiver has not seen it");
    node.kill9();

    let restarted = Proc::start(&db).await;
    until(30, "the alert after the restart", || !receiver.received().is_empty()).await;
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let hook = &got[0];
    assert_eq!(hook.status, 200);
    assert!(signature::verify(
        &secret,
        hook.header("webhook-id"),
        hook.header("webhook-timestamp"),
        &hook.body,
        hook.header("webhook-signature")
    ));
    assert_eq!(hook.json()["threshold_pct"], 50);
    drop(restarted);
    let rows = delivery_ids(&db, backend).await;
    assert_eq!(rows.len(), 1, "one delivery for one alert and one channel");
    assert_eq!(
        hook.header("webhook-id"),
        rows[0].0,
        "the webhook-id is the delivery's id"
    );
    assert_eq!(
        rows[0].1, 2,
        "the attempt cut off by the crash, then the one that arrived"
    );
}
on_both_backends!(an_acknowledged_alert_survives_kill9);
