//! Alert latency (issue 9, acceptance 2): 1 000 users cross a budget
//! threshold at once; for each, the time from its usage acknowledgement
//! (the `POST /v1/usage` 200 reaching the client) to the webhook receiver
//! answering 2xx to its alert. Target: p50 < 500 ms, p99 < 5 s.
//!
//! One node in this process (`Node::start` + HTTP on loopback), a platform
//! webhook channel to a receiver on loopback (the tests' hand-written
//! HTTP/1.1 receiver), SQLite in a temporary directory, or Postgres when
//! `TOLLGATE_BENCH_DATABASE_URL` is set (use a throw-away database). Users:
//! `TOLLGATE_BENCH_ALERT_USERS` (default 1000).
//!
//! `cargo bench --bench alert_latency` (release), or quicker to build,
//! `cargo bench --bench alert_latency --profile dev` (slower code, so an
//! upper bound). With `TOLLGATE_BENCH_BINARY=target/release/tollgate` the
//! node is that binary in its own process instead (the driver and the
//! receiver stay in this one), and the channel is created through
//! `POST /v1/alert-channels`: a release node without building the bench in
//! release.

#[path = "../tests/receivers/mod.rs"]
mod receivers;

use futures::StreamExt;
use receivers::Receiver;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tollgate::alerts::signature;
use tollgate::config::ServeConfig;
use tollgate::node::Node;
use tollgate::store::{ChannelKind, NewChannel};

const ADMIN: &str = "bench-admin-token-at-least-32-bytes-long";
/// Usage requests in flight at once (the load generator's connections).
const IN_FLIGHT: usize = 200;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let users: usize = std::env::var("TOLLGATE_BENCH_ALERT_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().expect("temp dir");
    let url = std::env::var("TOLLGATE_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("alerts.db").display()));
    let receiver = Receiver::start(vec![]).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let (base, node) = match std::env::var("TOLLGATE_BENCH_BINARY") {
        Ok(binary) => {
            let (base, child) = spawn_node(&binary, &url, &client).await;
            let r = client
                .post(format!("{base}/v1/alert-channels"))
                .bearer_auth(ADMIN)
                .json(&json!({"kind": "webhook", "target": receiver.url("/alerts")}))
                .send()
                .await
                .expect("channel");
            assert_eq!(r.status(), 201, "channel created");
            (base, Running::Process(child))
        }
        Err(_) => {
            let mut config = ServeConfig::for_database(&url);
            config.admin_token = Some(ADMIN.into());
            config.alerts.alerts_allow_private = true;
            let node = Node::start(&config).await.expect("node starts");
            node.state()
                .store
                .create_channel(&NewChannel {
                    id: format!("ach_bench_{}", uuid::Uuid::new_v4().simple()),
                    kind: ChannelKind::Webhook,
                    target: receiver.url("/alerts"),
                    org_id: None,
                    secret: Some(signature::new_secret()),
                    created_by: None,
                })
                .await
                .expect("channel");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let base = format!("http://{}", listener.local_addr().expect("addr"));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let serving = tokio::spawn(node.serve(listener, async {
                let _ = stopped.await;
            }));
            (base, Running::InProcess(stop, serving))
        }
    };

    // Each user gets a $1 budget; then each spends $0.60 (crossing 50 %).
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let ids: Vec<String> = (0..users).map(|i| format!("al{}_{i}", &run_id[..8])).collect();
    futures::stream::iter(ids.iter())
        .for_each_concurrent(IN_FLIGHT, |id| {
            let (client, base) = (&client, &base);
            async move {
                let r = client
                    .put(format!("{base}/v1/users/{id}/budget"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"monthly_budget_usd": "1"}))
                    .send()
                    .await
                    .expect("budget");
                assert_eq!(r.status(), 200, "budget for {id}");
            }
        })
        .await;

    let started = Instant::now();
    let acks: HashMap<String, (Instant, Instant)> = futures::stream::iter(ids.iter())
        .map(|id| {
            let (client, base) = (&client, &base);
            async move {
                let sent = Instant::now();
                let r = client
                    .post(format!("{base}/v1/usage"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"event_id": uuid::Uuid::new_v4(), "user_id": id, "model": "m",
                                  "input_tokens": 1, "output_tokens": 1, "cost_usd": "0.60"}))
                    .send()
                    .await
                    .expect("usage");
                assert_eq!(r.status(), 200, "usage for {id}");
                (format!("user:{id}"), (sent, Instant::now()))
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let acked_in = started.elapsed();

    let deadline = Instant::now() + Duration::from_secs(120);
    while receiver.received().len() < users {
        assert!(
            Instant::now() < deadline,
            "only {} of {users} alerts arrived",
            receiver.received().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_in = started.elapsed();
    let got = receiver.received();
    let mut latencies: Vec<Duration> = Vec::with_capacity(users);
    let mut from_sent: Vec<Duration> = Vec::with_capacity(users);
    let mut early = 0;
    for r in &got {
        let entity = r.json()["entity"].as_str().expect("entity").to_string();
        let (sent, ack) = acks.get(&entity).expect("an alert for a bench user");
        from_sent.push(r.at.saturating_duration_since(*sent));
        // The ledger wakes the dispatcher before the reply goes out, so an
        // alert can arrive before its acknowledgement does: latency 0.
        if r.at < *ack {
            early += 1;
        }
        latencies.push(r.at.saturating_duration_since(*ack));
    }
    latencies.sort();
    from_sent.sort();
    let at = |v: &[Duration], p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    let pct = |p: f64| at(&latencies, p);
    println!(
        "alert_latency: {users} users, backend {}",
        if url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        }
    );
    println!(
        "  usage acknowledged for all in {acked_in:?}; all {} alerts received by {all_in:?}",
        got.len()
    );
    println!(
        "  usage ack -> receiver 2xx: p50 {:?}  p90 {:?}  p99 {:?}  max {:?}  ({early} arrived before their ack)",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        latencies[latencies.len() - 1]
    );
    println!(
        "  usage sent -> receiver 2xx (includes the commit; an upper bound): p50 {:?}  p99 {:?}  max {:?}",
        at(&from_sent, 0.50),
        at(&from_sent, 0.99),
        from_sent[from_sent.len() - 1]
    );
    let p50_ok = pct(0.50) < Duration::from_millis(500);
    let p99_ok = pct(0.99) < Duration::from_secs(5);
    println!("  target p50 < 500 ms: {}; p99 < 5 s: {}", ok(p50_ok), ok(p99_ok));
    match node {
        Running::InProcess(stop, serving) => {
            let _ = stop.send(());
            let _ = serving.await;
        }
        Running::Process(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The node under test.
enum Running {
    InProcess(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<(), tollgate::node::NodeError>>,
    ),
    Process(std::process::Child),
}

/// Starts `binary serve` on a free loopback port and waits until it is ready.
async fn spawn_node(binary: &str, url: &str, client: &reqwest::Client) -> (String, std::process::Child) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = std::process::Command::new(binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--database-url", url])
        .args(["--admin-token", ADMIN, "--alerts-allow-private"])
        .env("TOLLGATE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn the node binary");
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..400 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return (base, child);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{binary} did not become ready");
}

fn ok(b: bool) -> &'static str {
    if b { "met" } else { "MISSED" }
}
