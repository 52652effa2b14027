//! Nothing acknowledged is lost: a real `tollgate serve` process is killed
//! with SIGKILL (or stopped with SIGTERM) and restarted on the same
//! database, SQLite and Postgres.

mod common;

use common::{ADMIN, Backend, TestDb};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

const FLUSH_MS: u64 = 100;

/// A node process.
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
            .args(["--flush-interval-ms", &FLUSH_MS.to_string()])
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
        for _ in 0..200 {
            if let Ok(r) = p.client.get(format!("{}/readyz", p.base)).send().await
                && r.status() == 200
            {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node did not become ready");
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.json().await.expect("json"))
    }

    async fn status(&self, user: &str) -> Value {
        let r = self
            .client
            .get(format!("{}/v1/status?user_id={user}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("request");
        r.json().await.expect("json")
    }

    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    fn sigterm(mut self) -> std::process::ExitStatus {
        // SAFETY: sending a signal to our own child process id.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM sent");
        self.child.wait().expect("wait")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spent(status: &Value) -> Decimal {
    let text = status["budgets"][0]["spent_usd"].as_str().expect("spent_usd");
    Decimal::from_str(text).expect("decimal")
}

fn used_today(status: &Value) -> u64 {
    status["limits"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["window"] == "day"))
        .and_then(|x| x["used"].as_u64())
        .expect("day window")
}

async fn kill9_loses_no_acknowledged_money(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let node = Proc::start(&db).await;
    // 300 usage events of varied cost, 30 at a time.
    let mut expected = Decimal::ZERO;
    for batch in 0..10 {
        let calls = (0..30).map(|i| {
            let cost = format!("0.{:06}", 1 + batch * 30 + i);
            let body = json!({"event_id": uuid::Uuid::new_v4(), "user_id": "k1", "model": "m",
                              "input_tokens": 1, "output_tokens": 1, "cost_usd": cost.clone()});
            let node = &node;
            async move { (node.post("/v1/usage", body).await, cost) }
        });
        for ((status, reply), cost) in futures::future::join_all(calls).await {
            assert_eq!(status, 200, "{reply}");
            expected += Decimal::from_str(&cost).expect("cost");
        }
    }
    // Counted checks: 4 flushed for sure, then 3 that may be in the last
    // flush interval when the process dies.
    for _ in 0..4 {
        assert_eq!(node.post("/v1/check", json!({"user_id": "k1"})).await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(FLUSH_MS * 4)).await;
    for _ in 0..3 {
        assert_eq!(node.post("/v1/check", json!({"user_id": "k1"})).await.0, 200);
    }
    let before = node.status("k1").await;
    assert_eq!(spent(&before), expected);
    node.kill9();

    let node = Proc::start(&db).await;
    let after = node.status("k1").await;
    assert_eq!(
        spent(&after),
        expected,
        "acknowledged spend survives SIGKILL to the last cent"
    );
    let used = used_today(&after);
    assert!(
        (4..=7).contains(&used),
        "at most one flush interval of counts lost: {used}"
    );
    eprintln!("{backend:?}: spend {expected} intact after SIGKILL; checks counted {used} of 7");

    // Graceful stop: counters are exact.
    for _ in 0..2 {
        assert_eq!(node.post("/v1/check", json!({"user_id": "k1"})).await.0, 200);
    }
    let before = used_today(&node.status("k1").await);
    let exit = node.sigterm();
    assert!(exit.success(), "SIGTERM exits 0: {exit:?}");
    let node = Proc::start(&db).await;
    let after = node.status("k1").await;
    assert_eq!(used_today(&after), before, "graceful stop flushes every count");
    assert_eq!(spent(&after), expected);
    node.kill9();
}
on_both_backends!(kill9_loses_no_acknowledged_money);
