//! `guest_limit_is_exact_across_nodes`: the single node's semantics over
//! three nodes.
//!
//! - A guest whose `ip:` and `fp:` keys have different owners (when such a
//!   pair is found among 32 candidates; the check then spans two nodes):
//!   10 checks round-robin over the 3 nodes → exactly 10 admitted; one more
//!   on each node → all refused `rate_limited`.
//! - A user with a 1.00 budget: 200 concurrent checks with estimate
//!   `cost_usd` 0.01, spread round-robin over the 3 nodes → exactly 100
//!   admitted and 100 refused `budget_exceeded`; every node's
//!   `/v1/status` then shows 1.00 held.
//! - (c) no 5xx other than 503.

use super::common::{require_no_errors, start};
use super::{Env, Params};
use crate::cluster::Cluster;
use crate::error::{HarnessError, Result};
use crate::load::{Final, Recorder, Sender};
use crate::report::ScenarioReport;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::task::JoinSet;

const BUDGET_USER: &str = "budget-1";

pub async fn run(env: &Env, params: &Params, report: &mut ScenarioReport, slot: &mut Option<Cluster>) -> Result<()> {
    let cluster = start(env, params, 3, true, slot).await?;
    let recorder = Recorder::default();
    let sender = Sender::new(cluster.targets(), recorder.clone(), Duration::from_secs(15));
    let targets = cluster.targets().snapshot();
    if targets.is_empty() {
        return Err(HarnessError::Config("no node to send to".into()));
    }

    // Guests: a pair whose two keys live on two nodes, if one is found.
    let mut guest = None;
    for k in 0..32 {
        let (ip, fp) = (format!("203.0.113.{}", k + 1), format!("fp-exact-{k}"));
        let (ip_owner, fp_owner) = (
            cluster.owner_of(&format!("ip:{ip}")).await?,
            cluster.owner_of(&format!("fp:{fp}")).await?,
        );
        if ip_owner != fp_owner {
            guest = Some((ip, fp, format!("ip on {ip_owner}, fingerprint on {fp_owner}")));
            break;
        }
    }
    report.info(
        "guest keys on two nodes",
        guest.is_some(),
        guest
            .as_ref()
            .map_or("no split pair among 32 candidates".into(), |g| g.2.clone()),
    );
    let (ip, fp, _) = guest.unwrap_or_else(|| ("203.0.113.1".into(), "fp-exact-0".into(), String::new()));
    let keys = [format!("ip:{ip}"), format!("fp:{fp}")];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let body = json!({"guest": {"ip": ip, "fingerprint": fp}});
    let mut first = Vec::new();
    for k in 0..10 {
        first.push(sender.check_on(&targets[k % targets.len()], &keys, &body).await);
    }
    let admitted = first.iter().filter(|f| **f == Final::Admitted).count();
    report.require(
        "10 guest checks over 3 nodes → 10 admitted",
        admitted == 10,
        format!("{admitted} admitted: {first:?}"),
    );
    let mut more = Vec::new();
    for t in &targets {
        more.push(sender.check_on(t, &keys, &body).await);
    }
    let limited = more
        .iter()
        .filter(|f| **f == Final::Refused("rate_limited".into()))
        .count();
    report.require(
        "then one more on each node → refused rate_limited",
        limited == targets.len(),
        format!("{more:?}"),
    );

    // A 1.00 budget, 200 concurrent 0.01 reservations over the 3 nodes.
    let tier = json!({"daily_limit": 100_000, "price_monthly_usd": "0"});
    cluster.put_all("/v1/tiers/cluster-big", &tier).await?;
    cluster
        .api(0)?
        .admin_put(&format!("/v1/users/{BUDGET_USER}"), &json!({"tier": "cluster-big"}))
        .await?;
    cluster
        .api(1)?
        .admin_put(
            &format!("/v1/users/{BUDGET_USER}/budget"),
            &json!({"monthly_budget_usd": "1.00"}),
        )
        .await?;
    let entity = format!("user:{BUDGET_USER}");
    let body = json!({"user_id": BUDGET_USER, "estimate": {"cost_usd": "0.01"}});
    let mut set = JoinSet::new();
    for k in 0..200 {
        let (sender, target, body, entity) = (
            sender.clone(),
            targets[k % targets.len()].clone(),
            body.clone(),
            entity.clone(),
        );
        set.spawn(async move { sender.check_on(&target, &[&entity], &body).await });
    }
    let mut finals = Vec::new();
    while let Some(done) = set.join_next().await {
        finals.push(done.map_err(|e| HarnessError::Config(format!("check task: {e}")))?);
    }
    let admitted = finals.iter().filter(|f| **f == Final::Admitted).count();
    let refused = finals
        .iter()
        .filter(|f| **f == Final::Refused("budget_exceeded".into()))
        .count();
    report.require(
        "200 concurrent 0.01 checks on a 1.00 budget over 3 nodes → 100 admitted",
        admitted == 100 && refused == 100,
        format!(
            "{admitted} admitted, {refused} refused budget_exceeded, {} other",
            200 - admitted - refused
        ),
    );
    let mut held = Vec::new();
    for t in &targets {
        let status = t.api.user_status(BUDGET_USER).await?;
        held.push((t.node_id.clone(), held_usd(&status.json, &entity)));
    }
    let one = Decimal::new(100, 2);
    report.require(
        "every node's status shows 1.00 held",
        held.iter().all(|(_, h)| *h == Some(one)),
        format!("{held:?}"),
    );
    require_no_errors(report, &recorder.report());
    Ok(())
}

fn held_usd(json: &Value, entity: &str) -> Option<Decimal> {
    json.get("budgets")?
        .as_array()?
        .iter()
        .find(|b| b["entity"] == entity)?
        .get("held_usd")?
        .as_str()?
        .parse()
        .ok()
}
