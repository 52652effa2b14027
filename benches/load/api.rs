//! The node's HTTP API as the bench uses it: the bench tier and users, body
//! files for oha, and a bounded pool of concurrent requests.

use crate::{ADMIN_TOKEN, SETUP_IN_FLIGHT, TIER, USERS};
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::future::Future;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `f(0..n)` with `in_flight` concurrent workers; stops at the first error.
pub async fn pool<F, Fut>(n: usize, in_flight: usize, f: F) -> Result<()>
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

pub async fn expect_ok(resp: reqwest::Response, what: &str) -> Result<serde_json::Value> {
    let status = resp.status();
    let text = resp.text().await.with_context(|| format!("{what}: reading the body"))?;
    if !status.is_success() {
        bail!("{what}: HTTP {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{what}: not JSON: {text}"))
}

/// `GET {base}{path}` with the admin token, as JSON.
pub async fn get_json(client: &reqwest::Client, base: &str, path: &str) -> Result<serde_json::Value> {
    let resp = client
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .with_context(|| format!("GET {base}{path}"))?;
    expect_ok(resp, &format!("GET {base}{path}")).await
}

/// The bench tier (daily limit 10⁹, no monthly cap), then every user on it,
/// warmed with one check each.
pub async fn setup_users(client: &reqwest::Client, base: &str) -> Result<()> {
    put_tier(client, base).await?;
    assign_and_warm(client, base).await
}

pub async fn put_tier(client: &reqwest::Client, base: &str) -> Result<()> {
    let tier = client
        .put(format!("{base}/v1/tiers/{TIER}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"daily_limit": 1_000_000_000u64, "monthly_limit": null, "price_monthly_usd": "0"}))
        .send()
        .await?;
    expect_ok(tier, "PUT /v1/tiers/bench").await?;
    Ok(())
}

/// `PUT /v1/users/u<i>` to the bench tier, then one check each, so every
/// user is resident (on its owner) before anything is measured.
pub async fn assign_and_warm(client: &reqwest::Client, base: &str) -> Result<()> {
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

/// One line per user `<prefix>0` … `<prefix>{n-1}`: `{"user_id":"<prefix><k>"}`.
pub fn write_bodies(path: &Path, prefix: &str, n: usize) -> Result<()> {
    write_user_bodies(path, (0..n).map(|i| format!("{prefix}{i}")))
}

/// One line per user id: `{"user_id":"<id>"}`.
pub fn write_user_bodies(path: &Path, users: impl IntoIterator<Item = String>) -> Result<()> {
    let mut out = BufWriter::new(File::create(path).with_context(|| format!("creating {}", path.display()))?);
    for user in users {
        writeln!(out, "{{\"user_id\":\"{user}\"}}")?;
    }
    out.flush()?;
    Ok(())
}
