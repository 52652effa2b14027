//! `outsider_cannot_join`: a 4th process started with the members' gossip
//! addresses as seeds but a wrong cluster secret (and a database of its
//! own: the threat is on the network, not in Postgres).
//!
//! Asserts: while watched, no member ever lists it and it never lists a
//! member; the checks and the usage event it is sent change nothing on the
//! cluster (a user's day count stays 3 on every member, the event is not in
//! the cluster's ledger, the user's spend is 0); the members still list
//! exactly each other. Reported only: a raw TCP connection to a member's
//! RPC port that sends a frame without the secret gets closed.

use super::common::start;
use super::{Env, Params};
use crate::api::used;
use crate::cluster::Cluster;
use crate::error::Result;
use crate::load::{Final, Recorder, Sender, UsageEvent};
use crate::report::ScenarioReport;
use rust_decimal::Decimal;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const USER: &str = "guarded";

pub async fn run(env: &Env, params: &Params, report: &mut ScenarioReport, slot: &mut Option<Cluster>) -> Result<()> {
    let cluster = start(env, params, 3, true, slot).await?;
    let sender = Sender::new(cluster.targets(), Recorder::default(), Duration::from_secs(15));
    let entity = format!("user:{USER}");
    let body = json!({ "user_id": USER });
    let mut admitted = 0;
    for t in cluster.targets().snapshot() {
        admitted += usize::from(sender.check_on(&t, &[&entity], &body).await == Final::Admitted);
    }
    report.require(
        "3 checks through the members",
        admitted == 3,
        format!("{admitted} admitted"),
    );

    let wrong = format!("not-the-secret-{}", uuid::Uuid::new_v4().simple());
    let outsider = cluster.launch_outsider(&wrong).await?;
    let outsider_id = cluster.id(outsider).to_string();
    let members = cluster.running_members();
    let member_ids = cluster.ids(&members);
    let mut leaks = Vec::new();
    let watch_until = Instant::now() + params.outsider_watch;
    while Instant::now() < watch_until {
        for i in &members {
            let view = cluster.view(*i).await?;
            if view.member(&outsider_id).is_some() {
                leaks.push(view.summary());
            }
        }
        match cluster.view(outsider).await {
            Ok(view) if member_ids.iter().any(|m| view.member(m).is_some()) => leaks.push(view.summary()),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    leaks.dedup();
    report.require(
        "no member lists the outsider, the outsider lists no member",
        leaks.is_empty(),
        format!("watched {:?}: {}", params.outsider_watch, leaks.join("; ")),
    );

    let api = cluster.api(outsider)?.clone();
    let mut answers = Vec::new();
    for _ in 0..5 {
        answers.push(api.check(&body).await.map(|r| r.status).map_err(|e| e.to_string()));
    }
    let event = UsageEvent::new(USER, Decimal::new(50, 2));
    let usage = api
        .usage(
            &json!({"event_id": event.event_id, "user_id": USER, "model": "x", "input_tokens": 1,
                       "output_tokens": 1, "cost_usd": "0.50"}),
        )
        .await
        .map(|r| r.status)
        .map_err(|e| e.to_string());
    report.note(format!(
        "the outsider answered its checks {answers:?} and its usage event {usage:?}"
    ));

    let mut counts = Vec::new();
    for i in &members {
        let status = cluster.api(*i)?.user_status(USER).await?;
        counts.push((cluster.id(*i).to_string(), used(&status.json, &entity, "day")));
    }
    report.require(
        "the cluster's count is unchanged",
        counts.iter().all(|(_, n)| *n == Some(3)),
        format!("day used per member: {counts:?}"),
    );
    let pool = crate::db::pool(cluster.database_url()).await?;
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM model_usage WHERE event_id = $1")
        .bind(event.event_id)
        .fetch_one(&pool)
        .await?;
    let spend: Option<(Decimal,)> =
        sqlx::query_as("SELECT COALESCE(SUM(spent_usd), 0) FROM entity_spend WHERE entity = $1")
            .bind(&entity)
            .fetch_optional(&pool)
            .await?;
    let spend = spend.map_or(Decimal::ZERO, |(s,)| s);
    report.require(
        "the outsider's usage is not in the cluster's ledger",
        rows == 0 && spend.is_zero(),
        format!("{rows} ledger rows, spend {spend}"),
    );

    let rpc = members
        .first()
        .and_then(|i| cluster.spec(*i))
        .and_then(|s| s.cluster.as_ref())
        .map(|c| c.rpc);
    if let Some(addr) = rpc {
        let (closed, detail) = raw_rpc_probe(addr).await;
        report.info("a raw RPC connection without the secret is closed", closed, detail);
    }
    cluster.wait_converged(&members).await?;
    report.require("members still list exactly each other", true, member_ids.join(", "));
    Ok(())
}

/// Sends a length-prefixed frame of junk to `addr` and waits up to 3 s for
/// the node to close the connection. (closed, what happened)
async fn raw_rpc_probe(addr: std::net::SocketAddr) -> (bool, String) {
    let Ok(Ok(mut conn)) = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await
    else {
        return (true, format!("{addr} refused the connection"));
    };
    let mut frame = 64u32.to_be_bytes().to_vec();
    frame.extend((0..64u8).map(|b| b.wrapping_mul(37)));
    if let Err(e) = conn.write_all(&frame).await {
        return (true, format!("closed while writing: {e}"));
    }
    let mut received = 0usize;
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Ok(Ok(0)) => return (true, format!("closed after sending {received} bytes")),
            Ok(Ok(n)) => received += n,
            Ok(Err(e)) => return (true, format!("reset after {received} bytes: {e}")),
            Err(_) => return (false, format!("still open after 3 s ({received} bytes received)")),
        }
    }
}
