//! `kill -9` in the middle of a usage load: a real `tollgate serve` takes
//! concurrent usage events (64 in flight, 200 users), is killed with
//! SIGKILL while commits are in flight, and restarted on the same
//! database. Every acknowledged event id is in the ledger exactly once,
//! no id is there twice, `spend = SUM(ledger)` for every entity, and the
//! events whose answers were lost are recorded once when the client
//! retries them. SQLite and Postgres.

mod common;

use common::{ADMIN, Backend, TestDb};
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::Connection;
use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Concurrent clients.
const IN_FLIGHT: usize = 64;
const USERS: usize = 200;
/// Acknowledgements to wait for before the kill: enough for many batches
/// to have committed while more are in flight.
const ACKED_BEFORE_KILL: usize = 3000;

struct Node {
    child: Child,
    base: String,
}

impl Node {
    async fn start(db: &TestDb, client: &reqwest::Client) -> Node {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", &db.url, "--admin-token", ADMIN])
            .env("TOLLGATE_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tollgate");
        let node = Node {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..400 {
            if let Ok(r) = client.get(format!("{}/readyz", node.base)).send().await
                && r.status() == 200
            {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node did not become ready");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An event as the client sends it.
#[derive(Clone)]
struct Event {
    id: Uuid,
    user: usize,
    cost: String,
}

impl Event {
    fn body(&self) -> serde_json::Value {
        json!({"event_id": self.id, "user_id": format!("k{}", self.user), "model": "m",
               "input_tokens": 1, "output_tokens": 1, "cost_usd": self.cost})
    }
}

/// What the clients saw: acknowledged ids, and ids whose answer was lost.
#[derive(Default)]
struct Seen {
    acked: Vec<Uuid>,
    new: HashMap<Uuid, usize>,
    lost: Vec<Event>,
}

async fn post(client: &reqwest::Client, base: &str, event: &Event) -> Option<serde_json::Value> {
    let r = client
        .post(format!("{base}/v1/usage"))
        .bearer_auth(ADMIN)
        .json(&event.body())
        .send()
        .await
        .ok()?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.ok()?;
    assert!(
        status == 200 || status == 503,
        "only 200 (or 503 while the store is unreachable) is expected: {status} {body}"
    );
    (status == 200).then_some(body)
}

async fn kill9_under_load_loses_and_doubles_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let node = Node::start(&db, &client).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..IN_FLIGHT {
        let (client, base, seen, stop) = (client.clone(), node.base.clone(), seen.clone(), stop.clone());
        workers.spawn(async move {
            let mut i = 0usize;
            // Bounded: the kill comes long before this many.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && i < 2000 {
                let event = Event {
                    id: Uuid::new_v4(),
                    user: (w * 7 + i) % USERS,
                    cost: format!("0.{:06}", 1 + (w * 2000 + i) % 999_999),
                };
                i += 1;
                match post(&client, &base, &event).await {
                    Some(body) => {
                        let mut seen = seen.lock().expect("lock");
                        seen.acked.push(event.id);
                        if body["duplicate"] == false {
                            *seen.new.entry(event.id).or_default() += 1;
                        }
                    }
                    None => {
                        seen.lock().expect("lock").lost.push(event);
                        return;
                    }
                }
            }
        });
    }
    for _ in 0..1200 {
        if seen.lock().expect("lock").acked.len() >= ACKED_BEFORE_KILL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut node = node;
    node.child.kill().expect("SIGKILL");
    let _ = node.child.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while workers.join_next().await.is_some() {}
    drop(node);

    let (acked, lost) = {
        let seen = seen.lock().expect("lock");
        assert!(
            seen.acked.len() >= ACKED_BEFORE_KILL,
            "only {} events acknowledged before the kill",
            seen.acked.len()
        );
        assert!(
            seen.new.values().all(|&n| n == 1),
            "an event was answered `duplicate: false` twice"
        );
        (seen.acked.clone(), seen.lost.clone())
    };
    assert!(!lost.is_empty(), "the kill cut no request: it did not land under load");

    let ledger = ledger_rows(&db.url).await;
    let mut counts: HashMap<Uuid, usize> = HashMap::new();
    for (id, _, _) in &ledger {
        *counts.entry(*id).or_default() += 1;
    }
    assert!(counts.values().all(|&n| n == 1), "an event id is in the ledger twice");
    let missing = acked.iter().filter(|id| !counts.contains_key(id)).count();
    assert_eq!(missing, 0, "{missing} acknowledged events are not in the ledger");
    assert_spend_is_ledger_sum(&db.url, &ledger).await;
    eprintln!(
        "{backend:?}: {} acknowledged before SIGKILL, all in the ledger once; {} answers lost, {} of those committed",
        acked.len(),
        lost.len(),
        lost.iter().filter(|e| counts.contains_key(&e.id)).count()
    );

    // The client retries what it did not hear back about: each is
    // recorded once (answered `duplicate: true` if it had committed).
    let node = Node::start(&db, &client).await;
    for event in &lost {
        let body = post(&client, &node.base, event).await.expect("retry answered");
        assert_eq!(body["duplicate"], json!(counts.contains_key(&event.id)), "{body}");
    }
    drop(node);
    let ledger = ledger_rows(&db.url).await;
    let ids: BTreeSet<Uuid> = ledger.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids.len(), ledger.len(), "an event id is in the ledger twice");
    assert!(
        acked
            .iter()
            .chain(lost.iter().map(|e| &e.id))
            .all(|id| ids.contains(id))
    );
    assert_spend_is_ledger_sum(&db.url, &ledger).await;
}
on_both_backends!(kill9_under_load_loses_and_doubles_nothing);

/// (event id, user, cost) of every ledger row.
async fn ledger_rows(url: &str) -> Vec<(Uuid, String, Decimal)> {
    let rows: Vec<(String, String, String)> = if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::query_as("SELECT event_id::text, user_id, cost_usd::text FROM model_usage")
            .fetch_all(&mut conn)
            .await
            .expect("ledger")
    } else {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
        sqlx::query_as("SELECT event_id, user_id, cost_usd FROM model_usage")
            .fetch_all(&mut conn)
            .await
            .expect("ledger")
    };
    rows.into_iter()
        .map(|(id, user, cost)| {
            (
                Uuid::parse_str(&id).expect("uuid"),
                user,
                Decimal::from_str(&cost).expect("cost"),
            )
        })
        .collect()
}

/// Every spend row equals its user's ledger sum, and every user with
/// ledger rows has a spend row (one period: the test runs in seconds).
async fn assert_spend_is_ledger_sum(url: &str, ledger: &[(Uuid, String, Decimal)]) {
    let mut sums: HashMap<String, Decimal> = HashMap::new();
    for (_, user, cost) in ledger {
        *sums.entry(format!("user:{user}")).or_default() += *cost;
    }
    let spend: Vec<(String, String)> = if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::query_as("SELECT entity, spent_usd::text FROM entity_spend")
            .fetch_all(&mut conn)
            .await
            .expect("spend")
    } else {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
        sqlx::query_as("SELECT entity, spent_usd FROM entity_spend")
            .fetch_all(&mut conn)
            .await
            .expect("spend")
    };
    assert_eq!(spend.len(), sums.len(), "one spend row per charged user");
    for (entity, spent) in spend {
        let spent = Decimal::from_str(&spent).expect("spent");
        let sum = sums.get(&entity).copied().unwrap_or_default();
        assert_eq!(spent.normalize(), sum.normalize(), "{entity}: spend != SUM(ledger)");
    }
}
