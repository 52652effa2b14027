//! End-to-end load benchmark: a release-built `tollgate serve` driven by
//! `oha` over loopback. Two modes, chosen by `TOLLGATE_BENCH_MODE`:
//!
//! **single** (the default, `cargo bench --bench load`): the node against a
//! bare axum JSON echo (the floor), see [`single`].
//!
//! - Phase A, throughput: `oha -c 64 -z <secs>` against the floor, then the
//!   node; every request names a random user out of 10 000 (`oha -Z` picks a
//!   random line of a body file per request).
//! - Phase B, latency at a fixed 20 000 req/s (`-q 20000
//!   --latency-correction`), same bodies.
//! - Phase C, memory per resident entity: the node's VmRSS before and after
//!   100 000 new users each make one check.
//!
//! **cluster** (`TOLLGATE_BENCH_MODE=cluster cargo bench --bench load`):
//! three clustered nodes and one single node, all on fresh Postgres
//! databases, see [`cluster`]: 1-node vs 3-node throughput in the same run,
//! and the latency of a local vs a forwarded check at a moderate fixed rate.
//!
//! Environment: `TOLLGATE_BENCH_SECS` (default 10) per oha run,
//! `TOLLGATE_BENCH_ROUNDS` (default 3) interleaved rounds,
//! `TOLLGATE_BENCH_RATE` (default 20000) for phase B,
//! `TOLLGATE_BENCH_MEM_USERS` (default 100000) for phase C,
//! `TOLLGATE_BENCH_LATENCY_CORRECTION=0` to run the fixed-rate phases without
//! `--latency-correction`, `TOLLGATE_BENCH_NODE_ARGS` for extra
//! whitespace-separated `tollgate serve` arguments (experiments only); the
//! cluster mode's own knobs are listed in [`cluster`].
//!
//! The same binary, started with `TOLLGATE_BENCH_ROLE=echo`, is the echo
//! server, so the floor runs in its own process like the node does.

mod api;
mod cluster;
mod cluster_api;
mod cluster_report;
mod echo;
mod memory;
mod oha;
mod plot;
mod postgres;
mod procs;
mod server_hist;
mod single;
mod summary;

use anyhow::{Result, bail};
use std::process::ExitCode;

const ROLE_ENV: &str = "TOLLGATE_BENCH_ROLE";
const ECHO_LISTEN_ENV: &str = "TOLLGATE_BENCH_ECHO_LISTEN";
const MODE_ENV: &str = "TOLLGATE_BENCH_MODE";
/// At least 32 characters: shorter admin tokens refuse to start.
const ADMIN_TOKEN: &str = "bench-admin-0123456789abcdef0123456789";
const TIER: &str = "bench";
const USERS: usize = 10_000;
const CONNECTIONS: u32 = 64;
const SETUP_IN_FLIGHT: usize = 32;
const MEM_IN_FLIGHT: usize = 64;
const OHA_INSTALL: &str = "apt-get install -y cmake && cargo install oha --locked";

fn main() -> ExitCode {
    if std::env::var(ROLE_ENV).as_deref() == Ok("echo") {
        return match echo::echo_main() {
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

fn run() -> Result<()> {
    let settings = Settings::from_env()?;
    match std::env::var(MODE_ENV).as_deref().map(str::trim) {
        Err(_) | Ok("") | Ok("single") => single::run(&settings),
        Ok("cluster") => cluster::run(&settings),
        Ok(other) => bail!("{MODE_ENV}={other:?}: expected `single` (the default) or `cluster`"),
    }
}

/// The knobs both modes share.
struct Settings {
    secs: u64,
    /// Interleaved rounds in phases A and B (and the cluster throughput
    /// phase); the round with the median ratio is reported (this VM's
    /// throughput drifts by ±15 % between runs, so one pair of runs is not a
    /// measurement).
    rounds: usize,
    rate: u32,
    mem_users: usize,
    latency_correction: bool,
    node_args: Vec<String>,
}

impl Settings {
    fn from_env() -> Result<Settings> {
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
        Ok(settings)
    }
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
