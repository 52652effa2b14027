//! Each delivery is sent by exactly one dispatcher: three dispatchers (as
//! three nodes would run them, each with its own lease owner) work the same
//! Postgres outbox at once; 1 000 alerts reach the receiver once each
//! (counted per `webhook-id`). The cluster-of-3 version of this check is
//! for the cluster harness; this one isolates the claim and lease.

mod common;
mod receivers;

use common::{Backend, TestDb};
use receivers::{Receiver, until};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;
use tollgate::alerts::dispatcher::{DispatchSettings, Dispatcher};
use tollgate::alerts::{AlertConfig, Senders, signature};
use tollgate::entity::EntityKey;
use tollgate::limits::calendar::now_ms;
use tollgate::money::Usd;
use tollgate::store::{ChannelKind, NewChannel, Store, UsageRow, UsageSubject};

const ALERTS: usize = 1000;

async fn three_dispatchers_deliver_each_alert_once(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let store = Store::open(&db.url).await.expect("store");
    let receiver = Receiver::start(vec![]).await;
    store
        .create_channel(&NewChannel {
            id: "ach_claims".into(),
            kind: ChannelKind::Webhook,
            target: receiver.url("/claims"),
            org_id: None,
            secret: Some(signature::new_secret()),
            created_by: None,
        })
        .await
        .expect("channel");
    let now = now_ms();
    let mut rows = Vec::with_capacity(ALERTS);
    for i in 0..ALERTS {
        let user = format!("c{i}");
        store
            .put_budget(
                &EntityKey::user(&user).expect("key"),
                Some(Usd::new(1.into()).expect("usd")),
            )
            .await
            .expect("budget");
        rows.push(UsageRow {
            event_id: uuid::Uuid::new_v4(),
            reservation_id: None,
            subject: UsageSubject {
                user_id: Some(user),
                ..UsageSubject::default()
            },
            model: "m".into(),
            input_tokens: 1,
            output_tokens: 1,
            cost_usd: Usd::new("0.6".parse().expect("decimal")).expect("usd"),
            created_at_ms: now,
        });
    }
    let recorded = store.record_usage_batch(&rows).await.expect("recorded");
    assert_eq!(recorded.alerts.deliveries, ALERTS as u64);

    let config = AlertConfig {
        alerts_allow_private: true,
        alert_concurrency: 16,
        alert_poll_ms: 50,
        ..AlertConfig::default()
    };
    let nodes: Vec<_> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|id| {
            let wake = Arc::new(Notify::new());
            wake.notify_one();
            Dispatcher::new(
                Arc::new(store.clone()),
                Senders::new(&config).expect("senders"),
                id,
                DispatchSettings::from_config(&config),
                wake,
            )
            .spawn()
        })
        .collect();
    until(120, "every alert delivered", || receiver.received().len() >= ALERTS).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.outbox_depth().await.expect("depth") > 0 {
        assert!(std::time::Instant::now() < deadline, "the outbox did not drain");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for node in nodes {
        node.stop().await;
    }
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in receiver.received() {
        *per_id.entry(r.header("webhook-id").to_string()).or_default() += 1;
    }
    let duplicates: usize = per_id.values().map(|n| n - 1).sum();
    eprintln!("{} webhook-ids, {duplicates} duplicates", per_id.len());
    assert_eq!(per_id.len(), ALERTS);
    assert_eq!(duplicates, 0, "no delivery was sent by two dispatchers");
}
on_both_backends!(three_dispatchers_deliver_each_alert_once);
