//! The usage mode (`TOLLGATE_BENCH_MODE=usage`): the ledger's throughput
//! over HTTP, on Postgres and on SQLite in one run.
//!
//! Per backend, a fresh database and node, [`USERS`] bench users warmed,
//! then:
//! - a warm-check phase (`oha -c 256 -n <checks>` on `/v1/check`): the
//!   node's CPU per check, the yardstick for the usage path;
//! - `rounds` throughput runs (`oha -c 256 -n <events>` on `/v1/usage`,
//!   each event a fresh random `event_id` and a random user): acknowledged
//!   and unique events/s (unique = new ledger rows), p50/p99, the ledger's
//!   batch sizes (from `/metrics`), and CPU per event for the node and for
//!   the database (`/proc/<pid>/stat`; for Postgres the backends serving
//!   the bench database, and every `postgres` process as a bound);
//! - a fixed-rate run at 80 % of the median round's unique rate
//!   (`-q`, `--latency-correction`): p99;
//! - `spend = SUM(ledger)` for every entity, and no event id twice.
//!
//! oha draws each request's body at random from a file's lines, so event
//! ids are drawn from a file of `TOLLGATE_BENCH_USAGE_LINES` (default
//! 1 000 000) fresh ids: a few percent of requests repeat an id (answered
//! `duplicate: true`, as a client retry is), and the unique rate counts
//! ledger rows, not responses.
//!
//! Knobs: `TOLLGATE_BENCH_USAGE_BACKENDS` (default `postgres,sqlite`),
//! `TOLLGATE_BENCH_USAGE_EVENTS` (default 150 000 requests per round),
//! `TOLLGATE_BENCH_USAGE_CHECKS` (default 100 000), and the shared
//! `TOLLGATE_BENCH_ROUNDS`, `TOLLGATE_BENCH_SECS` (the fixed-rate run),
//! `TOLLGATE_BENCH_NODE_ARGS`.

use crate::api::{setup_users, write_bodies};
use crate::oha::{OhaResult, OhaRun, median_by, run_oha};
use crate::postgres::{FreshDatabase, server_url};
use crate::procs::{
    ChildGuard, find_oha_with_version, free_port, node_command, print_node_warnings, wait_healthy, work_dir_and_runtime,
};
use crate::usage_db::{BenchDb, CpuSample, postgres_pids};
use crate::usage_report::{Metrics, UsageRound, print_backend};
use crate::{ADMIN_TOKEN, Settings, USERS, env_num};
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// Connections, as in the measurement.
pub const USAGE_CONNECTIONS: u32 = 256;

struct UsageSettings {
    backends: Vec<String>,
    events: u64,
    checks: u64,
    lines: usize,
}

pub fn run(settings: &Settings) -> Result<()> {
    let us = UsageSettings {
        backends: std::env::var("TOLLGATE_BENCH_USAGE_BACKENDS")
            .unwrap_or_else(|_| "postgres,sqlite".into())
            .split(',')
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty())
            .collect(),
        events: env_num("TOLLGATE_BENCH_USAGE_EVENTS", 150_000)?,
        checks: env_num("TOLLGATE_BENCH_USAGE_CHECKS", 100_000)?,
        lines: env_num("TOLLGATE_BENCH_USAGE_LINES", 1_000_000)?,
    };
    if us.events == 0 || us.checks == 0 || us.lines == 0 {
        bail!("TOLLGATE_BENCH_USAGE_EVENTS, _CHECKS and _LINES must be positive");
    }
    let (oha, oha_version) = find_oha_with_version()?;
    let (dir, runtime) = work_dir_and_runtime("tollgate-usage-")?;
    println!(
        "tollgate load bench, usage mode: {oha_version}; {} CPUs; work dir {}",
        crate::procs::nproc(),
        dir.path().display()
    );
    let check_bodies = dir.path().join("check-bodies.txt");
    write_bodies(&check_bodies, "u", USERS)?;
    for backend in &us.backends {
        match backend.as_str() {
            "postgres" => {
                let run_id = uuid::Uuid::new_v4().simple().to_string();
                let mut db = runtime.block_on(FreshDatabase::create(&server_url(), &run_id, "usage"))?;
                let bench_db = BenchDb::Postgres {
                    url: db.url().to_string(),
                    name: db.name().to_string(),
                };
                let result = run_backend(settings, &us, &oha, dir.path(), &runtime, &bench_db, &check_bodies);
                runtime.block_on(db.drop_database())?;
                result?;
            }
            "sqlite" => {
                let bench_db = BenchDb::Sqlite {
                    path: dir.path().join("usage.db"),
                };
                run_backend(settings, &us, &oha, dir.path(), &runtime, &bench_db, &check_bodies)?;
            }
            other => bail!("TOLLGATE_BENCH_USAGE_BACKENDS: unknown backend {other:?} (postgres, sqlite)"),
        }
    }
    Ok(())
}

fn run_backend(
    settings: &Settings,
    us: &UsageSettings,
    oha: &Path,
    dir: &Path,
    runtime: &tokio::runtime::Runtime,
    db: &BenchDb,
    check_bodies: &Path,
) -> Result<()> {
    let label = db.label();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(3))
        .build()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let url = match db {
        BenchDb::Postgres { url, .. } => url.clone(),
        BenchDb::Sqlite { path } => format!("sqlite://{}", path.display()),
    };
    let log = dir.join(format!("node-{label}.log"));
    let mut node = ChildGuard::spawn(
        "tollgate node",
        node_command(addr, &url, &settings.node_args),
        log.clone(),
    )?;
    let base = format!("http://{addr}");
    println!("\n## {label}: node pid {} on {addr}, log {}", node.pid(), log.display());
    runtime.block_on(wait_healthy(&client, &base, &mut node))?;
    let started = Instant::now();
    runtime.block_on(setup_users(&client, &base))?;
    println!(
        "setup: {USERS} users warmed in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let oha_run = |path: &str, bodies: &Path, requests: Option<u64>, rate: Option<u32>, tag: &str| {
        run_oha(
            oha,
            &OhaRun {
                url: format!("{base}{path}"),
                bodies,
                connections: USAGE_CONNECTIONS,
                secs: settings.secs,
                requests,
                rate: rate.map(|r| (r, true)),
                out: dir.join(format!("oha-{label}-{tag}.json")),
            },
        )
    };

    // Warm checks: the yardstick.
    oha_run("/v1/check", check_bodies, Some(us.checks / 5), None, "check-warmup")?;
    let before = CpuSample::take(&[node.pid()]);
    let checks = oha_run("/v1/check", check_bodies, Some(us.checks), None, "check")?;
    let check_cpu = before.used_until(&CpuSample::take(&[node.pid()]));
    node.ensure_alive()?;
    let check_us = check_cpu * 1e6 / checks.ok().max(1) as f64;
    println!(
        "warm checks: {:.0} 2xx/s, node CPU {check_us:.1} µs per check ({} non-2xx)",
        checks.ok_per_sec(),
        checks.non_2xx()
    );

    // A short warm-up of the usage path (connections, prepared statements).
    let bodies = dir.join("usage-bodies.txt");
    write_usage_bodies(&bodies, us.lines)?;
    oha_run("/v1/usage", &bodies, Some(us.events / 10), None, "usage-warmup")?;

    let mut rounds = Vec::with_capacity(settings.rounds);
    for round in 1..=settings.rounds {
        write_usage_bodies(&bodies, us.lines)?;
        rounds.push(usage_round(runtime, &client, &base, db, &mut node, || {
            oha_run("/v1/usage", &bodies, Some(us.events), None, &format!("usage-{round}"))
        })?);
    }
    let median = median_by(rounds.clone(), UsageRound::unique_per_sec);
    let rate = ((median.unique_per_sec() * 0.8) as u32).max(1);
    write_usage_bodies(&bodies, us.lines)?;
    let fixed = oha_run("/v1/usage", &bodies, None, Some(rate), "usage-fixed")?;
    node.ensure_alive()?;

    let checked = runtime.block_on(async {
        // Answers that were cut mid-flight have nothing left to commit
        // after a short while: the check reads a quiet database.
        tokio::time::sleep(Duration::from_millis(500)).await;
        db.check_spend().await
    });
    node.stop(Duration::from_secs(30))?;
    print_node_warnings("node", &log);
    print_backend(label, check_us, &rounds, &median, rate, &fixed, &checked);
    checked.map(|_| ())
}

/// One throughput round: CPU and ledger rows around the oha run.
fn usage_round(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    base: &str,
    db: &BenchDb,
    node: &mut ChildGuard,
    run: impl FnOnce() -> Result<OhaResult>,
) -> Result<UsageRound> {
    let backends = runtime.block_on(db.backend_pids())?;
    let all_pg = postgres_pids();
    let rows_before = runtime.block_on(db.ledger_rows())?;
    let metrics_before = runtime.block_on(metrics(client, base))?;
    let node_before = CpuSample::take(&[node.pid()]);
    let backends_before = CpuSample::take(&backends);
    let all_before = CpuSample::take(&all_pg);
    let oha = run()?;
    let node_cpu = node_before.used_until(&CpuSample::take(&[node.pid()]));
    let backends_after = runtime.block_on(db.backend_pids())?;
    let db_cpu = backends_before.used_until(&CpuSample::take(&backends_after));
    let all_cpu = all_before.used_until(&CpuSample::take(&postgres_pids()));
    node.ensure_alive()?;
    let metrics_after = runtime.block_on(metrics(client, base))?;
    let rows_after = runtime.block_on(db.ledger_rows())?;
    let round = UsageRound {
        oha,
        unique: rows_after.saturating_sub(rows_before),
        node_cpu,
        db_cpu: (!backends.is_empty()).then_some(db_cpu),
        all_postgres_cpu: (!all_pg.is_empty() && matches!(db, BenchDb::Postgres { .. })).then_some(all_cpu),
        batches: metrics_after.since(&metrics_before),
    };
    round.print_line();
    Ok(round)
}

async fn metrics(client: &reqwest::Client, base: &str) -> Result<Metrics> {
    let resp = client
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("GET /metrics: HTTP {}", resp.status());
    }
    Ok(Metrics::parse(&resp.text().await?))
}

/// `lines` usage bodies, each a fresh event id, a user out of [`USERS`]
/// and a cost of 1–997 µUSD (so sums are not trivial).
fn write_usage_bodies(path: &Path, lines: usize) -> Result<()> {
    let mut out = BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    for i in 0..lines {
        let id = uuid::Uuid::new_v4();
        let user = (id.as_u128() % USERS as u128) as usize;
        writeln!(
            out,
            "{{\"event_id\":\"{id}\",\"user_id\":\"u{user}\",\"model\":\"bench-model\",\"input_tokens\":120,\
             \"output_tokens\":40,\"cost_usd\":\"0.000{:03}\"}}",
            i % 997 + 1
        )?;
    }
    out.flush()?;
    Ok(())
}
