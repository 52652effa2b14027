//! `partition_heals`: node-3 is cut from node-1 and node-2 (gossip and RPC,
//! both ways, through the test-only faults endpoint) under load on all
//! three, held for `params.partition` once both sides have noticed, then
//! healed.
//!
//! Asserts: both sides serve during the partition; (b) admitted ≤ 2 ×
//! limit per user and day (two sides: (sides − 1) × limit over); (c) no 5xx
//! other than 503 (counted), no 4xx but 429, nothing given up; (a) money
//! exact after healing; membership re-converges to 3 ready and owners
//! agree. (d) counters are reported only (deltas from both sides should
//! still sum to the admitted checks).

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
use std::time::Instant;

pub async fn run(env: &Env, params: &Params, report: &mut ScenarioReport, slot: &mut Option<Cluster>) -> Result<()> {
    let cluster = start(env, params, 3, true, slot).await?;
    let users = setup_load_users(cluster, params).await?;
    let load = LoadDriver::start(load_spec(params, users.clone()), cluster.targets());
    report.note(format!("load seed {}", load.seed()));
    tokio::time::sleep(params.phase / 2).await;

    let (majority, minority) = ([0, 1], [2]);
    let cut_at = Instant::now();
    cluster.partition(&majority, &minority).await?;
    let split_at = Instant::now();
    report.note(format!(
        "both sides noticed the partition after {:.2} s; held {:?} more",
        split_at.duration_since(cut_at).as_secs_f64(),
        params.partition
    ));
    tokio::time::sleep(params.partition).await;
    let heal_at = Instant::now();
    cluster.heal().await?;
    report.require(
        "membership re-converges",
        true,
        format!(
            "3 ready on every node {:.2} s after healing",
            heal_at.elapsed().as_secs_f64()
        ),
    );
    tokio::time::sleep(params.phase).await;
    let lr = load.stop().await;

    for (side, nodes) in [("majority", &majority[..]), ("minority", &minority[..])] {
        let ids = cluster.ids(nodes);
        let served = lr.served_by(&ids, split_at, heal_at);
        report.require(
            &format!("{side} side ({}) serves", ids.join(", ")),
            served > 0,
            format!("{served} answered"),
        );
    }
    require_no_errors(report, &lr);
    let sides = 2;
    require_admissions(report, "(b) admitted ≤ limit + (sides − 1) × limit", &lr, |_| {
        Some(Bound {
            limit: params.daily_limit,
            over: (sides - 1) * params.daily_limit,
            exact_when_refused: false,
        })
    });
    let pool = pool(cluster).await?;
    require_money_exact(report, &pool, &lr).await?;
    counters(report, false, &pool, &lr, |_| 0, params.flush_interval_ms).await?;

    let running = cluster.running_members();
    let rows = cluster
        .owners(&user_keys(&users[..users.len().min(50)]), &running)
        .await?;
    let split: Vec<String> = rows
        .iter()
        .filter(|r| r.agreed().is_none())
        .map(|r| r.summary())
        .collect();
    report.require("owners agree after healing", split.is_empty(), split.join("; "));
    Ok(())
}
