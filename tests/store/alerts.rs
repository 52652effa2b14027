//! Alerts in the store on both backends: deliveries written with the spend
//! that crossed a threshold (to the right channels only), per-budget
//! thresholds and the overage, the outbox's claim/lease/outcome cycle, the
//! alert read, and the 0005 migration on a database an older release left.

use super::*;
use tollgate::limits::alerts::{AlertKind, Thresholds};
use tollgate::store::testing::{fresh_postgres_at, fresh_sqlite_at, insert_legacy_alert};
use tollgate::store::{
    AlertScope, ChannelKind, ChannelScope, CreateOrgOutcome, DeliveryStatus, NewChannel, OrgRecord, OrgRole,
};

both!(
    check_deliveries_follow_the_alert_to_its_channels,
    check_thresholds_per_budget_and_overage,
    check_outbox_claim_lease_and_outcomes,
    check_alert_reads_by_scope,
    check_three_claimers_never_share_a_delivery,
    check_member_caps_raise_alerts,
);

fn channel(id: &str, kind: ChannelKind, org_id: Option<&str>) -> NewChannel {
    NewChannel {
        id: id.into(),
        kind,
        target: match kind {
            ChannelKind::Email => "ops@example.com".into(),
            _ => format!("https://hooks.example.com/{id}"),
        },
        org_id: org_id.map(Into::into),
        secret: (kind == ChannelKind::Webhook).then(|| "whsec_c2VjcmV0".to_string()),
        created_by: Some("test".into()),
    }
}

async fn org_with_member(store: &Store, org_id: &str, user_id: &str) {
    let created = store
        .create_org(&OrgRecord {
            id: org_id.into(),
            name: org_id.into(),
            billing_email: None,
            tier: "free".into(),
            owner_user_id: format!("{org_id}-owner"),
            created_at_ms: NOW,
        })
        .await
        .unwrap();
    assert_eq!(created, CreateOrgOutcome::Created);
    store.put_member(org_id, user_id, OrgRole::Member).await.unwrap();
}

async fn check_deliveries_follow_the_alert_to_its_channels(store: Store) {
    org_with_member(&store, "org-a", "alice").await;
    org_with_member(&store, "org-b", "bob").await;
    store
        .create_channel(&channel("ach_global", ChannelKind::Webhook, None))
        .await
        .unwrap();
    store
        .create_channel(&channel("ach_a", ChannelKind::Email, Some("org-a")))
        .await
        .unwrap();
    store
        .create_channel(&channel("ach_b", ChannelKind::Slack, Some("org-b")))
        .await
        .unwrap();
    store
        .create_channel(&channel("ach_gone", ChannelKind::Webhook, None))
        .await
        .unwrap();
    assert!(store.delete_channel("ach_gone").await.unwrap());
    assert!(!store.delete_channel("ach_gone").await.unwrap());

    store.put_budget(&user("alice"), Some(usd("10"))).await.unwrap();
    store
        .put_budget(&EntityKey::org("org-b").unwrap(), Some(usd("10")))
        .await
        .unwrap();

    // Alice crosses 50 %: platform channel and her org's, not org B's.
    let batch = store
        .record_usage_batch(&[row(Uuid::new_v4(), user_subject("alice"), "5", NOW)])
        .await
        .unwrap();
    assert_eq!(
        (batch.alerts.threshold, batch.alerts.overage, batch.alerts.deliveries),
        (1, 0, 2)
    );
    // The same threshold again fires nothing and delivers nothing.
    let batch = store
        .record_usage_batch(&[row(Uuid::new_v4(), user_subject("alice"), "0.01", NOW)])
        .await
        .unwrap();
    assert_eq!(batch.alerts.deliveries, 0);

    // Org B's own budget crosses 50 % and 75 %: two alerts, each to the
    // platform channel and org B's.
    let org_b = UsageSubject {
        user_id: Some("bob".into()),
        organization_id: Some("org-b".into()),
        ..UsageSubject::default()
    };
    let batch = store
        .record_usage_batch(&[row(Uuid::new_v4(), org_b, "8", NOW)])
        .await
        .unwrap();
    assert_eq!((batch.alerts.threshold, batch.alerts.deliveries), (2, 4));

    let jobs = store.claim_deliveries("node-1", 100, 60_000).await.unwrap();
    let mut seen: Vec<(String, String)> = jobs
        .iter()
        .map(|j| (j.alert.entity.clone(), j.channel.id.clone()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("org:org-b".into(), "ach_b".into()),
            ("org:org-b".into(), "ach_b".into()),
            ("org:org-b".into(), "ach_global".into()),
            ("org:org-b".into(), "ach_global".into()),
            ("user:alice".into(), "ach_a".into()),
            ("user:alice".into(), "ach_global".into()),
        ]
    );
    let alice_global = jobs
        .iter()
        .find(|j| j.channel.id == "ach_global" && j.alert.entity == "user:alice")
        .unwrap();
    assert_eq!(alice_global.channel.kind, ChannelKind::Webhook);
    assert_eq!(alice_global.channel.secret.as_deref(), Some("whsec_c2VjcmV0"));
    assert_eq!(alice_global.alert.threshold_pct, 50);
    assert_eq!(alice_global.alert.kind, AlertKind::Threshold);
    assert_eq!(alice_global.alert.spent_usd, d("5"));
    assert_eq!(alice_global.alert.limit_usd, d("10"));
    assert_eq!(alice_global.alert.period, Period::containing(NOW));
    assert_eq!(alice_global.attempts, 1);
    let email = jobs.iter().find(|j| j.channel.id == "ach_a").unwrap();
    assert_eq!(email.channel.secret, None);
    assert_eq!(email.channel.target, "ops@example.com");
    // Each delivery has its own id; the two of one alert share the alert.
    let ids: HashSet<Uuid> = jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids.len(), jobs.len());
    assert_eq!(email.alert.id, alice_global.alert.id);

    // Deleting a channel kills its pending deliveries.
    assert!(store.delete_channel("ach_b").await.unwrap());
    assert_eq!(store.outbox_depth().await.unwrap(), 4);
    let listed: Vec<String> = store
        .channels(&ChannelScope::All, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(listed, vec!["ach_a".to_string(), "ach_global".to_string()]);
    let page: Vec<String> = store
        .channels(&ChannelScope::All, Some("ach_a"), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(page, vec!["ach_global".to_string()]);
    let platform = store.channels(&ChannelScope::Platform, None, 100).await.unwrap();
    assert_eq!(platform.len(), 1);
    assert_eq!(platform[0].id, "ach_global");
    let org_a = store
        .channels(&ChannelScope::Org("org-a".into()), None, 100)
        .await
        .unwrap();
    assert_eq!(org_a.len(), 1);
    assert_eq!(org_a[0].org_id.as_deref(), Some("org-a"));
    assert!(store.channel("ach_b").await.unwrap().is_none());
}

async fn check_thresholds_per_budget_and_overage(store: Store) {
    let period = Period::containing(NOW);
    let u = user("custom");
    let thresholds = Thresholds::new(&[20, 80]).unwrap();
    store
        .put_budget_with_thresholds(&u, Some(usd("10")), Some(&thresholds))
        .await
        .unwrap();
    for (cost, expect) in [("1", vec![]), ("1", vec![20]), ("6", vec![20, 80]), ("2", vec![20, 80])] {
        let batch = store
            .record_usage_batch(&[row(Uuid::new_v4(), user_subject("custom"), cost, NOW)])
            .await
            .unwrap();
        assert_eq!(batch.alerts.overage, 0);
        assert_eq!(store.alerts_fired(&u, period).await.unwrap(), expect, "after {cost}");
    }
    // Spend reaches exactly 100 %: 100 is not in this list, and reaching
    // the limit is not an overage. Going past it is, once.
    let batch = store
        .record_usage_batch(&[row(Uuid::new_v4(), user_subject("custom"), "0.01", NOW)])
        .await
        .unwrap();
    assert_eq!((batch.alerts.threshold, batch.alerts.overage), (0, 1));
    let batch = store
        .record_usage_batch(&[row(Uuid::new_v4(), user_subject("custom"), "5", NOW)])
        .await
        .unwrap();
    assert_eq!((batch.alerts.threshold, batch.alerts.overage), (0, 0));
    let all = store.alerts(&AlertScope::Entity(u.clone()), 0, 100).await.unwrap();
    let mut kinds: Vec<(AlertKind, u8)> = all.iter().map(|a| (a.alert.kind, a.alert.threshold_pct)).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            (AlertKind::Threshold, 20),
            (AlertKind::Threshold, 80),
            (AlertKind::Overage, 100)
        ]
    );

    // Putting the budget again without thresholds restores the defaults.
    let w = user("defaults");
    store
        .put_budget_with_thresholds(&w, Some(usd("1")), Some(&thresholds))
        .await
        .unwrap();
    store.put_budget(&w, Some(usd("1"))).await.unwrap();
    store
        .record_usage(&[row(Uuid::new_v4(), user_subject("defaults"), "0.9", NOW)])
        .await
        .unwrap();
    assert_eq!(store.alerts_fired(&w, period).await.unwrap(), vec![50, 75, 90]);
    // A new month fires afresh.
    let next = period.next().start_ms();
    store
        .record_usage(&[row(Uuid::new_v4(), user_subject("defaults"), "0.5", next)])
        .await
        .unwrap();
    assert_eq!(store.alerts_fired(&w, period.next()).await.unwrap(), vec![50]);
}

async fn check_outbox_claim_lease_and_outcomes(store: Store) {
    store
        .create_channel(&channel("ach_1", ChannelKind::Webhook, None))
        .await
        .unwrap();
    store.put_budget(&user("leased"), Some(usd("1"))).await.unwrap();
    store
        .record_usage(&[row(Uuid::new_v4(), user_subject("leased"), "0.5", NOW)])
        .await
        .unwrap();
    assert_eq!(store.outbox_depth().await.unwrap(), 1);

    let jobs = store.claim_deliveries("node-1", 10, 60_000).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let job = jobs[0].clone();
    assert_eq!(job.attempts, 1);
    // Leased: nobody else gets it, not even the same node.
    assert!(store.claim_deliveries("node-2", 10, 60_000).await.unwrap().is_empty());
    assert!(store.claim_deliveries("node-1", 10, 60_000).await.unwrap().is_empty());
    // Only the lease holder records an outcome.
    assert!(!store.mark_delivered(job.id, "node-2").await.unwrap());
    assert!(!store.mark_dead(job.id, "node-2", "x").await.unwrap());

    // A retry due now is claimable again: same id, one more attempt.
    let long_error = "e".repeat(5_000);
    assert!(store.mark_retry(job.id, "node-1", NOW - 1, &long_error).await.unwrap());
    assert!(!store.mark_retry(job.id, "node-1", NOW - 1, "again").await.unwrap());
    let again = store.claim_deliveries("node-2", 10, 60_000).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, job.id);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].created_at_ms, job.created_at_ms);
    // node-1 lost the lease.
    assert!(!store.mark_delivered(job.id, "node-1").await.unwrap());

    // A node that restarts gives its leases up at once.
    assert_eq!(store.release_leases("node-2").await.unwrap(), 1);
    let third = store.claim_deliveries("node-3", 10, 60_000).await.unwrap();
    assert_eq!(third[0].attempts, 3);
    // A retry in the future is not due.
    let far = tollgate::limits::calendar::now_ms() + 3_600_000;
    assert!(store.mark_retry(job.id, "node-3", far, "503").await.unwrap());
    assert!(store.claim_deliveries("node-3", 10, 60_000).await.unwrap().is_empty());

    let read = store.alerts(&AlertScope::Entity(user("leased")), 0, 10).await.unwrap();
    assert_eq!(read.len(), 1);
    let delivery = &read[0].deliveries[0];
    assert_eq!(delivery.status, DeliveryStatus::Pending);
    assert_eq!(delivery.attempts, 3);
    assert_eq!(delivery.last_error.as_deref(), Some("503"));

    // Delivered: recorded once, then out of the outbox.
    store.put_budget(&user("ok"), Some(usd("1"))).await.unwrap();
    store
        .record_usage(&[row(Uuid::new_v4(), user_subject("ok"), "1", NOW)])
        .await
        .unwrap();
    let jobs = store.claim_deliveries("node-3", 10, 60_000).await.unwrap();
    assert_eq!(jobs.len(), 4);
    for job in &jobs[..3] {
        assert!(store.mark_delivered(job.id, "node-3").await.unwrap());
        assert!(!store.mark_delivered(job.id, "node-3").await.unwrap());
    }
    assert!(store.mark_dead(jobs[3].id, "node-3", "404 Not Found").await.unwrap());
    assert!(!store.mark_retry(jobs[3].id, "node-3", NOW, "late").await.unwrap());
    assert_eq!(store.outbox_depth().await.unwrap(), 1);
    let read = store.alerts(&AlertScope::Entity(user("ok")), 0, 10).await.unwrap();
    let statuses: HashSet<(DeliveryStatus, bool)> = read
        .iter()
        .map(|a| (a.deliveries[0].status, a.deliveries[0].delivered_at_ms.is_some()))
        .collect();
    assert_eq!(
        statuses,
        HashSet::from([(DeliveryStatus::Delivered, true), (DeliveryStatus::Dead, false)])
    );
    let dead = read
        .iter()
        .find(|a| a.deliveries[0].status == DeliveryStatus::Dead)
        .unwrap();
    assert_eq!(dead.deliveries[0].last_error.as_deref(), Some("404 Not Found"));
}

async fn check_alert_reads_by_scope(store: Store) {
    org_with_member(&store, "org-a", "alice").await;
    org_with_member(&store, "org-b", "bob").await;
    for entity in [
        user("alice"),
        user("bob"),
        EntityKey::org("org-a").unwrap(),
        user("loner"),
    ] {
        store.put_budget(&entity, Some(usd("1"))).await.unwrap();
    }
    for subject in [
        UsageSubject {
            user_id: Some("alice".into()),
            organization_id: Some("org-a".into()),
            ..UsageSubject::default()
        },
        user_subject("bob"),
        user_subject("loner"),
    ] {
        store
            .record_usage(&[row(Uuid::new_v4(), subject, "0.5", NOW)])
            .await
            .unwrap();
    }
    let entities = |records: Vec<tollgate::store::AlertRecord>| -> Vec<String> {
        let mut out: Vec<String> = records.into_iter().map(|r| r.alert.entity).collect();
        out.sort();
        out
    };
    assert_eq!(
        entities(store.alerts(&AlertScope::Org("org-a".into()), 0, 100).await.unwrap()),
        vec!["org:org-a".to_string(), "user:alice".to_string()]
    );
    assert_eq!(
        entities(store.alerts(&AlertScope::Entity(user("bob")), 0, 100).await.unwrap()),
        vec!["user:bob".to_string()]
    );
    assert_eq!(store.alerts(&AlertScope::All, 0, 100).await.unwrap().len(), 4);
    assert_eq!(store.alerts(&AlertScope::All, 0, 2).await.unwrap().len(), 2);
    let future = tollgate::limits::calendar::now_ms() + 3_600_000;
    assert!(store.alerts(&AlertScope::All, future, 100).await.unwrap().is_empty());
}

/// 0005 on a database 0004 left: old alerts keep their once-only key and
/// get ids; budgets keep working.
async fn check_alerts_migration_on_old_database(store: Store) {
    let period = Period::containing(NOW);
    insert_legacy_alert(&store, "user:old", &period.to_string(), 50).await;
    insert_legacy_alert(&store, "user:old", &period.to_string(), 75).await;
    store.migrate().await.unwrap();
    let read = store.alerts(&AlertScope::Entity(user("old")), 0, 10).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_ne!(read[0].alert.id, read[1].alert.id);
    assert!(read.iter().all(|r| r.alert.kind == AlertKind::Threshold));
    // 50 and 75 already fired: crossing them again fires 90 only.
    store.put_budget(&user("old"), Some(usd("10"))).await.unwrap();
    let batch = store
        .record_usage_batch(&[row(Uuid::new_v4(), user_subject("old"), "9", NOW)])
        .await
        .unwrap();
    assert_eq!(batch.alerts.threshold, 1);
    assert_eq!(
        store.alerts_fired(&user("old"), period).await.unwrap(),
        vec![50, 75, 90]
    );
    store.migrate().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_migration_on_old_sqlite() {
    let (store, _dir) = fresh_sqlite_at(4).await;
    check_alerts_migration_on_old_database(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_migration_on_old_postgres() {
    if let Some(store) = fresh_postgres_at(4).await {
        check_alerts_migration_on_old_database(store.clone()).await;
        drop_postgres(store).await;
    }
}

/// Three dispatchers (three nodes' worth of claims, each on its own
/// connections and transactions) work through 1 000 deliveries at once:
/// every delivery is claimed by exactly one of them, and all are sent.
async fn check_three_claimers_never_share_a_delivery(store: Store) {
    store
        .create_channel(&channel("ach_all", ChannelKind::Webhook, None))
        .await
        .unwrap();
    let users: Vec<String> = (0..1000).map(|i| format!("crowd-{i}")).collect();
    for u in &users {
        store.put_budget(&user(u), Some(usd("1"))).await.unwrap();
    }
    let rows: Vec<UsageRow> = users
        .iter()
        .map(|u| row(Uuid::new_v4(), user_subject(u), "0.5", NOW))
        .collect();
    let batch = store.record_usage_batch(&rows).await.unwrap();
    assert_eq!(batch.alerts.deliveries, 1000);

    let claimers: Vec<_> = (0..3)
        .map(|node| {
            let store = store.clone();
            tokio::spawn(async move {
                let owner = format!("node-{node}");
                let mut mine = Vec::new();
                loop {
                    let jobs = store.claim_deliveries(&owner, 25, 60_000).await.unwrap();
                    if jobs.is_empty() {
                        break;
                    }
                    for job in jobs {
                        assert!(store.mark_delivered(job.id, &owner).await.unwrap());
                        mine.push(job.id);
                    }
                }
                mine
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let distinct: HashSet<Uuid> = all.iter().copied().collect();
    assert_eq!(all.len(), 1000, "every delivery sent once");
    assert_eq!(distinct.len(), 1000, "no delivery claimed twice");
    assert_eq!(store.outbox_depth().await.unwrap(), 0);
}

/// An organisation's cap on a member is the budget the member runs with
/// when it is lower than their own (or they have none): alerts follow it.
async fn check_member_caps_raise_alerts(store: Store) {
    let period = Period::containing(NOW);
    org_with_member(&store, "org-c", "capped").await;
    store.put_member("org-c", "both", OrgRole::Member).await.unwrap();
    assert!(store.put_member_cap("org-c", "capped", Some(usd("2"))).await.unwrap());
    store
        .record_usage(&[row(Uuid::new_v4(), user_subject("capped"), "1.5", NOW)])
        .await
        .unwrap();
    assert_eq!(store.alerts_fired(&user("capped"), period).await.unwrap(), vec![50, 75]);
    // Own budget $10, cap $4: alerts at 50 % of $4.
    store.put_budget(&user("both"), Some(usd("10"))).await.unwrap();
    assert!(store.put_member_cap("org-c", "both", Some(usd("4"))).await.unwrap());
    let batch = store
        .record_usage_batch(&[row(Uuid::new_v4(), user_subject("both"), "2", NOW)])
        .await
        .unwrap();
    assert_eq!(batch.alerts.threshold, 1);
    let read = store.alerts(&AlertScope::Entity(user("both")), 0, 10).await.unwrap();
    assert_eq!(read[0].alert.limit_usd, d("4"));
}
