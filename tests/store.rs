//! The store's behaviour, run against both backends: SQLite always,
//! Postgres when `TOLLGATE_TEST_DATABASE_URL` is set (CI always sets it).
//!
//! Each behaviour is written once as `async fn check_x(store: Store)`;
//! `both!` turns it into a `sqlite` and a `postgres` test.

use rust_decimal::Decimal;
use std::collections::HashSet;
use tollgate::entity::EntityKey;
use tollgate::limits::calendar::{DAY_MS, Period};
use tollgate::limits::pricing::Price;
use tollgate::limits::tier::Tier;
use tollgate::money::Usd;
use tollgate::store::testing::{drop_postgres, fresh_postgres, fresh_sqlite};
use tollgate::store::{CounterDelta, Store, UsageOutcome, UsageRow, UsageSubject, WindowCount, WindowKind};
use uuid::Uuid;

macro_rules! both {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (store, _dir) = fresh_sqlite().await;
                super::$check(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(store) = fresh_postgres().await {
                    super::$check(store.clone()).await;
                    drop_postgres(store).await;
                }
            }
        }
    )*};
}

// Alert channels, deliveries and reads.
#[path = "store/alerts.rs"]
mod alerts;
// Identity and tenancy: organisations and members, API keys, the usage summary.
#[path = "store/api_keys.rs"]
mod api_keys;
#[path = "store/consent.rs"]
mod consent;
#[path = "store/fencing.rs"]
mod fencing;
#[path = "store/orgs.rs"]
mod orgs;
#[path = "store/summary.rs"]
mod summary;

both!(
    check_money_is_exact,
    check_usage_is_idempotent,
    check_spend_is_per_entity_and_period,
    check_counter_deltas_add_up,
    check_load_entity_reads_current_windows,
    check_alerts_fire_once,
    check_tiers_round_trip,
    check_prices_round_trip,
    check_settings_first_writer_wins,
    check_users_and_budgets,
    check_concurrent_batches_count_once,
);

/// 2026-11-28T04:00:00Z.
const NOW: i64 = 1_795_838_400_000;

fn d(text: &str) -> Decimal {
    Decimal::from_str_exact(text).unwrap()
}

fn usd(text: &str) -> Usd {
    text.parse().unwrap()
}

fn user(id: &str) -> EntityKey {
    EntityKey::user(id).unwrap()
}

fn user_subject(id: &str) -> UsageSubject {
    UsageSubject {
        user_id: Some(id.into()),
        ..UsageSubject::default()
    }
}

fn row(event_id: Uuid, subject: UsageSubject, cost: &str, at_ms: i64) -> UsageRow {
    UsageRow {
        event_id,
        reservation_id: None,
        subject,
        model: "test-model".into(),
        input_tokens: 1234,
        output_tokens: 567,
        cost_usd: usd(cost),
        created_at_ms: at_ms,
    }
}

fn spend_of(outcome: &UsageOutcome, key: &EntityKey) -> Decimal {
    match outcome {
        UsageOutcome::Recorded { spend } => spend
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, total)| *total)
            .unwrap_or_else(|| panic!("{key} not charged in {outcome:?}")),
        UsageOutcome::Duplicate { .. } => panic!("expected Recorded, got {outcome:?}"),
    }
}

async fn check_money_is_exact(store: Store) {
    let period = Period::containing(NOW);
    let subject = UsageSubject {
        user_id: Some("auth0|exact".into()),
        organization_id: Some("org-exact".into()),
        ..UsageSubject::default()
    };
    let u = user("auth0|exact");
    let org = EntityKey::org("org-exact").unwrap();
    // The seed's example: 1 234 input and 567 output tokens at 3 / 15 USD.
    let price = Price {
        input_per_mtok_usd: usd("3"),
        output_per_mtok_usd: usd("15"),
    };
    let cost = price.cost(1234, 567);
    assert_eq!(cost.to_string(), "0.012207");

    let mut expected = Decimal::ZERO;
    for batch in 0..10 {
        let rows: Vec<UsageRow> = (0..100)
            .map(|i| UsageRow {
                cost_usd: cost,
                ..row(Uuid::new_v4(), subject.clone(), "0", NOW + batch * 1000 + i)
            })
            .collect();
        let outcomes = store.record_usage(&rows).await.unwrap();
        assert_eq!(outcomes.len(), 100);
        expected += Decimal::from(100) * cost.value();
        for outcome in &outcomes {
            // Every row of the batch reports the total after the batch.
            assert_eq!(spend_of(outcome, &u), expected);
            assert_eq!(spend_of(outcome, &org), expected);
        }
    }
    for key in [&u, &org] {
        let spend = store.entity_spend(key, period).await.unwrap();
        let ledger = store.ledger_sum(key, period).await.unwrap();
        assert_eq!(spend, d("12.207"), "{key} spend");
        assert_eq!(ledger, d("12.207"), "{key} ledger");
        assert_eq!(spend.to_string(), "12.207");
        assert_eq!(ledger.to_string(), "12.207");
    }

    // Tiny and large amounts stay exact too.
    let v = user("tiny");
    let rows = vec![
        row(Uuid::new_v4(), user_subject("tiny"), "0.000000000001", NOW),
        row(Uuid::new_v4(), user_subject("tiny"), "999999999.999999999999", NOW),
    ];
    store.record_usage(&rows).await.unwrap();
    assert_eq!(store.entity_spend(&v, period).await.unwrap(), d("1000000000"));
    assert_eq!(store.ledger_sum(&v, period).await.unwrap(), d("1000000000"));

    // Empty batches are a no-op.
    assert!(store.record_usage(&[]).await.unwrap().is_empty());
}

async fn check_usage_is_idempotent(store: Store) {
    let period = Period::containing(NOW);
    let u = user("idem");
    let a = Uuid::new_v4();
    let b = Uuid::new_v4();

    // The same event twice in one batch: the first wins.
    let outcomes = store
        .record_usage(&[
            row(a, user_subject("idem"), "0.25", NOW),
            row(b, user_subject("idem"), "0.5", NOW),
            row(a, user_subject("idem"), "7", NOW),
        ])
        .await
        .unwrap();
    assert_eq!(spend_of(&outcomes[0], &u), d("0.75"));
    assert_eq!(spend_of(&outcomes[1], &u), d("0.75"));
    assert_eq!(outcomes[2], UsageOutcome::Duplicate { cost_usd: d("0.25") });

    // Retried in later batches, alone and alongside a new event (and again
    // within that batch): nothing counts twice.
    let c = Uuid::new_v4();
    let outcomes = store
        .record_usage(&[
            row(b, user_subject("idem"), "100", NOW),
            row(c, user_subject("idem"), "0.125", NOW),
            row(b, user_subject("idem"), "200", NOW),
            row(a, user_subject("idem"), "300", NOW),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes[0], UsageOutcome::Duplicate { cost_usd: d("0.5") });
    assert_eq!(spend_of(&outcomes[1], &u), d("0.875"));
    assert_eq!(outcomes[2], UsageOutcome::Duplicate { cost_usd: d("0.5") });
    assert_eq!(outcomes[3], UsageOutcome::Duplicate { cost_usd: d("0.25") });

    let outcomes = store
        .record_usage(&[row(a, user_subject("idem"), "9", NOW)])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![UsageOutcome::Duplicate { cost_usd: d("0.25") }]);

    assert_eq!(store.entity_spend(&u, period).await.unwrap(), d("0.875"));
    assert_eq!(store.ledger_sum(&u, period).await.unwrap(), d("0.875"));
}

async fn check_spend_is_per_entity_and_period(store: Store) {
    let this = Period::containing(NOW);
    let next = this.next();
    let guest = UsageSubject {
        guest_ip: Some("::ffff:203.0.113.7".into()),
        guest_fingerprint: Some("fp-1".into()),
        ..UsageSubject::default()
    };
    let ip = EntityKey::ip_str("203.0.113.7").unwrap();
    let fp = EntityKey::fingerprint("fp-1").unwrap();
    let outcomes = store
        .record_usage(&[
            row(Uuid::new_v4(), guest.clone(), "0.1", NOW),
            row(Uuid::new_v4(), guest.clone(), "0.2", next.start_ms()),
            row(Uuid::new_v4(), guest.clone(), "0.3", next.start_ms() - 1),
            row(Uuid::new_v4(), user_subject("other"), "5", NOW),
            row(Uuid::new_v4(), UsageSubject::default(), "1", NOW),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes[0],
        UsageOutcome::Recorded {
            spend: vec![(ip.clone(), this, d("0.4")), (fp.clone(), this, d("0.4"))]
        }
    );
    assert_eq!(
        outcomes[1],
        UsageOutcome::Recorded {
            spend: vec![(ip.clone(), next, d("0.2")), (fp.clone(), next, d("0.2"))]
        }
    );
    // Nobody to charge: recorded in the ledger, no spend.
    assert_eq!(outcomes[4], UsageOutcome::Recorded { spend: vec![] });

    for key in [&ip, &fp] {
        assert_eq!(store.entity_spend(key, this).await.unwrap(), d("0.4"));
        assert_eq!(store.ledger_sum(key, this).await.unwrap(), d("0.4"));
        assert_eq!(store.entity_spend(key, next).await.unwrap(), d("0.2"));
        assert_eq!(store.ledger_sum(key, next).await.unwrap(), d("0.2"));
    }
    let other = user("other");
    assert_eq!(store.entity_spend(&other, this).await.unwrap(), d("5"));
    assert_eq!(store.entity_spend(&other, next).await.unwrap(), Decimal::ZERO);
    assert_eq!(store.ledger_sum(&other, next).await.unwrap(), Decimal::ZERO);
    assert_eq!(store.entity_spend(&user("nobody"), this).await.unwrap(), Decimal::ZERO);
}

async fn check_counter_deltas_add_up(store: Store) {
    let u = user("counted");
    let day = NOW - 3_600_000;
    let delta = |window, start, delta| CounterDelta {
        entity: u.clone(),
        window,
        window_start_ms: start,
        delta,
        epoch: 0,
    };
    store.flush_counters(&[]).await.unwrap();
    store
        .flush_counters(&[
            delta(WindowKind::Day, day, 3),
            delta(WindowKind::Month, Period::containing(NOW).start_ms(), 3),
            delta(WindowKind::Day, day, 2),
            delta(WindowKind::Day, day - DAY_MS, -4),
        ])
        .await
        .unwrap();
    assert_eq!(store.counter(&u, WindowKind::Day, day).await.unwrap(), 5);
    assert_eq!(
        store
            .counter(&u, WindowKind::Month, Period::containing(NOW).start_ms())
            .await
            .unwrap(),
        3
    );
    // A net negative count reads as zero.
    assert_eq!(store.counter(&u, WindowKind::Day, day - DAY_MS).await.unwrap(), 0);
    assert_eq!(store.counter(&u, WindowKind::Day, day + 1).await.unwrap(), 0);

    store
        .flush_counters(&[delta(WindowKind::Day, day, -1), delta(WindowKind::Day, day - DAY_MS, 6)])
        .await
        .unwrap();
    assert_eq!(store.counter(&u, WindowKind::Day, day).await.unwrap(), 4);
    assert_eq!(store.counter(&u, WindowKind::Day, day - DAY_MS).await.unwrap(), 2);

    // A large flush (more rows than one SQLite statement takes), with
    // every row given twice.
    let keys: Vec<EntityKey> = (0..450).map(|i| user(&format!("many-{i}"))).collect();
    let mut deltas = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        for part in [1, i as i64] {
            deltas.push(CounterDelta {
                entity: key.clone(),
                window: WindowKind::Day,
                window_start_ms: day,
                delta: part,
                epoch: 0,
            });
        }
    }
    store.flush_counters(&deltas).await.unwrap();
    store.flush_counters(&deltas).await.unwrap();
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            store.counter(key, WindowKind::Day, day).await.unwrap(),
            2 * (1 + i as u64)
        );
    }
}

async fn check_load_entity_reads_current_windows(store: Store) {
    let period = Period::containing(NOW);
    let u = user("loaded");
    store.put_user("loaded", "pro").await.unwrap();
    store.put_budget(&u, Some(usd("5.00"))).await.unwrap();
    store
        .record_usage(&[row(Uuid::new_v4(), user_subject("loaded"), "1.5", NOW)])
        .await
        .unwrap();
    let current = NOW - 3_600_000;
    let older_current = NOW - 2 * 3_600_000;
    let delta = |window, start, delta| CounterDelta {
        entity: u.clone(),
        window,
        window_start_ms: start,
        delta,
        epoch: 0,
    };
    store
        .flush_counters(&[
            delta(WindowKind::Day, NOW - 2 * DAY_MS, 7),
            delta(WindowKind::Day, NOW - DAY_MS, 8), // ended exactly now
            delta(WindowKind::Day, older_current, 1),
            delta(WindowKind::Day, current, 3),
            delta(WindowKind::Month, period.start_ms(), 11),
            delta(WindowKind::Month, period.next().start_ms(), 99),
        ])
        .await
        .unwrap();

    let record = store.load_entity(&u, period, NOW).await.unwrap();
    assert_eq!(record.tier.as_deref(), Some("pro"));
    assert_eq!(record.budget_usd, Some(usd("5")));
    assert_eq!(record.spent_usd, d("1.5"));
    assert_eq!(
        record.day,
        Some(WindowCount {
            start_ms: current,
            count: 3
        })
    );
    assert_eq!(record.month_count, 11);

    // A day later, every day window has ended.
    let record = store.load_entity(&u, period, current + DAY_MS).await.unwrap();
    assert_eq!(record.day, None);
    // Next month: nothing spent or counted yet.
    let record = store.load_entity(&u, period.next(), NOW).await.unwrap();
    assert_eq!(record.spent_usd, Decimal::ZERO);
    assert_eq!(record.month_count, 99);

    // Unknown user: all defaults.
    let record = store.load_entity(&user("stranger"), period, NOW).await.unwrap();
    assert_eq!(record, Default::default());

    // Organisations and guests have no user tier row; their spend and budget load.
    let org = EntityKey::org("loaded").unwrap();
    store.put_budget(&org, Some(usd("2"))).await.unwrap();
    let org_subject = UsageSubject {
        organization_id: Some("loaded".into()),
        ..UsageSubject::default()
    };
    store
        .record_usage(&[row(Uuid::new_v4(), org_subject, "0.75", NOW)])
        .await
        .unwrap();
    let record = store.load_entity(&org, period, NOW).await.unwrap();
    assert_eq!(record.tier, None);
    assert_eq!(record.budget_usd, Some(usd("2")));
    assert_eq!(record.spent_usd, d("0.75"));

    // Negative stored counts load as zero.
    store
        .flush_counters(&[delta(WindowKind::Month, period.start_ms(), -20)])
        .await
        .unwrap();
    let record = store.load_entity(&u, period, NOW).await.unwrap();
    assert_eq!(record.month_count, 0);
}

async fn check_alerts_fire_once(store: Store) {
    let period = Period::containing(NOW);
    let u = user("alerted");
    store.put_budget(&u, Some(usd("1.00"))).await.unwrap();
    let mut fired = Vec::new();
    for (cost, expect) in [
        ("0.40", vec![]),
        ("0.40", vec![50, 75]),
        ("0.15", vec![50, 75, 90]),
        ("0.05", vec![50, 75, 90, 100]),
        ("0.50", vec![50, 75, 90, 100]),
    ] {
        store
            .record_usage(&[row(Uuid::new_v4(), user_subject("alerted"), cost, NOW)])
            .await
            .unwrap();
        fired = store.alerts_fired(&u, period).await.unwrap();
        assert_eq!(fired, expect, "after adding {cost}");
    }
    assert_eq!(fired.len(), 4);
    // The next month starts again.
    assert!(store.alerts_fired(&u, period.next()).await.unwrap().is_empty());

    // Several thresholds crossed by one batch fire once each; an entity
    // without a budget never alerts.
    let w = user("alerted-batch");
    store.put_budget(&w, Some(usd("1.00"))).await.unwrap();
    let rows: Vec<UsageRow> = ["0.3", "0.3", "0.4"]
        .into_iter()
        .map(|cost| row(Uuid::new_v4(), user_subject("alerted-batch"), cost, NOW))
        .chain([row(Uuid::new_v4(), user_subject("unbudgeted"), "1000", NOW)])
        .collect();
    store.record_usage(&rows).await.unwrap();
    assert_eq!(store.alerts_fired(&w, period).await.unwrap(), vec![50, 75, 90, 100]);
    assert!(
        store
            .alerts_fired(&user("unbudgeted"), period)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn check_tiers_round_trip(store: Store) {
    let tiers = store.load_tiers().await.unwrap();
    let find = |tiers: &[Tier], name: &str| tiers.iter().find(|t| t.name == name).cloned().unwrap();
    assert_eq!(tiers.len(), 4);
    assert_eq!(
        find(&tiers, "free"),
        Tier {
            name: "free".into(),
            daily_limit: 10,
            monthly_limit: Some(100),
            rpm: None,
            price_monthly_usd: usd("0"),
        }
    );
    assert_eq!(
        find(&tiers, "pro"),
        Tier {
            name: "pro".into(),
            daily_limit: 100,
            monthly_limit: Some(3000),
            rpm: None,
            price_monthly_usd: usd("9.99"),
        }
    );
    assert_eq!(
        find(&tiers, "enterprise"),
        Tier {
            name: "enterprise".into(),
            daily_limit: 1000,
            monthly_limit: Some(100_000),
            rpm: None,
            price_monthly_usd: usd("99.99"),
        }
    );
    assert_eq!(
        find(&tiers, "guest"),
        Tier {
            name: "guest".into(),
            daily_limit: 10,
            monthly_limit: None,
            rpm: None,
            price_monthly_usd: usd("0"),
        }
    );

    let team = Tier {
        name: "team".into(),
        daily_limit: 500,
        monthly_limit: None,
        rpm: Some(60),
        price_monthly_usd: usd("49.50"),
    };
    store.put_tier(&team).await.unwrap();
    let pro = Tier {
        daily_limit: 200,
        monthly_limit: Some(6000),
        rpm: Some(1_000_000),
        price_monthly_usd: usd("19.99"),
        ..find(&tiers, "pro")
    };
    store.put_tier(&pro).await.unwrap();
    let tiers = store.load_tiers().await.unwrap();
    assert_eq!(tiers.len(), 5);
    assert_eq!(find(&tiers, "team"), team);
    assert_eq!(find(&tiers, "pro"), pro);
}

async fn check_prices_round_trip(store: Store) {
    assert!(store.load_prices().await.unwrap().is_empty());
    let a = Price {
        input_per_mtok_usd: usd("3"),
        output_per_mtok_usd: usd("15"),
    };
    let b = Price {
        input_per_mtok_usd: usd("0.000123456789"),
        output_per_mtok_usd: usd("1000000000"),
    };
    store.put_price("model-a", &a).await.unwrap();
    store.put_price("model-b", &b).await.unwrap();
    assert_eq!(
        store.load_prices().await.unwrap(),
        vec![("model-a".to_string(), a), ("model-b".to_string(), b)]
    );
    store.put_price("model-a", &b).await.unwrap();
    assert_eq!(
        store.load_prices().await.unwrap(),
        vec![("model-a".to_string(), b), ("model-b".to_string(), b)]
    );
}

async fn check_settings_first_writer_wins(store: Store) {
    store.ping().await.unwrap();
    assert_eq!(store.get_setting("cluster_secret").await.unwrap(), None);
    assert!(store.put_setting_if_absent("cluster_secret", "first").await.unwrap());
    assert!(!store.put_setting_if_absent("cluster_secret", "second").await.unwrap());
    assert_eq!(
        store.get_setting("cluster_secret").await.unwrap().as_deref(),
        Some("first")
    );
    // Migrating again changes nothing.
    store.migrate().await.unwrap();
    assert_eq!(store.load_tiers().await.unwrap().len(), 4);
}

async fn check_users_and_budgets(store: Store) {
    assert_eq!(store.user_tier("u").await.unwrap(), None);
    store.put_user("u", "pro").await.unwrap();
    assert_eq!(store.user_tier("u").await.unwrap().as_deref(), Some("pro"));
    store.put_user("u", "enterprise").await.unwrap();
    assert_eq!(store.user_tier("u").await.unwrap().as_deref(), Some("enterprise"));
    assert!(store.put_user("u", "no-such-tier").await.is_err());
    assert!(store.put_user("v", "no-such-tier").await.is_err());
    assert_eq!(store.user_tier("u").await.unwrap().as_deref(), Some("enterprise"));
    assert_eq!(store.user_tier("v").await.unwrap(), None);

    let period = Period::containing(NOW);
    let u = user("u");
    store.put_budget(&u, Some(usd("10"))).await.unwrap();
    store.put_budget(&u, Some(usd("12.345"))).await.unwrap();
    let record = store.load_entity(&u, period, NOW).await.unwrap();
    assert_eq!(record.budget_usd, Some(usd("12.345")));
    store.put_budget(&u, None).await.unwrap();
    store.put_budget(&u, None).await.unwrap();
    let record = store.load_entity(&u, period, NOW).await.unwrap();
    assert_eq!(record.budget_usd, None);
    assert_eq!(record.tier.as_deref(), Some("enterprise"));
}

/// Writers on several connections at once, retrying each other's events
/// (as two nodes might after a handover): every event counts once.
async fn check_concurrent_batches_count_once(store: Store) {
    let period = Period::containing(NOW);
    let ids: Vec<Uuid> = (0..400).map(|_| Uuid::new_v4()).collect();
    let subject = UsageSubject {
        user_id: Some("busy".into()),
        organization_id: Some("busy-org".into()),
        ..UsageSubject::default()
    };
    let mut tasks = Vec::new();
    for writer in 0..4usize {
        let store = store.clone();
        let ids = ids.clone();
        let subject = subject.clone();
        tasks.push(tokio::spawn(async move {
            let mut recorded = HashSet::new();
            // Each writer sends every event, in batches of 25, in its own order.
            let mut order = ids.clone();
            order.rotate_left(writer * 100);
            for chunk in order.chunks(25) {
                let rows: Vec<UsageRow> = chunk.iter().map(|&id| row(id, subject.clone(), "0.001", NOW)).collect();
                let outcomes = store.record_usage(&rows).await.unwrap();
                for (id, outcome) in chunk.iter().zip(outcomes) {
                    match outcome {
                        UsageOutcome::Recorded { .. } => {
                            recorded.insert(*id);
                        }
                        UsageOutcome::Duplicate { cost_usd } => assert_eq!(cost_usd, d("0.001")),
                    }
                }
            }
            recorded
        }));
    }
    let mut all = HashSet::new();
    for task in tasks {
        for id in task.await.unwrap() {
            assert!(all.insert(id), "{id} recorded twice");
        }
    }
    assert_eq!(all.len(), ids.len());
    for key in [user("busy"), EntityKey::org("busy-org").unwrap()] {
        assert_eq!(store.entity_spend(&key, period).await.unwrap(), d("0.4"));
        assert_eq!(store.ledger_sum(&key, period).await.unwrap(), d("0.4"));
    }
}

/// Not a timed test: prints the ledger's throughput with batches of 1000.
/// `cargo test --release --test store ledger_throughput -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn ledger_throughput() {
    async fn run(store: Store) {
        let batches = 50;
        let started = std::time::Instant::now();
        for b in 0..batches {
            let rows: Vec<UsageRow> = (0..1000)
                .map(|i| {
                    row(
                        Uuid::new_v4(),
                        user_subject(&format!("tp-{}", (b * 1000 + i) % 500)),
                        "0.012207",
                        NOW,
                    )
                })
                .collect();
            store.record_usage(&rows).await.unwrap();
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{}: {} events in {secs:.2}s = {:.0} events/s",
            store.backend(),
            batches * 1000,
            (batches * 1000) as f64 / secs
        );
    }
    let (store, _dir) = fresh_sqlite().await;
    run(store).await;
    if let Some(store) = fresh_postgres().await {
        run(store.clone()).await;
        drop_postgres(store).await;
    }
}
