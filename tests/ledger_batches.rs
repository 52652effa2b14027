//! The ledger's batches under mixed load, on both backends.
//!
//! A property test drives the group-commit writer ([`Ledger`]) with random
//! mixes of new events, duplicates inside one batch, concurrent retries of
//! one `event_id` (sometimes with a different cost or subject, as a buggy
//! client would send), reservation ids, and costs that cross several
//! budget thresholds inside one batch. After each case: every event id got
//! exactly one `Recorded` answer and every other answer for it names the
//! recorded cost; `spend = SUM(ledger)` for every entity; each threshold
//! crossed fired exactly once, and none that was not crossed.
//!
//! A stress test does the same over HTTP with reservations: checks that
//! hold estimates, then usage that settles them, each event sent several
//! times at once.

mod common;

use common::{Backend, TestDb, TestNode};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use tokio::task::JoinSet;
use tollgate::entity::EntityKey;
use tollgate::ledger::{BatchPolicy, Ledger};
use tollgate::limits::alerts::THRESHOLDS;
use tollgate::limits::calendar::Period;
use tollgate::money::Usd;
use tollgate::store::testing::{drop_postgres, fresh_postgres, fresh_sqlite};
use tollgate::store::{Store, UsageOutcome, UsageRow, UsageSubject};
use uuid::Uuid;

/// A fixed instant (mid-month), so every event of a case is in one period.
const AT_MS: i64 = 1_795_838_400_000;

/// One submission: which event id (a slot of the case), whose it is, what
/// it costs (in cents), how many copies are sent at once.
#[derive(Debug, Clone)]
struct Submission {
    slot: usize,
    user: usize,
    cents: u32,
    copies: usize,
    reserved: bool,
}

#[derive(Debug, Clone)]
struct Case {
    /// Each user's budget, in dollars; users with an even index are in the
    /// case's organisation (charged too, no budget).
    budgets: Vec<u32>,
    submissions: Vec<Submission>,
    policy: BatchPolicy,
}

fn case() -> impl Strategy<Value = Case> {
    let budgets = prop::collection::vec(1u32..20, 1..4);
    let policy = prop_oneof![
        Just(BatchPolicy::serial(1000)),
        Just(BatchPolicy::serial(5)),
        Just(BatchPolicy {
            max_batch: 7,
            concurrency: 2,
            overlap_min: 3
        }),
        Just(BatchPolicy {
            max_batch: 1000,
            concurrency: 2,
            overlap_min: 250
        }),
    ];
    (budgets, policy).prop_flat_map(|(budgets, policy)| {
        let users = budgets.len();
        let submission = (0usize..24, 0..users, 1u32..900, 1usize..4, any::<bool>()).prop_map(
            |(slot, user, cents, copies, reserved)| Submission {
                slot,
                user,
                cents,
                copies,
                reserved,
            },
        );
        prop::collection::vec(submission, 1..60).prop_map(move |submissions| Case {
            budgets: budgets.clone(),
            submissions,
            policy,
        })
    })
}

fn cents(c: u32) -> Decimal {
    Decimal::new(i64::from(c), 2)
}

/// Runs one case on `store`, with user and event ids of its own (`tag`).
async fn run_case(store: &Store, tag: usize, case: &Case) -> Result<(), TestCaseError> {
    let org = Uuid::new_v4().to_string();
    let users: Vec<String> = (0..case.budgets.len()).map(|u| format!("c{tag}u{u}")).collect();
    for (user, budget) in users.iter().zip(&case.budgets) {
        let key = EntityKey::user(user).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let budget = Usd::new(Decimal::from(*budget)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        store
            .put_budget(&key, Some(budget))
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    let slots: Vec<Uuid> = (0..24).map(|_| Uuid::new_v4()).collect();
    let reservation = Uuid::new_v4();
    let row_of = |s: &Submission| UsageRow {
        event_id: slots[s.slot],
        reservation_id: s.reserved.then_some(reservation),
        subject: UsageSubject {
            user_id: Some(users[s.user].clone()),
            organization_id: s.user.is_multiple_of(2).then(|| org.clone()),
            ..UsageSubject::default()
        },
        model: "m".into(),
        input_tokens: 1,
        output_tokens: 1,
        cost_usd: Usd::new(cents(s.cents)).unwrap_or_else(|e| panic!("cost: {e}")),
        created_at_ms: AT_MS,
    };

    let ledger = Ledger::spawn(store.clone(), case.policy);
    let mut sent = JoinSet::new();
    for s in &case.submissions {
        for _ in 0..s.copies {
            let (ledger, row) = (ledger.clone(), row_of(s));
            sent.spawn(async move { (row.clone(), ledger.record(row).await) });
        }
    }
    let mut recorded: HashMap<Uuid, UsageRow> = HashMap::new();
    let mut duplicates: Vec<(Uuid, Decimal)> = Vec::new();
    while let Some(done) = sent.join_next().await {
        let (row, outcome) = done.map_err(|e| TestCaseError::fail(e.to_string()))?;
        match outcome.map_err(|e| TestCaseError::fail(e.to_string()))? {
            UsageOutcome::Recorded { .. } => {
                prop_assert!(
                    recorded.insert(row.event_id, row.clone()).is_none(),
                    "two `Recorded` answers for {}",
                    row.event_id
                );
            }
            UsageOutcome::Duplicate { cost_usd } => duplicates.push((row.event_id, cost_usd)),
        }
    }
    let sent_ids: BTreeSet<Uuid> = case.submissions.iter().map(|s| slots[s.slot]).collect();
    prop_assert_eq!(recorded.keys().copied().collect::<BTreeSet<_>>(), sent_ids);
    for (id, cost) in duplicates {
        prop_assert_eq!(
            cost,
            recorded[&id].cost_usd.value(),
            "duplicate of {} names another cost",
            id
        );
    }

    // Expected spend per entity, from the rows that were recorded.
    let period = Period::containing(AT_MS);
    let mut expected: HashMap<EntityKey, Decimal> = HashMap::new();
    for row in recorded.values() {
        for key in row.subject.entities() {
            *expected.entry(key).or_default() += row.cost_usd.value();
        }
    }
    let org_key = EntityKey::org(&org).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut keys: Vec<EntityKey> = users.iter().filter_map(|u| EntityKey::user(u).ok()).collect();
    keys.push(org_key);
    for key in &keys {
        let want = expected.get(key).copied().unwrap_or_default().normalize();
        let spend = store
            .entity_spend(key, period)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let sum = store
            .ledger_sum(key, period)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(spend, sum, "{}: spend != SUM(ledger)", key);
        prop_assert_eq!(spend, want, "{}: spend is not what was recorded", key);
    }
    // Each threshold crossed fired once; spend only grows from zero, so the
    // thresholds crossed are those at or below the final spend.
    for (user, budget) in users.iter().zip(&case.budgets) {
        let key = EntityKey::user(user).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let spend = expected.get(&key).copied().unwrap_or_default();
        let limit = Decimal::from(*budget);
        let want: Vec<u8> = THRESHOLDS
            .iter()
            .copied()
            .filter(|&pct| spend > Decimal::ZERO && spend >= limit * Decimal::from(pct) / Decimal::ONE_HUNDRED)
            .collect();
        let fired = store
            .alerts_fired(&key, period)
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(fired, want, "{}: thresholds fired at spend {} of {}", key, spend, limit);
    }
    Ok(())
}

fn property(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (store, _dir) = match backend {
        Backend::Sqlite => {
            let (store, dir) = runtime.block_on(fresh_sqlite());
            (store, Some(dir))
        }
        Backend::Postgres => match runtime.block_on(fresh_postgres()) {
            Some(store) => (store, None),
            None => return,
        },
    };
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let tag = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&case(), |case| {
        let tag = tag.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        runtime.block_on(run_case(&store, tag, &case))
    });
    runtime.block_on(drop_postgres(store.clone()));
    if let Err(err) = result {
        panic!("{err}");
    }
}

#[test]
fn batches_keep_the_money_contract_sqlite() {
    property(Backend::Sqlite);
}

#[test]
fn batches_keep_the_money_contract_postgres() {
    property(Backend::Postgres);
}

/// Over HTTP: reservations held by checks are settled by usage sent three
/// times at once; thresholds cross inside the batches.
async fn settles_and_retries_over_http(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let n = TestNode::start(&db).await;
    let r = n
        .put(
            "/v1/tiers/big",
            json!({"daily_limit": 100000, "price_monthly_usd": "0"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(n.put("/v1/users/s1", json!({"tier": "big"})).await.status, 200);
    let r = n
        .put("/v1/users/s1/budget", json!({"monthly_budget_usd": "2.00"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);

    let checks = (0..40).map(|_| n.check(json!({"user_id": "s1", "estimate": {"cost_usd": "0.05"}})));
    let reservations: Vec<String> = futures::future::join_all(checks)
        .await
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.json);
            r.json["reservation_id"].as_str().expect("reservation id").to_string()
        })
        .collect();
    // 40 events of 0.045 = 1.80: crosses 50, 75 and 90 % of 2.00.
    let events: Vec<Uuid> = (0..40).map(|_| Uuid::new_v4()).collect();
    let node = &n;
    let sends = events.iter().zip(&reservations).flat_map(|(id, reservation)| {
        (0..3).map(move |_| async move {
            let body = json!({"event_id": id, "reservation_id": reservation, "user_id": "s1", "model": "m",
                              "input_tokens": 1, "output_tokens": 1, "cost_usd": "0.045"});
            (*id, node.usage(body).await)
        })
    });
    let replies = futures::future::join_all(sends).await;
    let mut new: HashMap<Uuid, usize> = HashMap::new();
    for (id, r) in &replies {
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["cost_usd"], "0.045");
        if r.json["duplicate"] == false {
            *new.entry(*id).or_default() += 1;
        }
    }
    assert_eq!(new.len(), events.len(), "an event got no `duplicate: false` answer");
    assert!(
        new.values().all(|&n| n == 1),
        "an event got two `duplicate: false` answers: {new:?}"
    );
    let status = n.user_status("s1").await;
    let budget = status.budget("user:s1");
    assert_eq!(budget["held_usd"], "0", "{budget}");
    assert_eq!(budget["spent_usd"], "1.8", "{budget}");
    let period = Period::containing(now_ms());
    let key = EntityKey::user("s1").expect("key");
    let store = &n.state.store;
    assert_eq!(
        store.ledger_sum(&key, period).await.expect("sum"),
        Decimal::from_str("1.8").expect("d")
    );
    assert_eq!(
        store.entity_spend(&key, period).await.expect("spend"),
        Decimal::from_str("1.8").expect("d")
    );
    assert_eq!(
        store.alerts_fired(&key, period).await.expect("alerts"),
        vec![50, 75, 90]
    );
    let mut ledger_ids = ledger_event_ids(&db.url, "s1").await;
    ledger_ids.sort();
    let mut want = events.clone();
    want.sort();
    assert_eq!(ledger_ids, want, "every event in the ledger exactly once");
    n.stop().await;
}
on_both_backends!(settles_and_retries_over_http);

fn now_ms() -> i64 {
    tollgate::limits::calendar::now_ms()
}

/// Every event id in the ledger for a user (with repeats, if any).
async fn ledger_event_ids(url: &str, user: &str) -> Vec<Uuid> {
    use sqlx::Connection;
    let ids: Vec<String> = if url.starts_with("postgres") {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::query_scalar("SELECT event_id::text FROM model_usage WHERE user_id = $1")
            .bind(user)
            .fetch_all(&mut conn)
            .await
            .expect("ledger rows")
    } else {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
        sqlx::query_scalar("SELECT event_id FROM model_usage WHERE user_id = $1")
            .bind(user)
            .fetch_all(&mut conn)
            .await
            .expect("ledger rows")
    };
    ids.iter().map(|id| Uuid::parse_str(id).expect("uuid")).collect()
}
