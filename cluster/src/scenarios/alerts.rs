//! `alerts_delivered_once`: budget alerts over three nodes sharing one
//! Postgres outbox.
//!
//! - One platform webhook channel (a [`WebhookSink`] in this process); 250
//!   users with a 1.00 budget each spend 0.50, 0.25, 0.15 and 0.10, every
//!   event sent to the next node round-robin: 250 × the four default
//!   thresholds = 1 000 alerts, written by whichever node committed the
//!   crossing and delivered by whichever node claimed the delivery.
//! - (alerts) exactly 1 000 alerts fired, and the sink received 1 000
//!   distinct `webhook-id`s with **no duplicate**, counted again after the
//!   nodes' poll interval has passed several times;
//! - every delivery row is `delivered` after exactly one attempt (a second
//!   claim by another node would have counted a second attempt);
//! - (a) money exact and (c) no errors, as every scenario.
//!
//! The nodes' `tollgate_alert_deliveries_total` shows how the deliveries
//! were shared (informational: the claim decides, not a fixed split).

use super::common::{admin_put_each, pool, require_money_exact, require_no_errors};
use super::{Env, Params};
use crate::cluster::{Cluster, ClusterOpts};
use crate::error::{HarnessError, Result};
use crate::load::{Final, Recorder, Sender, UsageEvent};
use crate::report::ScenarioReport;
use crate::webhook_sink::WebhookSink;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const USERS: usize = 250;
/// Each step crosses the next default threshold of a 1.00 budget: 50, 75,
/// 90 and 100 %.
const STEPS: [i64; 4] = [50, 25, 15, 10];
const ALERTS: usize = USERS * STEPS.len();
/// How often idle nodes poll the outbox (ms); the wake after a commit is
/// what delivers, the poll is the fallback a duplicate would come from.
const POLL_MS: u64 = 200;

pub async fn run(env: &Env, params: &Params, report: &mut ScenarioReport, slot: &mut Option<Cluster>) -> Result<()> {
    let sink = WebhookSink::start().await?;
    let mut opts = ClusterOpts::cluster(&env.server_url);
    opts.flush_interval_ms = params.flush_interval_ms;
    opts.extra_args.extend([
        "--alerts-allow-private".to_string(),
        format!("--alert-poll-ms={POLL_MS}"),
    ]);
    let cluster = slot.insert(Cluster::start(&env.binary, 3, opts).await?);

    let channel = cluster
        .api(0)?
        .post(
            "/v1/alert-channels",
            &json!({"kind": "webhook", "target": sink.url("/hook")}),
        )
        .await?
        .ok_or_answer("POST /v1/alert-channels")?;
    report.info("webhook channel", true, channel.json["id"].to_string());

    let users: Vec<String> = (0..USERS).map(|i| format!("alerted-{i:04}")).collect();
    let budgets = users
        .iter()
        .map(|user| {
            (
                format!("/v1/users/{user}/budget"),
                json!({"monthly_budget_usd": "1.00"}),
            )
        })
        .collect();
    admin_put_each(cluster, budgets).await?;

    // The usage: step s of every user before step s + 1 of any, 16 at a
    // time, round-robin over the nodes.
    let recorder = Recorder::default();
    let sender = Sender::new(cluster.targets(), recorder.clone(), Duration::from_secs(15));
    let started = Instant::now();
    let mut acked = 0usize;
    for step in STEPS {
        let cost = Decimal::new(step, 2);
        let mut set = JoinSet::new();
        for user in &users {
            if set.len() >= 16
                && let Some(done) = set.join_next().await
            {
                acked += usize::from(joined(done)? == Final::Acked);
            }
            let (sender, event) = (sender.clone(), UsageEvent::new(user, cost));
            set.spawn(async move { Ok(sender.usage(&event).await) });
        }
        while let Some(done) = set.join_next().await {
            acked += usize::from(joined(done)? == Final::Acked);
        }
    }
    report.require(
        "every usage event acknowledged",
        acked == ALERTS,
        format!("{acked} of {ALERTS}"),
    );

    // Wait for every alert, then several more poll intervals for any
    // duplicate a second claim would send.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sink.counts().distinct() < ALERTS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_in = started.elapsed();
    tokio::time::sleep(Duration::from_millis(POLL_MS * 10)).await;
    let counts = sink.counts();
    report.require(
        "1 000 alerts reach the receiver",
        counts.distinct() == ALERTS && counts.without_id == 0,
        format!(
            "{} distinct webhook-ids, {} requests without one, all in {:.1} s after the first usage",
            counts.distinct(),
            counts.without_id,
            all_in.as_secs_f64()
        ),
    );
    report.require(
        "each delivered by exactly one node (0 duplicates)",
        counts.duplicates() == 0,
        format!("{} duplicate deliveries", counts.duplicates()),
    );

    let db = pool(cluster).await?;
    let fired: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_alerts WHERE kind = 'threshold'")
        .fetch_one(&db)
        .await?;
    let (delivered, once): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'delivered'), \
                count(*) FILTER (WHERE status = 'delivered' AND attempts = 1) \
         FROM alert_deliveries",
    )
    .fetch_one(&db)
    .await?;
    report.require(
        "1 000 threshold alerts, each delivered after one attempt",
        fired == ALERTS as i64 && delivered == ALERTS as i64 && once == ALERTS as i64,
        format!("{fired} alerts fired, {delivered} deliveries delivered, {once} of them at the first attempt"),
    );

    let mut shares = Vec::new();
    for i in 0..cluster.len() {
        let metrics = cluster.api(i)?.get("/metrics").await?;
        shares.push(format!("{}: {}", cluster.id(i), delivered_by(&metrics.json)));
    }
    report.info("deliveries by node", true, shares.join(", "));

    require_money_exact(report, &db, &recorder.report()).await?;
    require_no_errors(report, &recorder.report());
    Ok(())
}

fn joined<T>(done: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    done.map_err(|e| HarnessError::Config(format!("scenario task: {e}")))?
}

/// The webhook deliveries a node's `/metrics` text counts as delivered.
fn delivered_by(metrics: &Value) -> u64 {
    let Some(text) = metrics.as_str() else { return 0 };
    text.lines()
        .filter(|l| {
            l.starts_with("tollgate_alert_deliveries_total{")
                && l.contains("channel_kind=\"webhook\"")
                && l.contains("outcome=\"delivered\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}
