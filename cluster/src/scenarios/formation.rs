//! `three_nodes_form_a_cluster`: three nodes list each other `ready` with
//! the addresses they were given, and agree on the owner of every one of
//! `owner_keys` entity keys (users, orgs, IPs, fingerprints).

use super::common::{addr_matches, start};
use super::{Env, Params};
use crate::cluster::Cluster;
use crate::error::Result;
use crate::report::ScenarioReport;
use std::collections::BTreeMap;

pub async fn run(env: &Env, params: &Params, report: &mut ScenarioReport, slot: &mut Option<Cluster>) -> Result<()> {
    let cluster = start(env, params, 3, true, slot).await?;
    report.require("converged", true, "every node lists node-1, node-2, node-3 as ready");
    let nodes = [0, 1, 2];
    let mut problems = Vec::new();
    for i in nodes {
        let view = cluster.view(i).await?;
        if view.node_id != cluster.id(i) {
            problems.push(format!("{} answers node_id {}", cluster.id(i), view.node_id));
        }
        for j in nodes {
            let (Some(member), Some(spec)) = (view.member(cluster.id(j)), cluster.spec(j)) else {
                problems.push(format!("{} does not list {}", cluster.id(i), cluster.id(j)));
                continue;
            };
            let rpc = spec.cluster.as_ref().map(|c| c.rpc);
            if !addr_matches(&member.http_addr, spec.http) || !rpc.is_some_and(|r| addr_matches(&member.rpc_addr, r)) {
                problems.push(format!(
                    "{} lists {} at http {:?} rpc {:?}",
                    cluster.id(i),
                    member.node_id,
                    member.http_addr,
                    member.rpc_addr
                ));
            }
            if member.generation == 0 {
                problems.push(format!("{} lists {} with generation 0", cluster.id(i), member.node_id));
            }
        }
    }
    report.require(
        "views name themselves and publish the given addresses",
        problems.is_empty(),
        problems.join("; "),
    );

    let keys = entity_keys(params.owner_keys);
    let rows = cluster.owners(&keys, &nodes).await?;
    let disagreements: Vec<String> = rows
        .iter()
        .filter(|r| r.agreed().is_none())
        .map(|r| r.summary())
        .collect();
    report.require(
        "owners agree on every node",
        disagreements.is_empty(),
        format!(
            "{} keys, {} disagreements {}",
            keys.len(),
            disagreements.len(),
            disagreements.join("; ")
        ),
    );
    let ids = cluster.ids(&nodes);
    let mut share: BTreeMap<String, usize> = ids.iter().map(|id| (id.clone(), 0)).collect();
    let mut strangers = Vec::new();
    for owner in rows.iter().filter_map(|r| r.agreed()) {
        match share.get_mut(owner) {
            Some(n) => *n += 1,
            None => strangers.push(owner.to_string()),
        }
    }
    report.require("owners are members", strangers.is_empty(), strangers.join(" "));
    let spread: Vec<String> = share.iter().map(|(id, n)| format!("{id}: {n}")).collect();
    report.info(
        "every node owns some keys",
        share.values().all(|n| *n > 0),
        spread.join(", "),
    );
    Ok(())
}

/// `n` keys of every kind.
pub fn entity_keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|k| match k % 5 {
            0 | 1 => format!("user:owner-{k}"),
            2 => format!("org:org-owner-{k}"),
            3 => format!("ip:198.51.{}.{}", (k / 250) % 250, k % 250 + 1),
            _ => format!("fp:fp-owner-{k}"),
        })
        .collect()
}
