//! The cluster's HTTP API as the cluster mode uses it: readiness, entity
//! owners, forwarded-check counters.

use crate::api::{get_json, pool};
use crate::procs::ChildGuard;
use crate::{SETUP_IN_FLIGHT, USERS};
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Until every node lists every node (one per URL) `ready` and `live`.
pub async fn wait_cluster_ready(client: &reqwest::Client, urls: &[String], nodes: &mut [ChildGuard]) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        nodes.iter_mut().try_for_each(ChildGuard::ensure_alive)?;
        let mut waiting_on = None;
        for url in urls {
            let ready = match get_json(client, url, "/v1/cluster").await {
                Ok(view) => {
                    let listed = view["nodes"].as_array().map(Vec::as_slice).unwrap_or_default();
                    let ready = listed
                        .iter()
                        .filter(|n| n["status"] == "ready" && n["live"] == true)
                        .count();
                    (ready == urls.len() && listed.len() == urls.len())
                        .then_some(())
                        .ok_or_else(|| view.to_string())
                }
                Err(err) => Err(format!("{err:#}")),
            };
            if let Err(why) = ready {
                waiting_on = Some(format!("{url}: {why}"));
                break;
            }
        }
        let Some(why) = waiting_on else {
            return Ok(());
        };
        if Instant::now() > deadline {
            bail!("the cluster was not ready within {READY_TIMEOUT:?}; last view: {why}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn owner_of(client: &reqwest::Client, base: &str, user: usize) -> Result<String> {
    let view = get_json(client, base, &format!("/v1/cluster/owner?entity=user:u{user}")).await?;
    view["node_id"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{base}: no owner for user:u{user}: {view}"))
}

/// Every user's owner as node-1 sees it; every 100th is asked of the other
/// nodes too, which must agree.
pub async fn owners(client: &reqwest::Client, urls: &[String]) -> Result<Vec<String>> {
    let found = Arc::new(parking_lot::Mutex::new(vec![String::new(); USERS]));
    let (c, b, f) = (client.clone(), urls[0].clone(), found.clone());
    pool(USERS, SETUP_IN_FLIGHT, move |i| {
        let (client, base, found) = (c.clone(), b.clone(), f.clone());
        async move {
            let owner = owner_of(&client, &base, i).await?;
            found.lock()[i] = owner;
            Ok(())
        }
    })
    .await?;
    let owners = found.lock().clone();
    for user in (0..USERS).step_by(100) {
        for url in &urls[1..] {
            let other = owner_of(client, url, user).await?;
            if other != owners[user] {
                bail!(
                    "nodes disagree on the owner of user:u{user}: node-1 says {}, {url} says {other}",
                    owners[user]
                );
            }
        }
    }
    Ok(owners)
}

/// `tollgate_forwarded_ops_total{op="admit"}` summed over `urls`; None if a
/// node has no metrics.
pub async fn forwarded_admits(client: &reqwest::Client, urls: &[String]) -> Option<u64> {
    let mut total = 0.0;
    for url in urls {
        // `/metrics` needs the admin credential on the public listener.
        let resp = client
            .get(format!("{url}/metrics"))
            .bearer_auth(crate::ADMIN_TOKEN)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let text = resp.text().await.ok()?;
        total += text
            .lines()
            .filter(|l| l.starts_with("tollgate_forwarded_ops_total") && l.contains("op=\"admit\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    Some(total as u64)
}
