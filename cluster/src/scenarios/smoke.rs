//! `single_node_smoke`: one node without cluster flags, under load, stopped
//! with SIGTERM and restarted, then killed with SIGKILL and restarted, with
//! every invariant checked. It proves the harness itself against today's
//! binary.
//!
//! Asserts: SIGTERM exits 0; (c) no 5xx but 503, no 4xx but 429, nothing
//! given up; (b) admitted ≤ limit + the admissions of the lost window
//! before the kill (2 flush intervals); (a) money exact; (d) flushed
//! counters equal admitted checks, short by at most that lost window.

use super::common::{
    before, counters, load_spec, lost_window, pool, require_admissions, require_money_exact, require_no_errors,
    setup_load_users, start,
};
use super::{Env, Params};
use crate::cluster::Cluster;
use crate::error::Result;
use crate::invariants::Bound;
use crate::load::LoadDriver;
use crate::report::ScenarioReport;
use std::time::Instant;

pub async fn run(env: &Env, params: &Params, report: &mut ScenarioReport, slot: &mut Option<Cluster>) -> Result<()> {
    let cluster = start(env, params, 1, false, slot).await?;
    let users = setup_load_users(cluster, params).await?;
    let load = LoadDriver::start(load_spec(params, users), cluster.targets());
    report.note(format!("load seed {}", load.seed()));
    tokio::time::sleep(params.phase).await;

    let status = cluster.sigterm(0).await?;
    report.require("SIGTERM exits 0", status.success(), format!("{status}"));
    cluster.restart(0).await?;
    tokio::time::sleep(params.phase).await;

    let killed_at = Instant::now();
    cluster.kill9(0).await?;
    cluster.restart(0).await?;
    tokio::time::sleep(params.phase).await;
    let lr = load.stop().await;

    require_no_errors(report, &lr);
    let window = lost_window(params);
    let lost = |entity: &str| lr.admitted_between(entity, before(killed_at, window), killed_at);
    require_admissions(report, "(b) admitted ≤ limit + lost window", &lr, |entity| {
        Some(Bound {
            limit: params.daily_limit,
            over: lost(entity),
            exact_when_refused: false,
        })
    });
    let pool = pool(cluster).await?;
    require_money_exact(report, &pool, &lr).await?;
    counters(report, true, &pool, &lr, lost, params.flush_interval_ms).await?;
    Ok(())
}
