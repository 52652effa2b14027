//! Budget alerts end to end on one node: usage through the API and the
//! ledger, alerts and deliveries written in its transaction, the
//! dispatcher woken by the commit, a webhook receiver and an SMTP sink on
//! loopback (both started here). SQLite and Postgres.

mod common;
mod receivers;

use common::{Backend, TestDb, TestNode};
use receivers::{Receiver, SmtpSink, until};
use serde_json::json;
use std::collections::HashMap;
use tollgate::alerts::signature;
use tollgate::limits::calendar::{Period, now_ms};
use tollgate::money::Usd;
use tollgate::store::{ChannelKind, NewChannel, UsageRow, UsageSubject};

async fn node(db: &TestDb, smtp: &SmtpSink) -> TestNode {
    let url = smtp.url();
    TestNode::start_with(db, move |c| {
        c.alerts.alerts_allow_private = true;
        c.alerts.smtp_url = Some(url);
        c.alerts.alert_retry_base_ms = 200;
    })
    .await
}

async fn channel(n: &TestNode, kind: ChannelKind, target: String, org_id: Option<&str>) -> Option<String> {
    let secret = (kind == ChannelKind::Webhook).then(signature::new_secret);
    n.state
        .store
        .create_channel(&NewChannel {
            id: format!("ach_{}", uuid::Uuid::new_v4().simple()),
            kind,
            target,
            org_id: org_id.map(str::to_string),
            secret: secret.clone(),
            created_by: None,
        })
        .await
        .expect("create channel");
    secret
}

async fn spend(n: &TestNode, user: &str, cost: &str) {
    let r = n
        .usage(json!({"event_id": uuid::Uuid::new_v4(), "user_id": user, "model": "m",
                      "input_tokens": 1, "output_tokens": 1, "cost_usd": cost}))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
}

/// The node's Prometheus text (`/metrics`, admin credential).
async fn metrics(n: &TestNode) -> String {
    n.client
        .get(format!("{}/metrics", n.base))
        .bearer_auth(common::ADMIN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// Waits until the outbox has nothing pending.
async fn drained(n: &TestNode) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while n.state.store.outbox_depth().await.expect("depth") > 0 {
        assert!(std::time::Instant::now() < deadline, "the outbox did not drain");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Acceptance 1: a $10 budget crossed at 50/75/90/100 % gives exactly
/// four signed webhooks and four emails; more spend that month adds only
/// the one overage alert, then nothing; a new month fires afresh.
async fn each_threshold_is_delivered_once_per_channel(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let receiver = Receiver::start(vec![]).await;
    let smtp = SmtpSink::start().await;
    let n = node(&db, &smtp).await;
    let secret = channel(&n, ChannelKind::Webhook, receiver.url("/budget"), None)
        .await
        .unwrap();
    channel(&n, ChannelKind::Email, "finance@example.com".into(), None).await;
    assert_eq!(
        n.put("/v1/users/alice/budget", json!({"monthly_budget_usd": "10"}))
            .await
            .status,
        200
    );

    for cost in ["5", "2.5", "1.5", "1"] {
        spend(&n, "alice", cost).await;
    }
    until(30, "4 webhooks and 4 emails", || {
        receiver.received().len() >= 4 && smtp.mails().len() >= 4
    })
    .await;
    drained(&n).await;
    let hooks = receiver.received();
    assert_eq!(hooks.len(), 4);
    assert_eq!(smtp.mails().len(), 4);
    let mut seen: HashMap<u64, String> = HashMap::new();
    for h in &hooks {
        assert!(
            signature::verify(
                &secret,
                h.header("webhook-id"),
                h.header("webhook-timestamp"),
                &h.body,
                h.header("webhook-signature")
            ),
            "valid signature"
        );
        let body = h.json();
        assert_eq!(body["type"], "budget.threshold");
        assert_eq!(body["entity"], "user:alice");
        assert_eq!(body["limit_usd"], "10");
        seen.insert(
            body["threshold_pct"].as_u64().unwrap(),
            body["spent_usd"].as_str().unwrap().to_string(),
        );
    }
    let expected: HashMap<u64, String> = [(50, "5"), (75, "7.5"), (90, "9"), (100, "10")]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    assert_eq!(seen, expected, "one per threshold, with the spend that crossed it");
    for pct in [50, 75, 90, 100] {
        assert_eq!(
            smtp.mails()
                .iter()
                .filter(|m| m.data.contains(&format!("Threshold:  {pct} %")))
                .count(),
            1
        );
    }

    // Past the limit: the overage alert, once; then nothing more.
    spend(&n, "alice", "0.5").await;
    spend(&n, "alice", "3").await;
    drained(&n).await;
    let hooks = receiver.received();
    assert_eq!(hooks.len(), 5, "only the overage was added");
    assert_eq!(hooks[4].json()["type"], "budget.overage");
    assert_eq!(smtp.mails().len(), 5);

    // A new month: through the ledger with next month's time.
    let next = Period::containing(now_ms()).next();
    for cost in ["6", "5"] {
        n.state
            .ledger
            .record(UsageRow {
                event_id: uuid::Uuid::new_v4(),
                reservation_id: None,
                subject: UsageSubject {
                    user_id: Some("alice".into()),
                    ..UsageSubject::default()
                },
                model: "m".into(),
                input_tokens: 1,
                output_tokens: 1,
                cost_usd: Usd::new(cost.parse().unwrap()).unwrap(),
                created_at_ms: next.start_ms() + 60_000,
            })
            .await
            .expect("recorded");
    }
    drained(&n).await;
    let fresh: Vec<serde_json::Value> = receiver.received()[5..].iter().map(|h| h.json()).collect();
    let mut pcts: Vec<(String, u64)> = fresh
        .iter()
        .map(|b| {
            (
                b["type"].as_str().unwrap().to_string(),
                b["threshold_pct"].as_u64().unwrap(),
            )
        })
        .collect();
    pcts.sort();
    assert_eq!(
        pcts,
        vec![
            ("budget.overage".to_string(), 100),
            ("budget.threshold".to_string(), 50),
            ("budget.threshold".to_string(), 75),
            ("budget.threshold".to_string(), 90),
            ("budget.threshold".to_string(), 100),
        ],
        "the new month fires afresh"
    );
    assert!(
        fresh
            .iter()
            .all(|b| b["period_start"] == tollgate::limits::calendar::rfc3339(next.start_ms()))
    );
    assert_eq!(smtp.mails().len(), 10);
    let text = metrics(&n).await;
    for series in [
        r#"tollgate_alerts_fired_total{kind="threshold"}"#,
        r#"tollgate_alerts_fired_total{kind="overage"}"#,
        r#"tollgate_alert_deliveries_total{channel_kind="webhook",outcome="delivered"}"#,
        r#"tollgate_alert_deliveries_total{channel_kind="email",outcome="delivered"}"#,
        "tollgate_alert_delivery_latency_seconds",
        "tollgate_alert_outbox_depth",
    ] {
        assert!(text.contains(series), "{series} in /metrics");
    }
    n.stop().await;
}
on_both_backends!(each_threshold_is_delivered_once_per_channel);

/// A 404 receiver: dead after one attempt, recorded on the delivery.
async fn a_refusing_receiver_is_dead_after_one_attempt(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let receiver = Receiver::start(vec![receivers::Reply::Status(404)]).await;
    let smtp = SmtpSink::start().await;
    let n = node(&db, &smtp).await;
    channel(&n, ChannelKind::Webhook, receiver.url("/gone"), None).await;
    assert_eq!(
        n.put("/v1/users/bob/budget", json!({"monthly_budget_usd": "1"}))
            .await
            .status,
        200
    );
    spend(&n, "bob", "0.6").await;
    drained(&n).await;
    assert_eq!(receiver.received().len(), 1);
    let alerts = n
        .state
        .store
        .alerts(&tollgate::store::AlertScope::All, 0, 10)
        .await
        .expect("alerts");
    assert_eq!(alerts.len(), 1);
    let d = &alerts[0].deliveries[0];
    assert_eq!((d.status.as_str(), d.attempts), ("dead", 1));
    assert_eq!(d.last_error.as_deref(), Some("HTTP 404"));
    let text = metrics(&n).await;
    assert!(
        text.contains("tollgate_alert_deliveries_dead_total"),
        "dead deliveries counted"
    );
    assert!(text.contains(r#"tollgate_alert_deliveries_total{channel_kind="webhook",outcome="dead"}"#));
    n.stop().await;
}
on_both_backends!(a_refusing_receiver_is_dead_after_one_attempt);
