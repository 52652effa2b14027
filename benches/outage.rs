//! A Postgres outage under steady load (issue 16, acceptance 1 and 2).
//!
//! One node (`tollgate serve`, this build's binary, in its own process) on a
//! Postgres server this bench owns (initdb + pg_ctl on a free port, as the
//! `postgres` user when run as root). Steady open-loop load: warm checks
//! (resident users), cold checks (a new user each), usage (a new event
//! each) and `/readyz` polls. Phases: before (`TOLLGATE_BENCH_OUTAGE_BEFORE_S`,
//! default 20), Postgres stopped (`…_DOWN_S`, default 60), after
//! (`…_AFTER_S`, default 20). Per phase and kind: status counts, p50/p99/max
//! latency, 503s without `Retry-After`. Then: how long after Postgres came
//! back the first cold check and usage succeeded; the refused usage is
//! retried (as a client would) and the ledger is checked for every
//! acknowledged event exactly once; the stored request counts are checked
//! against the warm checks admitted (the outage's counts were flushed).
//!
//! `cargo bench --bench outage` (release). Rates: `TOLLGATE_BENCH_OUTAGE_WARM_RPS`
//! (default 1000), cold 20/s, usage 50/s, readyz 10/s.

#[path = "../tests/outage_support/mod.rs"]
mod outage_support;

use hdrhistogram::Histogram;
use outage_support::OwnedPostgres;
use parking_lot::Mutex;
use serde_json::json;
use sqlx::Connection;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const ADMIN: &str = "bench-admin-token-at-least-32-bytes-long";
const WARM_USERS: usize = 200;
/// Requests of one kind in flight at most (a hung kind cannot grow without
/// bound; a request that finds no slot is counted as `skipped`).
const MAX_IN_FLIGHT: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Phase {
    Before,
    Down,
    After,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Warm,
    Cold,
    Usage,
    Readyz,
}

#[derive(Default)]
struct Cell {
    latency_us: Option<Histogram<u64>>,
    statuses: BTreeMap<u16, u64>,
    no_retry_after: u64,
    skipped: u64,
}

#[derive(Default)]
struct Results {
    cells: BTreeMap<(Phase, Kind), Cell>,
    /// Usage events answered 200 / refused, with their costs.
    acknowledged: Vec<Uuid>,
    refused: Vec<Uuid>,
    warm_admitted: u64,
    first_ok_after_return: BTreeMap<Kind, Duration>,
}

struct Shared {
    client: reqwest::Client,
    base: String,
    results: Mutex<Results>,
    phase: Mutex<Phase>,
    returned_at: Mutex<Option<Instant>>,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    run().await;
}

struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl NodeProcess {
    /// SIGTERM and wait: the node flushes its counters on the way out.
    fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

async fn run() {
    let before_s = env_u64("TOLLGATE_BENCH_OUTAGE_BEFORE_S", 20);
    let down_s = env_u64("TOLLGATE_BENCH_OUTAGE_DOWN_S", 60);
    let after_s = env_u64("TOLLGATE_BENCH_OUTAGE_AFTER_S", 20);
    let warm_rps = env_u64("TOLLGATE_BENCH_OUTAGE_WARM_RPS", 1000);
    let Some(pg) = OwnedPostgres::start() else {
        eprintln!("the outage bench needs initdb/pg_ctl (and root to run them as postgres)");
        std::process::exit(2);
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let log = std::fs::File::create(pg.dir().join("node.log")).expect("node log");
    let node = NodeProcess(
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--database-url", &pg.url()])
            .args(["--admin-token", ADMIN])
            .args(["--idle-timeout-s", "3600"])
            .args([
                "--db-timeout-ms",
                &env_u64("TOLLGATE_BENCH_OUTAGE_DB_TIMEOUT_MS", 1000).to_string(),
            ])
            .env("TOLLGATE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the node"),
    );
    let shared = Arc::new(Shared {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(MAX_IN_FLIGHT * 4)
            // A client that gives up after 5 s, like the issue's.
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client"),
        base: format!("http://127.0.0.1:{port}"),
        results: Mutex::new(Results::default()),
        phase: Mutex::new(Phase::Before),
        returned_at: Mutex::new(None),
    });
    setup(&shared).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut drivers = Vec::new();
    for (kind, rps) in [
        (Kind::Warm, warm_rps),
        (Kind::Cold, 20),
        (Kind::Usage, 50),
        (Kind::Readyz, 10),
    ] {
        drivers.push(tokio::spawn(drive(shared.clone(), kind, rps, stop.clone())));
    }
    tokio::time::sleep(Duration::from_secs(before_s)).await;
    *shared.phase.lock() = Phase::Down;
    let stopped = Instant::now();
    let pg = Arc::new(pg);
    let stopping = pg.clone();
    tokio::task::spawn_blocking(move || stopping.stop())
        .await
        .expect("stop postgres");
    let remaining = Duration::from_secs(down_s).saturating_sub(stopped.elapsed());
    tokio::time::sleep(remaining).await;
    let starting = pg.clone();
    tokio::task::spawn_blocking(move || starting.start_again())
        .await
        .expect("start postgres");
    *shared.returned_at.lock() = Some(Instant::now());
    *shared.phase.lock() = Phase::After;
    tokio::time::sleep(Duration::from_secs(after_s)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for d in drivers {
        let _ = d.await;
    }

    // The client's retries of what was refused.
    let refused = std::mem::take(&mut shared.results.lock().refused);
    let mut retried_ok = 0;
    for event in &refused {
        let (status, _, _) = send(&shared, Kind::Usage, Some(*event)).await;
        if status == 200 {
            retried_ok += 1;
            shared.results.lock().acknowledged.push(*event);
        }
    }
    node.stop();
    report(
        &shared,
        &pg,
        refused.len(),
        retried_ok,
        (before_s, down_s, after_s, warm_rps),
    )
    .await;
}

async fn setup(shared: &Shared) {
    for _ in 0..200 {
        if let Ok(r) = shared.client.get(format!("{}/readyz", shared.base)).send().await
            && r.status() == 200
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let put = |path: String, body: serde_json::Value| {
        shared
            .client
            .put(format!("{}{path}", shared.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };
    let r = put(
        "/v1/tiers/bench".into(),
        json!({"daily_limit": 1_000_000_000u64, "monthly_limit": null, "price_monthly_usd": "0"}),
    )
    .await
    .expect("put tier");
    assert!(r.status().is_success(), "tier: {}", r.status());
    for i in 0..WARM_USERS {
        let r = put(format!("/v1/users/warm{i}"), json!({"tier": "bench"}))
            .await
            .expect("put user");
        assert!(r.status().is_success(), "user: {}", r.status());
        let (status, _, _) = send(shared, Kind::Warm, Some(Uuid::from_u128(i as u128))).await;
        assert_eq!(status, 200, "warming warm{i}");
    }
}

/// One request of `kind`; `pick` chooses the warm user or the usage event.
async fn send(shared: &Shared, kind: Kind, pick: Option<Uuid>) -> (u16, bool, Duration) {
    let pick = pick.unwrap_or_else(Uuid::new_v4);
    let request = match kind {
        Kind::Warm => shared
            .client
            .post(format!("{}/v1/check", shared.base))
            .bearer_auth(ADMIN)
            .json(&json!({"user_id": format!("warm{}", pick.as_u128() % WARM_USERS as u128)})),
        Kind::Cold => shared
            .client
            .post(format!("{}/v1/check", shared.base))
            .bearer_auth(ADMIN)
            .json(&json!({"user_id": format!("cold-{}", pick.simple())})),
        Kind::Usage => shared
            .client
            .post(format!("{}/v1/usage", shared.base))
            .bearer_auth(ADMIN)
            .json(
                &json!({"event_id": pick, "user_id": format!("warm{}", pick.as_u128() % WARM_USERS as u128),
                          "model": "m1", "input_tokens": 1, "output_tokens": 1, "cost_usd": "0.001"}),
            ),
        Kind::Readyz => shared.client.get(format!("{}/readyz", shared.base)),
    };
    let started = Instant::now();
    match request.send().await {
        Ok(r) => {
            let retry_after = r.headers().contains_key("retry-after");
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            (status, retry_after, started.elapsed())
        }
        // 0: no answer within the client's 5 s.
        Err(_) => (0, false, started.elapsed()),
    }
}

async fn drive(shared: Arc<Shared>, kind: Kind, rps: u64, stop: Arc<std::sync::atomic::AtomicBool>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rps.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        ticker.tick().await;
        let phase = *shared.phase.lock();
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared.results.lock().cells.entry((phase, kind)).or_default().skipped += 1;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let event = Uuid::new_v4();
            let (status, retry_after, took) = send(&shared, kind, Some(event)).await;
            drop(permit);
            let returned_at = *shared.returned_at.lock();
            let mut results = shared.results.lock();
            let cell = results.cells.entry((phase, kind)).or_default();
            cell.latency_us
                .get_or_insert_with(|| Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram"))
                .saturating_record(took.as_micros() as u64);
            *cell.statuses.entry(status).or_default() += 1;
            if status == 503 && !retry_after {
                cell.no_retry_after += 1;
            }
            if status == 200 {
                if let Some(at) = returned_at
                    && phase == Phase::After
                {
                    let since = (Instant::now() - took).saturating_duration_since(at);
                    results.first_ok_after_return.entry(kind).or_insert(since);
                }
                match kind {
                    Kind::Warm => results.warm_admitted += 1,
                    Kind::Usage => results.acknowledged.push(event),
                    _ => {}
                }
            } else if kind == Kind::Usage {
                results.refused.push(event);
            }
        });
    }
    // Let the last requests land.
    let _ = slots.acquire_many(MAX_IN_FLIGHT as u32).await;
}

async fn report(
    shared: &Shared,
    pg: &OwnedPostgres,
    refused: usize,
    retried_ok: usize,
    settings: (u64, u64, u64, u64),
) {
    let (before_s, down_s, after_s, warm_rps) = settings;
    let results = std::mem::take(&mut *shared.results.lock());
    println!(
        "outage bench: before {before_s}s, Postgres down {down_s}s, after {after_s}s; warm {warm_rps}/s over {WARM_USERS} users, cold 20/s, usage 50/s, readyz 10/s"
    );
    println!(
        "phase   kind    statuses                          p50 ms    p99 ms    max ms  503-no-Retry-After skipped"
    );
    for ((phase, kind), cell) in &results.cells {
        let (p50, p99, max) = cell
            .latency_us
            .as_ref()
            .map(|h| {
                (
                    h.value_at_quantile(0.5) as f64 / 1000.0,
                    h.value_at_quantile(0.99) as f64 / 1000.0,
                    h.max() as f64 / 1000.0,
                )
            })
            .unwrap_or_default();
        let statuses: Vec<String> = cell.statuses.iter().map(|(s, n)| format!("{s}:{n}")).collect();
        println!(
            "{:<7} {:<7} {:<32} {:>8.2} {:>9.2} {:>9.2} {:>6} {:>14}",
            format!("{phase:?}"),
            format!("{kind:?}"),
            statuses.join(" "),
            p50,
            p99,
            max,
            cell.no_retry_after,
            cell.skipped
        );
    }
    for (kind, since) in &results.first_ok_after_return {
        println!(
            "first 200 for {kind:?} after Postgres returned: {:.0} ms",
            since.as_secs_f64() * 1000.0
        );
    }
    println!("usage refused during the run: {refused}; retried afterwards with the same event_id: {retried_ok} ok");

    let mut conn = sqlx::PgConnection::connect(&pg.url()).await.expect("connect");
    let rows: Vec<(Uuid, i64)> = sqlx::query_as("SELECT event_id, COUNT(*) FROM model_usage GROUP BY event_id")
        .fetch_all(&mut conn)
        .await
        .expect("ledger");
    let in_ledger: std::collections::HashMap<Uuid, i64> = rows.into_iter().collect();
    let missing = results
        .acknowledged
        .iter()
        .filter(|e| !in_ledger.contains_key(e))
        .count();
    let twice = in_ledger.values().filter(|n| **n != 1).count();
    println!(
        "ledger: {} acknowledged events, {missing} missing, {twice} rows recorded more than once, {} rows in all",
        results.acknowledged.len(),
        in_ledger.len()
    );
    let counted: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(count), 0)::int8 FROM entity_counters WHERE entity LIKE 'user:warm%' AND window_kind = 'day'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("counters");
    let admitted = results.warm_admitted + WARM_USERS as u64;
    println!("warm request counts: {admitted} admitted (with the warm-up), {counted} stored");
}
