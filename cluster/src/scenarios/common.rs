//! Set-up and checks the scenarios share.

use super::{Env, Params};
use crate::cluster::{Cluster, ClusterOpts};
use crate::error::Result;
use crate::invariants::{Bound, check_admissions, check_counters, check_ledger};
use crate::load::{Counts, LoadReport, LoadSpec};
use crate::report::ScenarioReport;
use serde_json::json;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// The tier of the users under load.
pub const LOAD_TIER: &str = "cluster-load";

/// Starts `n` nodes (cluster flags and fault injection when `cluster`) into
/// `slot`, so that the runner can attach their logs if the scenario fails.
pub async fn start<'a>(
    env: &Env,
    params: &Params,
    n: usize,
    cluster: bool,
    slot: &'a mut Option<Cluster>,
) -> Result<&'a mut Cluster> {
    let mut opts = if cluster {
        ClusterOpts::cluster(&env.server_url)
    } else {
        ClusterOpts::single(&env.server_url)
    };
    opts.flush_interval_ms = params.flush_interval_ms;
    Ok(slot.insert(Cluster::start(&env.binary, n, opts).await?))
}

/// Creates the load tier (`daily_limit` a day, no monthly limit) on every
/// node and puts `params.users` users on it, spreading the `PUT`s over the
/// nodes. Returns the user ids.
pub async fn setup_load_users(cluster: &mut Cluster, params: &Params) -> Result<Vec<String>> {
    let tier = json!({"daily_limit": params.daily_limit, "price_monthly_usd": "0"});
    cluster.put_all(&format!("/v1/tiers/{LOAD_TIER}"), &tier).await?;
    let users: Vec<String> = (0..params.users).map(|i| format!("load-{i:05}")).collect();
    put_users_on_tier(cluster, &users, LOAD_TIER).await?;
    Ok(users)
}

/// `PUT /v1/users/{id} {"tier"}` for each user, 8 at a time, round-robin
/// over the running members.
pub async fn put_users_on_tier(cluster: &mut Cluster, users: &[String], tier: &str) -> Result<()> {
    let puts = users
        .iter()
        .map(|user| (format!("/v1/users/{user}"), json!({ "tier": tier })))
        .collect();
    admin_put_each(cluster, puts).await
}

/// Each admin `PUT` (path, body), 8 at a time, round-robin over the running
/// members; every one must succeed.
pub async fn admin_put_each(cluster: &mut Cluster, puts: Vec<(String, serde_json::Value)>) -> Result<()> {
    let nodes = cluster.running_members();
    let mut apis = Vec::new();
    for i in &nodes {
        apis.push(cluster.api(*i)?.clone());
    }
    if apis.is_empty() {
        return Err(crate::error::HarnessError::Config(
            "no running node to set users up on".into(),
        ));
    }
    let mut set = JoinSet::new();
    for (k, (path, body)) in puts.into_iter().enumerate() {
        if set.len() >= 8
            && let Some(done) = set.join_next().await
        {
            flatten(done)?;
        }
        let api = apis[k % apis.len()].clone();
        set.spawn(async move { api.admin_put(&path, &body).await.map(|_| ()) });
    }
    while let Some(done) = set.join_next().await {
        flatten(done)?;
    }
    Ok(())
}

fn flatten(done: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    done.map_err(|e| crate::error::HarnessError::Config(format!("set-up task: {e}")))?
}

/// The load of a scenario over `users`.
pub fn load_spec(params: &Params, users: Vec<String>) -> LoadSpec {
    LoadSpec {
        concurrency: params.concurrency,
        rate_per_sec: params.rate_per_sec,
        ..LoadSpec::steady(users)
    }
}

/// Every user key, `user:<id>`.
pub fn user_keys(users: &[String]) -> Vec<String> {
    users.iter().map(|u| format!("user:{u}")).collect()
}

/// The scratch database, for invariant queries.
pub async fn pool(cluster: &Cluster) -> Result<PgPool> {
    crate::db::pool(cluster.database_url()).await
}

/// (a): acknowledged usage is in the ledger once, spend equals ledger sums.
pub async fn require_money_exact(report: &mut ScenarioReport, pool: &PgPool, load: &LoadReport) -> Result<()> {
    let ledger = check_ledger(pool, load).await?;
    report.figures.money_exact = Some(ledger.ok());
    report.require("(a) money exact", ledger.ok(), ledger.summary());
    Ok(())
}

/// (b) with `bound`; the largest over-admission goes into the figures.
pub fn require_admissions(
    report: &mut ScenarioReport,
    name: &str,
    load: &LoadReport,
    bound: impl Fn(&str) -> Option<Bound>,
) {
    let adm = check_admissions(load, bound);
    report.figures.over_admission = Some(adm.max_over.unwrap_or(0).max(0));
    report.require(name, adm.ok(), adm.summary());
}

/// (c): no 5xx but 503, no 4xx but 429, nothing given up; 503s counted.
pub fn require_no_errors(report: &mut ScenarioReport, load: &LoadReport) -> Counts {
    let c = load.counts();
    report.add_counts(&c);
    let failures = load.failures(5);
    let ok = c.other_5xx == 0 && c.other_4xx == 0 && c.gave_up == 0;
    let detail = if failures.is_empty() {
        c.to_string()
    } else {
        format!("{c}; e.g. {}", failures.join(" | "))
    };
    report.require("(c) no 5xx other than 503", ok, detail);
    c
}

/// (d): flushed day counters against admitted checks.
pub async fn counters(
    report: &mut ScenarioReport,
    required: bool,
    pool: &PgPool,
    load: &LoadReport,
    tolerance: impl Fn(&str) -> u64,
    flush_interval_ms: u64,
) -> Result<()> {
    let settle = Duration::from_millis(flush_interval_ms * 10 + 1000);
    let r = check_counters(pool, load, tolerance, settle).await?;
    let name = "(d) flushed counters == admitted";
    if required {
        report.require(name, r.ok(), r.summary());
    } else {
        report.info(name, r.ok(), r.summary());
    }
    Ok(())
}

/// The window before a crash whose admissions may be lost with the dead
/// node's unflushed counts: one flush interval, plus one more for the flush
/// itself to be written and for the answer to travel.
pub fn lost_window(params: &Params) -> Duration {
    Duration::from_millis(2 * params.flush_interval_ms)
}

/// `at - d`, or `at` if the clock does not go back that far.
pub fn before(at: Instant, d: Duration) -> Instant {
    at.checked_sub(d).unwrap_or(at)
}

/// Whether a published address (`127.0.0.1:80`, `http://127.0.0.1:80/`)
/// names `expected`.
pub fn addr_matches(published: &str, expected: std::net::SocketAddr) -> bool {
    let trimmed = published
        .trim_start_matches("http://")
        .trim_start_matches("tcp://")
        .trim_end_matches('/');
    match trimmed.parse::<std::net::SocketAddr>() {
        Ok(a) => a == expected,
        Err(_) => trimmed.ends_with(&format!(":{}", expected.port())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_addresses_match_leniently() {
        let a: std::net::SocketAddr = "127.0.0.1:8081".parse().expect("addr");
        assert!(addr_matches("127.0.0.1:8081", a));
        assert!(addr_matches("http://127.0.0.1:8081/", a));
        assert!(addr_matches("localhost:8081", a));
        assert!(!addr_matches("127.0.0.1:8082", a));
    }
}
