//! `graceful_join_and_leave_under_load`: steady load on users with a small
//! daily limit; a 4th node joins, later node-2 is stopped with SIGTERM.
//!
//! The harness drains node-2 from its targets before the SIGTERM, like a
//! load balancer would; a connection refused in that instant is retried on
//! another node (the node never saw it) and only reported.
//!
//! Asserts: the join converges to 4 ready; SIGTERM exits 0 and the rest
//! converge to 3; zero failed requests (no status but 200/429, no 503, no
//! lost answer, nothing given up); (b) admitted ≤ limit for every user and
//! == limit for every user refused as rate limited; (d) flushed day
//! counters == admitted for every user (no count lost or doubled); (a)
//! money exact; owners agree afterwards.

use super::common::{
    counters, load_spec, pool, require_admissions, require_money_exact, require_no_errors, setup_load_users, start,
    user_keys,
};
use super::{Env, Params};
use crate::cluster::Cluster;
use crate::error::Result;
use crate::invariants::Bound;
use crate::load::LoadDriver;
use crate::report::ScenarioReport;

pub async fn run(env: &Env, params: &Params, report: &mut ScenarioReport, slot: &mut Option<Cluster>) -> Result<()> {
    let cluster = start(env, params, 3, true, slot).await?;
    let users = setup_load_users(cluster, params).await?;
    let load = LoadDriver::start(load_spec(params, users.clone()), cluster.targets());
    report.note(format!("load seed {}", load.seed()));
    tokio::time::sleep(params.phase).await;

    let added = cluster.add_node().await?;
    report.require(
        "4th node joins under load",
        true,
        format!("{} ready on every node", cluster.id(added)),
    );
    tokio::time::sleep(params.phase).await;

    let leaver = 1;
    let status = cluster.sigterm(leaver).await?;
    report.require(
        "SIGTERM exits 0 after hand-off",
        status.success(),
        format!("{}: {status}", cluster.id(leaver)),
    );
    let running = cluster.running_members();
    cluster.wait_converged(&running).await?;
    tokio::time::sleep(params.phase).await;
    let lr = load.stop().await;

    let c = require_no_errors(report, &lr);
    let failed = c.s503 + c.transport_errors + c.ambiguous + c.other_4xx + c.other_5xx + c.gave_up;
    report.require("zero failed requests", failed == 0, c.to_string());
    report.info(
        "refused connections during the drain (retried elsewhere)",
        c.connect_errors == 0,
        c.connect_errors.to_string(),
    );
    require_admissions(report, "(b) admitted == limit exactly at the limit", &lr, |_| {
        Some(Bound {
            limit: params.daily_limit,
            over: 0,
            exact_when_refused: true,
        })
    });
    let pool = pool(cluster).await?;
    counters(report, true, &pool, &lr, |_| 0, params.flush_interval_ms).await?;
    require_money_exact(report, &pool, &lr).await?;

    let rows = cluster
        .owners(&user_keys(&users[..users.len().min(50)]), &running)
        .await?;
    let split: Vec<String> = rows
        .iter()
        .filter(|r| r.agreed().is_none())
        .map(|r| r.summary())
        .collect();
    report.require("owners agree after join and leave", split.is_empty(), split.join("; "));
    Ok(())
}
