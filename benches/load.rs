//! End-to-end load benchmark: a release-built `tollgate serve` against a
//! bare axum JSON echo (the floor), both driven by `oha` over loopback.
//!
//! One command: `cargo bench --bench load`. See benches/README.md.
//!
//! - Phase A, throughput: `oha -c 64 -z <secs>` against the floor, then the
//!   node; every request names a random user out of 10 000 (`oha -Z` picks a
//!   random line of a body file per request).
//! - Phase B, latency at a fixed 20 000 req/s (`-q 20000
//!   --latency-correction`), same bodies.
//! - Phase C, memory per resident entity: the node's VmRSS before and after
//!   100 000 new users each make one check.
//!
//! Environment: `TOLLGATE_BENCH_SECS` (default 10) per oha run,
//! `TOLLGATE_BENCH_RATE` (default 20000) for phase B,
//! `TOLLGATE_BENCH_MEM_USERS` (default 100000) for phase C,
//! `TOLLGATE_BENCH_LATENCY_CORRECTION=0` to run phase B without
//! `--latency-correction`, `TOLLGATE_BENCH_NODE_ARGS` for extra
//! whitespace-separated `tollgate serve` arguments (experiments only).
//!
//! The same binary, started with `TOLLGATE_BENCH_ROLE=echo`, is the echo
//! server, so the floor runs in its own process like the node does.

use anyhow::{Context, Result, bail};
use axum::Json;
use axum::routing::{get, post};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::future::Future;
use std::io::{BufWriter, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ROLE_ENV: &str = "TOLLGATE_BENCH_ROLE";
const ECHO_LISTEN_ENV: &str = "TOLLGATE_BENCH_ECHO_LISTEN";
const ADMIN_TOKEN: &str = "bench-admin";
const TIER: &str = "bench";
const USERS: usize = 10_000;
const CONNECTIONS: u32 = 64;
const SETUP_IN_FLIGHT: usize = 32;
const MEM_IN_FLIGHT: usize = 64;
const OHA_INSTALL: &str = "apt-get install -y cmake && cargo install oha --locked";

fn main() -> ExitCode {
    if std::env::var(ROLE_ENV).as_deref() == Ok("echo") {
        return match echo_main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("echo server failed: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    // `cargo bench` passes --bench; `cargo test --benches` does not, and a
    // multi-minute load run has no place in a test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("load: skipped (run it with `cargo bench --bench load`)");
        return ExitCode::SUCCESS;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("\nload bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// The floor: a bare axum JSON echo in its own process.

fn echo_main() -> Result<()> {
    let listen: SocketAddr = std::env::var(ECHO_LISTEN_ENV)
        .context("TOLLGATE_BENCH_ECHO_LISTEN is not set")?
        .parse()
        .context("TOLLGATE_BENCH_ECHO_LISTEN is not an address")?;
    // Same runtime shape as `tollgate serve`: multi-thread, one worker per CPU.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let app = axum::Router::new()
            .route("/echo", post(echo))
            .route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }));
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        axum::serve(listener, app).with_graceful_shutdown(terminated()).await?;
        Ok(())
    })
}

async fn echo(Json(body): Json<serde_json::Value>) -> Json<serde_json::Value> {
    Json(body)
}

async fn terminated() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

// ---------------------------------------------------------------------------
// Child processes that never outlive the bench.

struct ChildGuard {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl ChildGuard {
    fn spawn(name: &'static str, mut command: Command, log: PathBuf) -> Result<ChildGuard> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting the {name}"))?;
        Ok(ChildGuard {
            name,
            child: Some(child),
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Fails (with the tail of its log) if the process has exited.
    fn ensure_alive(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            bail!("the {} was already stopped", self.name);
        };
        if let Some(status) = child.try_wait()? {
            self.child = None;
            bail!("the {} exited ({status}); its log:\n{}", self.name, tail(&self.log, 40));
        }
        Ok(())
    }

    /// SIGTERM, then up to `grace` for a clean exit, then SIGKILL.
    fn stop(&mut self, grace: Duration) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        if child.try_wait()?.is_none() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Some(status) = child.try_wait()? {
                    return Ok(Some(status));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("the {} did not stop within {grace:?} of SIGTERM; killing it", self.name);
            let _ = child.kill();
        }
        Ok(Some(child.wait()?))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop(Duration::from_secs(10));
        }
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------
// The run.

struct Settings {
    secs: u64,
    /// Interleaved floor/node rounds in phases A and B; the round with the
    /// median ratio is reported (this VM's throughput drifts by ±15 %
    /// between runs, so one pair of runs is not a measurement).
    rounds: usize,
    rate: u32,
    mem_users: usize,
    latency_correction: bool,
    node_args: Vec<String>,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

fn run() -> Result<()> {
    let settings = Settings {
        secs: env_num("TOLLGATE_BENCH_SECS", 10)?,
        rounds: env_num("TOLLGATE_BENCH_ROUNDS", 3)?,
        rate: env_num("TOLLGATE_BENCH_RATE", 20_000)?,
        mem_users: env_num("TOLLGATE_BENCH_MEM_USERS", 100_000)?,
        latency_correction: std::env::var("TOLLGATE_BENCH_LATENCY_CORRECTION").map_or(true, |v| v.trim() != "0"),
        node_args: std::env::var("TOLLGATE_BENCH_NODE_ARGS")
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
    };
    if settings.secs == 0 || settings.rate == 0 || settings.mem_users == 0 || settings.rounds == 0 {
        bail!(
            "TOLLGATE_BENCH_SECS, TOLLGATE_BENCH_ROUNDS, TOLLGATE_BENCH_RATE and TOLLGATE_BENCH_MEM_USERS must be positive"
        );
    }
    let oha = find_oha()?;
    let oha_version = command_output(&oha, &["--version"]).unwrap_or_else(|| "oha (version unknown)".into());

    let dir = tempfile::Builder::new()
        .prefix("tollgate-load-")
        .tempdir()
        .context("creating a temporary directory")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(MEM_IN_FLIGHT)
        .build()?;

    // The node.
    let node_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let db = dir.path().join("load.db");
    let mut node_cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    node_cmd
        .arg("serve")
        .args(["--listen", &node_addr.to_string()])
        .args(["--database-url", &format!("sqlite://{}", db.display())])
        .args(["--admin-token", ADMIN_TOKEN])
        // No warm user may passivate during a long run.
        .args(["--idle-timeout-s", "3600"])
        .args(&settings.node_args)
        .env_remove(ROLE_ENV);
    let node_log = dir.path().join("node.log");
    let mut node = ChildGuard::spawn("tollgate node", node_cmd, node_log.clone())?;

    // The floor.
    let echo_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut echo_cmd = Command::new(std::env::current_exe().context("locating the bench binary")?);
    echo_cmd
        .env(ROLE_ENV, "echo")
        .env(ECHO_LISTEN_ENV, echo_addr.to_string());
    let mut echo = ChildGuard::spawn("echo server", echo_cmd, dir.path().join("echo.log"))?;

    let node_url = format!("http://{node_addr}");
    let echo_url = format!("http://{echo_addr}");
    println!(
        "tollgate load bench: {oha_version}; node pid {} on {node_addr}, echo pid {} on {echo_addr}",
        node.pid(),
        echo.pid()
    );
    println!("  work dir {} (node log: {})", dir.path().display(), node_log.display());
    if !settings.node_args.is_empty() {
        println!("  extra node arguments: {}", settings.node_args.join(" "));
    }
    runtime.block_on(wait_healthy(&client, &node_url, &mut node))?;
    runtime.block_on(wait_healthy(&client, &echo_url, &mut echo))?;

    // Tier, users, warm-up.
    let started = Instant::now();
    runtime.block_on(setup_users(&client, &node_url))?;
    println!(
        "setup: tier {TIER:?} + {USERS} users assigned and warmed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    node.ensure_alive()?;

    let bodies = dir.path().join("bodies.txt");
    write_bodies(&bodies, "u", USERS)?;
    let correction = settings.latency_correction;
    let oha_run = |target: &str, secs: u64, rate: Option<u32>, tag: &str| -> Result<OhaResult> {
        let url = if target == "echo" {
            format!("{echo_url}/echo")
        } else {
            format!("{node_url}/v1/check")
        };
        let out = dir.path().join(format!("oha-{tag}-{target}.json"));
        run_oha(&oha, &url, &bodies, secs, rate.map(|r| (r, correction)), &out)
    };

    // Warm-up runs (not reported): first connections, allocator, caches.
    oha_run("echo", 2, None, "warmup")?;
    oha_run("node", 2, None, "warmup")?;
    echo.ensure_alive()?;
    node.ensure_alive()?;

    // Phase A.
    println!(
        "\n## Phase A: throughput (oha -c {CONNECTIONS} -z {}s, POST, random user of {USERS} per request; {} interleaved rounds)\n",
        settings.secs, settings.rounds
    );
    let a_rounds = run_rounds(settings.rounds, |round| {
        let floor = oha_run("echo", settings.secs, None, &format!("a{round}"))?;
        echo.ensure_alive()?;
        let node_result = oha_run("node", settings.secs, None, &format!("a{round}"))?;
        node.ensure_alive()?;
        Ok((floor, node_result))
    })?;
    let ratios: Vec<f64> = a_rounds.iter().map(|(f, n)| n.ok_per_sec() / f.ok_per_sec()).collect();
    let (a_floor, a_node) = median_round(a_rounds, |(f, n)| n.ok_per_sec() / f.ok_per_sec());
    let ratio = a_node.ok_per_sec() / a_floor.ok_per_sec();
    println!(
        "\nnode/floor throughput per round: {}; median {ratio:.2}x  (DESIGN.md §7 target: >= 0.70x; Limitador: 0.77x)",
        ratios.iter().map(|r| format!("{r:.2}x")).collect::<Vec<_>>().join(", ")
    );

    // Phase B.
    println!(
        "\n## Phase B: latency at a fixed rate (oha -c {CONNECTIONS} -q {}{} -z {}s; {} interleaved rounds)\n",
        settings.rate,
        if settings.latency_correction {
            " --latency-correction"
        } else {
            ""
        },
        settings.secs,
        settings.rounds
    );
    let b_rounds = run_rounds(settings.rounds, |round| {
        let floor = oha_run("echo", settings.secs, Some(settings.rate), &format!("b{round}"))?;
        echo.ensure_alive()?;
        let node_result = oha_run("node", settings.secs, Some(settings.rate), &format!("b{round}"))?;
        node.ensure_alive()?;
        Ok((floor, node_result))
    })?;
    let (b_floor, b_node) = median_round(b_rounds, |(_, n)| n.p99.unwrap_or(f64::MAX));
    println!(
        "\nnode p99 at {} req/s (median round): {} ms, floor {} ms  (DESIGN.md §7 target: < 1 ms)",
        settings.rate,
        fmt_ms(b_node.p99),
        fmt_ms(b_floor.p99)
    );

    // Phase C.
    println!(
        "\n## Phase C: memory per resident entity ({} new users, one check each, default tier)\n",
        settings.mem_users
    );
    let mem = runtime.block_on(memory_phase(&client, &node_url, node.pid(), settings.mem_users))?;
    node.ensure_alive()?;
    mem.print();

    // Stop both; the node flushes its counters on SIGTERM.
    let node_status = node.stop(Duration::from_secs(30))?;
    let echo_status = echo.stop(Duration::from_secs(10))?;
    println!(
        "\nstopped: node {}, echo {}",
        node_status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
        echo_status.map(|s| s.to_string()).unwrap_or_else(|| "-".into())
    );
    if node_status.is_some_and(|s| !s.success()) {
        println!(
            "WARNING: the node did not exit cleanly; its log:\n{}",
            tail(&node_log, 40)
        );
    }
    let warnings = node_warnings(&node_log);
    if !warnings.is_empty() {
        println!(
            "\nWARNING: the node logged {} warning/error line(s); first ones:",
            warnings.len()
        );
        for line in warnings.iter().take(10) {
            println!("  {line}");
        }
    }

    print_summary(&settings, &oha_version, &a_floor, &a_node, &b_floor, &b_node, &mem);
    drop(dir);
    Ok(())
}

/// Runs `rounds` interleaved floor/node rounds and prints every run.
fn run_rounds(
    rounds: usize,
    mut round: impl FnMut(usize) -> Result<(OhaResult, OhaResult)>,
) -> Result<Vec<(OhaResult, OhaResult)>> {
    let results = (1..=rounds).map(&mut round).collect::<Result<Vec<_>>>()?;
    let rows: Vec<(String, &OhaResult)> = results
        .iter()
        .enumerate()
        .flat_map(|(i, (f, n))| {
            [
                (format!("round {}: floor, axum echo POST /echo", i + 1), f),
                (format!("round {}: tollgate POST /v1/check", i + 1), n),
            ]
        })
        .collect();
    print_table(&rows.iter().map(|(name, r)| (name.as_str(), *r)).collect::<Vec<_>>());
    Ok(results)
}

/// The round whose `key` is the median (rounds sorted by `key`).
fn median_round(
    mut rounds: Vec<(OhaResult, OhaResult)>,
    key: impl Fn(&(OhaResult, OhaResult)) -> f64,
) -> (OhaResult, OhaResult) {
    rounds.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let mid = rounds.len() / 2;
    rounds.swap_remove(mid)
}

fn find_oha() -> Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("oha")).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/oha"));
    }
    match candidates.into_iter().find(|p| p.is_file()) {
        Some(path) => Ok(path),
        None => {
            eprintln!("oha (the HTTP load generator) is not installed. Install it with:\n\n    {OHA_INSTALL}\n");
            bail!("oha not found on PATH or in ~/.cargo/bin")
        }
    }
}

fn command_output(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

async fn wait_healthy(client: &reqwest::Client, base: &str, child: &mut ChildGuard) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        child.ensure_alive()?;
        if let Ok(resp) = client.get(format!("{base}/healthz")).send().await
            && resp.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the {} did not answer /healthz within 60 s; its log:\n{}",
                child.name,
                tail(&child.log, 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `f(0..n)` with `in_flight` concurrent workers; stops at the first error.
async fn pool<F, Fut>(n: usize, in_flight: usize, f: F) -> Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let next = next.clone();
        let f = f.clone();
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                f(i).await?;
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        result.context("a request worker panicked")??;
    }
    Ok(())
}

async fn expect_ok(resp: reqwest::Response, what: &str) -> Result<serde_json::Value> {
    let status = resp.status();
    let text = resp.text().await.with_context(|| format!("{what}: reading the body"))?;
    if !status.is_success() {
        bail!("{what}: HTTP {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{what}: not JSON: {text}"))
}

async fn setup_users(client: &reqwest::Client, base: &str) -> Result<()> {
    let tier = client
        .put(format!("{base}/v1/tiers/{TIER}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"daily_limit": 1_000_000_000u64, "monthly_limit": null, "price_monthly_usd": "0"}))
        .send()
        .await?;
    expect_ok(tier, "PUT /v1/tiers/bench").await?;

    let (c, b) = (client.clone(), base.to_string());
    pool(USERS, SETUP_IN_FLIGHT, move |i| {
        let (client, base) = (c.clone(), b.clone());
        async move {
            let resp = client
                .put(format!("{base}/v1/users/u{i}"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&serde_json::json!({"tier": TIER}))
                .send()
                .await?;
            expect_ok(resp, &format!("PUT /v1/users/u{i}")).await.map(|_| ())
        }
    })
    .await?;

    let (c, b) = (client.clone(), base.to_string());
    pool(USERS, SETUP_IN_FLIGHT, move |i| {
        let (client, base) = (c.clone(), b.clone());
        async move {
            let resp = client
                .post(format!("{base}/v1/check"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&serde_json::json!({"user_id": format!("u{i}")}))
                .send()
                .await?;
            let body = expect_ok(resp, &format!("warming u{i}")).await?;
            if body["allowed"] != serde_json::json!(true) || body["tier"] != serde_json::json!(TIER) {
                bail!("warming u{i}: expected an allowed check on tier {TIER:?}, got {body}");
            }
            Ok(())
        }
    })
    .await
}

fn write_bodies(path: &Path, prefix: &str, n: usize) -> Result<()> {
    let mut out = BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    for i in 0..n {
        writeln!(out, "{{\"user_id\":\"{prefix}{i}\"}}")?;
    }
    out.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------
// oha.

#[derive(Debug, Clone, Default)]
struct OhaResult {
    secs: f64,
    /// Responses by status code.
    statuses: BTreeMap<u16, u64>,
    /// Client-side errors, without the in-flight requests cut at the deadline.
    errors: BTreeMap<String, u64>,
    /// Seconds.
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
}

impl OhaResult {
    fn responses(&self) -> u64 {
        self.statuses.values().sum()
    }

    fn ok(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    fn non_2xx(&self) -> u64 {
        self.responses() - self.ok()
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn ok_per_sec(&self) -> f64 {
        self.ok() as f64 / self.secs
    }

    fn success_pct(&self) -> f64 {
        let all = self.responses() + self.error_count();
        if all == 0 {
            0.0
        } else {
            100.0 * self.ok() as f64 / all as f64
        }
    }
}

/// `rate`: a fixed rate, and whether to correct for coordinated omission.
fn run_oha(
    oha: &Path,
    url: &str,
    bodies: &Path,
    secs: u64,
    rate: Option<(u32, bool)>,
    out: &Path,
) -> Result<OhaResult> {
    let mut cmd = Command::new(oha);
    cmd.args(["--no-tui", "--no-color", "--output-format", "json"])
        .arg("-o")
        .arg(out)
        .args(["-c", &CONNECTIONS.to_string()])
        .args(["-z", &format!("{secs}s")])
        .args(["-m", "POST"])
        .args(["-T", "application/json"])
        .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .arg("-Z")
        .arg(bodies);
    if let Some((rate, correction)) = rate {
        cmd.args(["-q", &rate.to_string()]);
        if correction {
            cmd.arg("--latency-correction");
        }
    }
    cmd.arg(url);
    let output = cmd.output().with_context(|| format!("running {}", oha.display()))?;
    if !output.status.success() {
        bail!(
            "oha failed ({}) against {url}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = std::fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
    parse_oha(&text).with_context(|| format!("parsing oha's JSON in {}", out.display()))
}

fn parse_oha(text: &str) -> Result<OhaResult> {
    let json: serde_json::Value = serde_json::from_str(text)?;
    let secs = json["summary"]["total"].as_f64().context("summary.total")?;
    let statuses = json["statusCodeDistribution"]
        .as_object()
        .context("statusCodeDistribution")?
        .iter()
        .map(|(k, v)| Ok((k.parse::<u16>()?, v.as_u64().unwrap_or(0))))
        .collect::<Result<BTreeMap<u16, u64>>>()?;
    let errors = json["errorDistribution"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !k.contains("deadline"))
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let p = |key: &str| json["latencyPercentiles"][key].as_f64();
    Ok(OhaResult {
        secs,
        statuses,
        errors,
        p50: p("p50"),
        p90: p("p90"),
        p99: p("p99"),
        p999: p("p99.9"),
    })
}

fn fmt_ms(secs: Option<f64>) -> String {
    match secs {
        Some(s) if s.is_finite() => format!("{:.3}", s * 1000.0),
        _ => "n/a".into(),
    }
}

fn print_table(rows: &[(&str, &OhaResult)]) {
    println!("| target | 2xx req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | success | non-2xx | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, r) in rows {
        println!(
            "| {name} | {:.0} | {} | {} | {} | {} | {:.2} % | {} | {} |",
            r.ok_per_sec(),
            fmt_ms(r.p50),
            fmt_ms(r.p90),
            fmt_ms(r.p99),
            fmt_ms(r.p999),
            r.success_pct(),
            r.non_2xx(),
            r.error_count()
        );
    }
    for (name, r) in rows {
        let odd: Vec<String> = r
            .statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(s, n)| format!("HTTP {s}: {n}"))
            .chain(r.errors.iter().map(|(e, n)| format!("{e}: {n}")))
            .collect();
        if !odd.is_empty() {
            println!("WARNING {name}: {}", odd.join("; "));
        }
    }
}

// ---------------------------------------------------------------------------
// Phase C.

struct MemResult {
    users: usize,
    rss_before_kib: u64,
    rss_after_kib: u64,
    resident_before: u64,
    resident_after: u64,
    secs: f64,
    non_2xx: u64,
    first_failure: Option<String>,
}

impl MemResult {
    fn bytes_per_entity(&self) -> f64 {
        (self.rss_after_kib as f64 - self.rss_before_kib as f64) * 1024.0 / self.users as f64
    }

    fn print(&self) {
        println!("| measure | value |");
        println!("|---|---:|");
        println!("| node VmRSS before | {} KiB |", self.rss_before_kib);
        println!("| node VmRSS after | {} KiB |", self.rss_after_kib);
        println!(
            "| /readyz resident_entities before → after | {} → {} |",
            self.resident_before, self.resident_after
        );
        println!(
            "| (RSS after − before) / {} | {:.0} B = {:.2} KiB |",
            self.users,
            self.bytes_per_entity(),
            self.bytes_per_entity() / 1024.0
        );
        println!(
            "| first checks (entity loaded from SQLite) | {:.0} /s ({:.1} s for {}) |",
            self.users as f64 / self.secs,
            self.secs,
            self.users
        );
        println!(
            "\nmemory per resident entity: {:.2} KiB  (DESIGN.md §7 target: <= 10 KiB)",
            self.bytes_per_entity() / 1024.0
        );
        let delta = self.resident_after.saturating_sub(self.resident_before);
        if delta != self.users as u64 {
            println!("WARNING: resident entities grew by {delta}, not {}", self.users);
        }
        if self.non_2xx > 0 {
            println!(
                "WARNING: {} first checks were not 2xx; first: {}",
                self.non_2xx,
                self.first_failure.as_deref().unwrap_or("-")
            );
        }
    }
}

fn vm_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/<pid>/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

async fn resident(client: &reqwest::Client, base: &str) -> Result<u64> {
    let body = expect_ok(client.get(format!("{base}/readyz")).send().await?, "GET /readyz").await?;
    body["resident_entities"]
        .as_u64()
        .context("/readyz has no resident_entities")
}

async fn memory_phase(client: &reqwest::Client, base: &str, pid: u32, users: usize) -> Result<MemResult> {
    // Let the last counter flush of phase B land first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resident_before = resident(client, base).await?;
    let rss_before_kib = vm_rss_kib(pid)?;

    let non_2xx = Arc::new(AtomicU64::new(0));
    let first_failure = Arc::new(parking_lot::Mutex::new(None::<String>));
    let started = Instant::now();
    let (c, b, bad, first) = (client.clone(), base.to_string(), non_2xx.clone(), first_failure.clone());
    pool(users, MEM_IN_FLIGHT, move |i| {
        let (client, base, bad, first) = (c.clone(), b.clone(), bad.clone(), first.clone());
        async move {
            let resp = client
                .post(format!("{base}/v1/check"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&serde_json::json!({"user_id": format!("m{i}")}))
                .send()
                .await?;
            let status = resp.status();
            if !status.is_success() {
                bad.fetch_add(1, Ordering::Relaxed);
                let text = resp.text().await.unwrap_or_default();
                first
                    .lock()
                    .get_or_insert_with(|| format!("m{i}: HTTP {status}: {text}"));
            }
            Ok(())
        }
    })
    .await?;
    let secs = started.elapsed().as_secs_f64();

    // Let the flusher write the 100 000 new counters before reading RSS.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after_kib = vm_rss_kib(pid)?;
    let resident_after = resident(client, base).await?;
    let first_failure = first_failure.lock().clone();
    Ok(MemResult {
        users,
        rss_before_kib,
        rss_after_kib,
        resident_before,
        resident_after,
        secs,
        non_2xx: non_2xx.load(Ordering::Relaxed),
        first_failure,
    })
}

fn node_warnings(log: &Path) -> Vec<String> {
    let mut text = String::new();
    if let Ok(mut f) = File::open(log) {
        let _ = f.read_to_string(&mut text);
    }
    text.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR ") || l.contains("panicked"))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------
// The summary for README.md.

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

#[allow(clippy::too_many_arguments)]
fn print_summary(
    s: &Settings,
    oha_version: &str,
    a_floor: &OhaResult,
    a_node: &OhaResult,
    b_floor: &OhaResult,
    b_node: &OhaResult,
    mem: &MemResult,
) {
    let nproc = command_output(Path::new("nproc"), &[])
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.to_string()))
        .unwrap_or_else(|| "?".into());
    let date =
        command_output(Path::new("date"), &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "unknown date".into());
    let ratio = a_node.ok_per_sec() / a_floor.ok_per_sec();
    let mut md = String::new();
    let _ = writeln!(md, "### Load benchmark ({date})\n");
    let _ = writeln!(
        md,
        "`cargo bench --bench load` — {nproc} CPUs ({}), {oha_version}, loopback, node on SQLite, \
         {CONNECTIONS} connections, each request a random user of {USERS}, {} s per run, {} interleaved \
         floor/node rounds per phase, the median round shown. Floor = bare axum JSON echo in its own process.\n",
        cpu_model(),
        s.secs,
        s.rounds
    );
    let _ = writeln!(
        md,
        "| | floor (axum echo) | tollgate `/v1/check` | node/floor | target |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---|");
    let _ = writeln!(
        md,
        "| throughput, `-c {CONNECTIONS}` (2xx req/s) | {:.0} | {:.0} | {ratio:.2}× | ≥ 0.70× |",
        a_floor.ok_per_sec(),
        a_node.ok_per_sec()
    );
    let _ = writeln!(
        md,
        "| p50 / p99 at full load (ms) | {} / {} | {} / {} | | |",
        fmt_ms(a_floor.p50),
        fmt_ms(a_floor.p99),
        fmt_ms(a_node.p50),
        fmt_ms(a_node.p99)
    );
    let _ = writeln!(
        md,
        "| p50 / p99 / p99.9 at {} req/s (ms) | {} / {} / {} | {} / {} / {} | | p99 < 1 ms |",
        s.rate,
        fmt_ms(b_floor.p50),
        fmt_ms(b_floor.p99),
        fmt_ms(b_floor.p999),
        fmt_ms(b_node.p50),
        fmt_ms(b_node.p99),
        fmt_ms(b_node.p999)
    );
    let _ = writeln!(
        md,
        "| memory per resident entity ({} new users) | | {:.2} KiB ({:.0} B) | | ≤ 10 KiB |",
        mem.users,
        mem.bytes_per_entity() / 1024.0,
        mem.bytes_per_entity()
    );
    let total_bad = a_node.non_2xx() + a_node.error_count() + b_node.non_2xx() + b_node.error_count() + mem.non_2xx;
    let _ = writeln!(
        md,
        "\nNode non-2xx/errors across all phases: {total_bad}. Phase B {}.",
        if s.latency_correction {
            "uses `--latency-correction` (no coordinated omission)"
        } else {
            "runs without `--latency-correction`"
        }
    );
    if !s.node_args.is_empty() {
        let _ = writeln!(md, "Extra node arguments: `{}`.", s.node_args.join(" "));
    }
    println!("\n## Summary (Markdown for README.md)\n");
    println!("{md}");
}
