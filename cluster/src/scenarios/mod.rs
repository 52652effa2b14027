//! The scenarios, shared by the short set (`tests/cluster_scenarios.rs` in
//! the root crate, inside `cargo test`) and the long set
//! (`tollgate-cluster scenarios --long`). Each starts its own cluster on its
//! own scratch database and returns a [`ScenarioReport`]; harness errors
//! become a failed `harness` check, and a failed report carries the tails
//! of the node logs (the full logs are kept on disk).

mod alerts;
mod common;
mod exact;
mod formation;
mod graceful;
mod kill9;
mod outsider;
mod partition;
mod smoke;

use crate::cluster::Cluster;
use crate::db::TEST_DATABASE_ENV;
use crate::error::Result;
use crate::report::ScenarioReport;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the scenarios run.
#[derive(Debug, Clone)]
pub struct Env {
    /// The `tollgate` binary.
    pub binary: PathBuf,
    /// A Postgres server URL on which scratch databases can be created.
    pub server_url: String,
}

impl Env {
    /// From `TOLLGATE_TEST_DATABASE_URL`; `None` (with a notice on stderr)
    /// when it is unset.
    pub fn from_env(binary: impl Into<PathBuf>) -> Option<Env> {
        match std::env::var(TEST_DATABASE_ENV) {
            Ok(server_url) if !server_url.is_empty() => Some(Env {
                binary: binary.into(),
                server_url,
            }),
            _ => {
                // CI always sets it: there, a skip would hide a failure.
                assert!(
                    std::env::var("CI").is_err(),
                    "CI is set but {TEST_DATABASE_ENV} is not: the cluster scenarios cannot run"
                );
                eprintln!("{TEST_DATABASE_ENV} unset: skipping the cluster scenarios (they need Postgres)");
                None
            }
        }
    }
}

/// Sizes and durations; [`Params::short`] for CI, [`Params::long`] for the
/// long set.
#[derive(Debug, Clone)]
pub struct Params {
    pub long: bool,
    /// `--flush-interval-ms` of every node.
    pub flush_interval_ms: u64,
    /// Load tasks and total operations per second.
    pub concurrency: usize,
    pub rate_per_sec: u32,
    /// Users under load, on a tier of `daily_limit` checks a day.
    pub users: usize,
    pub daily_limit: u64,
    /// Length of each load phase before, between and after faults.
    pub phase: Duration,
    /// How long a partition is held once both sides have noticed it.
    pub partition: Duration,
    /// How long the outsider is watched.
    pub outsider_watch: Duration,
    /// The failover bound the issue asks for.
    pub failover_bound: Duration,
    /// Entity keys whose owners must agree.
    pub owner_keys: usize,
}

impl Params {
    /// CI: the whole set in well under three minutes on two cores.
    pub fn short() -> Self {
        Params {
            long: false,
            flush_interval_ms: 100,
            concurrency: 4,
            rate_per_sec: 120,
            users: 120,
            daily_limit: 20,
            phase: Duration::from_millis(2500),
            partition: Duration::from_secs(4),
            outsider_watch: Duration::from_secs(3),
            failover_bound: Duration::from_secs(5),
            owner_keys: 50,
        }
    }

    /// The long set: more load, longer phases, a 20 s partition.
    pub fn long() -> Self {
        Params {
            long: true,
            concurrency: 12,
            rate_per_sec: 500,
            users: 1000,
            phase: Duration::from_secs(8),
            partition: Duration::from_secs(20),
            outsider_watch: Duration::from_secs(10),
            owner_keys: 500,
            ..Self::short()
        }
    }
}

/// Every scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// One node without cluster flags: load, SIGTERM + restart, kill -9 +
    /// restart, all invariants. Runs against today's binary.
    SingleNodeSmoke,
    Formation,
    ExactLimits,
    GracefulJoinLeave,
    Kill9,
    Partition,
    Outsider,
    /// Budget alerts from three nodes: each delivered by exactly one.
    AlertsDeliveredOnce,
}

impl Scenario {
    pub const ALL: [Scenario; 8] = [
        Scenario::SingleNodeSmoke,
        Scenario::Formation,
        Scenario::ExactLimits,
        Scenario::GracefulJoinLeave,
        Scenario::Kill9,
        Scenario::Partition,
        Scenario::Outsider,
        Scenario::AlertsDeliveredOnce,
    ];

    /// The name, as the test function is called.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::SingleNodeSmoke => "single_node_smoke",
            Scenario::Formation => "three_nodes_form_a_cluster",
            Scenario::ExactLimits => "guest_limit_is_exact_across_nodes",
            Scenario::GracefulJoinLeave => "graceful_join_and_leave_under_load",
            Scenario::Kill9 => "kill9_under_load",
            Scenario::Partition => "partition_heals",
            Scenario::Outsider => "outsider_cannot_join",
            Scenario::AlertsDeliveredOnce => "alerts_delivered_once",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether it needs a binary with the cluster flags.
    pub fn needs_cluster(self) -> bool {
        self != Scenario::SingleNodeSmoke
    }

    /// Runs the scenario to a report (never panics on what nodes answer).
    pub async fn run(self, env: &Env, params: &Params) -> ScenarioReport {
        let started = Instant::now();
        let mut report = ScenarioReport::new(self.name());
        let mut slot: Option<Cluster> = None;
        let result: Result<()> = match self {
            Scenario::SingleNodeSmoke => smoke::run(env, params, &mut report, &mut slot).await,
            Scenario::Formation => formation::run(env, params, &mut report, &mut slot).await,
            Scenario::ExactLimits => exact::run(env, params, &mut report, &mut slot).await,
            Scenario::GracefulJoinLeave => graceful::run(env, params, &mut report, &mut slot).await,
            Scenario::Kill9 => kill9::run(env, params, &mut report, &mut slot).await,
            Scenario::Partition => partition::run(env, params, &mut report, &mut slot).await,
            Scenario::Outsider => outsider::run(env, params, &mut report, &mut slot).await,
            Scenario::AlertsDeliveredOnce => alerts::run(env, params, &mut report, &mut slot).await,
        };
        if let Err(e) = result {
            report.require("harness", false, e.to_string());
        }
        report.elapsed = started.elapsed();
        if !report.ok()
            && let Some(cluster) = slot.as_mut()
        {
            report.logs = Some(cluster.log_tails(30));
            report.log_dir = Some(cluster.keep_logs());
        }
        report
    }
}

/// Runs `scenarios` one after the other, skipping (with a note) those that
/// need the cluster flags when the binary lacks them.
pub async fn run_all(env: &Env, params: &Params, scenarios: &[Scenario]) -> Result<Vec<ScenarioReport>> {
    let cluster_ok = crate::cluster::supports_cluster_flags(&env.binary).await?;
    let mut reports = Vec::new();
    for s in scenarios {
        if s.needs_cluster() && !cluster_ok {
            eprintln!(
                "{}: skipped, {} serve has no --cluster-secret yet",
                s.name(),
                env.binary.display()
            );
            continue;
        }
        eprintln!("running {} …", s.name());
        let report = s.run(env, params).await;
        eprintln!("{}", report.render());
        reports.push(report);
    }
    Ok(reports)
}
