//! Org isolation on the delivery side: an organisation's channels receive
//! its own alerts and its members' alerts, never another organisation's;
//! platform channels (no org) receive every alert. SQLite and Postgres.

mod common;
mod receivers;

use common::{Backend, TestDb};
use receivers::{Receiver, until};
use std::sync::Arc;
use tokio::sync::Notify;
use tollgate::alerts::dispatcher::{DispatchSettings, Dispatcher};
use tollgate::alerts::{AlertConfig, Senders, signature};
use tollgate::entity::EntityKey;
use tollgate::limits::calendar::now_ms;
use tollgate::money::Usd;
use tollgate::store::{ChannelKind, NewChannel, OrgRecord, Store, UsageRow, UsageSubject};

async fn channel(store: &Store, receiver: &Receiver, org: Option<&str>) {
    store
        .create_channel(&NewChannel {
            id: format!("ach_{}", uuid::Uuid::new_v4().simple()),
            kind: ChannelKind::Webhook,
            target: receiver.url("/"),
            org_id: org.map(str::to_string),
            secret: Some(signature::new_secret()),
            created_by: None,
        })
        .await
        .expect("channel");
}

fn usage(user: &str, org: &str, cost: &str) -> UsageRow {
    UsageRow {
        event_id: uuid::Uuid::new_v4(),
        reservation_id: None,
        subject: UsageSubject {
            user_id: Some(user.into()),
            organization_id: Some(org.into()),
            ..UsageSubject::default()
        },
        model: "m".into(),
        input_tokens: 1,
        output_tokens: 1,
        cost_usd: Usd::new(cost.parse().expect("decimal")).expect("usd"),
        created_at_ms: now_ms(),
    }
}

fn entities(r: &Receiver) -> Vec<String> {
    let mut e: Vec<String> = r
        .received()
        .iter()
        .map(|h| h.json()["entity"].as_str().expect("entity").to_string())
        .collect();
    e.sort();
    e
}

async fn org_channels_get_only_their_orgs_alerts(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let store = Store::open(&db.url).await.expect("store");
    let tier = store.load_tiers().await.expect("tiers")[0].name.clone();
    for (org, owner) in [("orga", "ua"), ("orgb", "ub")] {
        store.put_user(owner, &tier).await.expect("user");
        store
            .create_org(&OrgRecord {
                id: org.into(),
                name: org.into(),
                billing_email: None,
                tier: tier.clone(),
                owner_user_id: owner.into(),
                created_at_ms: now_ms(),
            })
            .await
            .expect("org");
    }
    let one = Some(Usd::new(1.into()).expect("usd"));
    for key in ["user:ua", "user:ub", "org:orga"] {
        store
            .put_budget(&EntityKey::parse(key).expect("key"), one)
            .await
            .expect("budget");
    }
    let (a, b, platform) = (
        Receiver::start(vec![]).await,
        Receiver::start(vec![]).await,
        Receiver::start(vec![]).await,
    );
    channel(&store, &a, Some("orga")).await;
    channel(&store, &b, Some("orgb")).await;
    channel(&store, &platform, None).await;

    // ua (org A) crosses 50 % of its budget, and so does org A; ub (org B)
    // crosses 50 % of its own. Org B has no budget.
    store
        .record_usage_batch(&[usage("ua", "orga", "0.6"), usage("ub", "orgb", "0.6")])
        .await
        .expect("recorded");

    let config = AlertConfig {
        alerts_allow_private: true,
        ..AlertConfig::default()
    };
    let wake = Arc::new(Notify::new());
    wake.notify_one();
    let dispatcher = Dispatcher::new(
        Arc::new(store.clone()),
        Senders::new(&config).expect("senders"),
        "iso",
        DispatchSettings::from_config(&config),
        wake,
    )
    .spawn();
    until(30, "the platform channel to get all 3 alerts", || {
        platform.received().len() >= 3
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.outbox_depth().await.expect("depth") > 0 {
        assert!(std::time::Instant::now() < deadline, "the outbox did not drain");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    dispatcher.stop().await;
    assert_eq!(entities(&platform), vec!["org:orga", "user:ua", "user:ub"]);
    assert_eq!(
        entities(&a),
        vec!["org:orga", "user:ua"],
        "org A: itself and its member"
    );
    assert_eq!(
        entities(&b),
        vec!["user:ub"],
        "org B: its member only, nothing of org A"
    );
}
on_both_backends!(org_channels_get_only_their_orgs_alerts);
