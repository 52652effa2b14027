//! The cluster scenarios' short set: real `tollgate serve` processes
//! started by the `tollgate-cluster` harness (see cluster/README.md).
//!
//! Each test is skipped, with a notice, when `TOLLGATE_TEST_DATABASE_URL`
//! is unset (CI always sets it). They run one at a time: each starts up to
//! four nodes and the machine has two cores.

use tokio::sync::Mutex;
use tollgate_cluster::cluster::supports_cluster_flags;
use tollgate_cluster::{Env, Params, Scenario};

/// One scenario at a time in this test binary.
static SERIAL: Mutex<()> = Mutex::const_new(());

async fn run(scenario: Scenario) {
    let _one_at_a_time = SERIAL.lock().await;
    let Some(env) = Env::from_env(env!("CARGO_BIN_EXE_tollgate")) else {
        return;
    };
    if scenario.needs_cluster() {
        let flags = supports_cluster_flags(&env.binary)
            .await
            .expect("run tollgate serve --help");
        assert!(flags, "`tollgate serve --help` lists no --cluster-secret");
    }
    let report = scenario.run(&env, &Params::short()).await;
    eprintln!("{}", report.render());
    assert!(report.ok(), "{} failed:\n{}", scenario.name(), report.failures());
}

/// The harness against today's single node: load, SIGTERM, kill -9,
/// restarts, every invariant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_smoke() {
    run(Scenario::SingleNodeSmoke).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster() {
    run(Scenario::Formation).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_limit_is_exact_across_nodes() {
    run(Scenario::ExactLimits).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_join_and_leave_under_load() {
    run(Scenario::GracefulJoinLeave).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_load() {
    run(Scenario::Kill9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_heals() {
    run(Scenario::Partition).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsider_cannot_join() {
    run(Scenario::Outsider).await;
}

/// Issue 9: 1 000 budget alerts over three nodes, each delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_delivered_once() {
    run(Scenario::AlertsDeliveredOnce).await;
}

/// The invariant queries against the real schema: every kind of violation
/// the scenarios rely on them to catch is caught.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invariant_checks_catch_violations() {
    use rust_decimal::Decimal;
    use std::time::{Duration, Instant};
    use tollgate_cluster::db::{ScratchDb, pool};
    use tollgate_cluster::invariants::{check_counters, check_ledger};
    use tollgate_cluster::load::{AckedUsage, Final, LoadReport, OpKind, OpResult};
    use uuid::Uuid;

    let _one_at_a_time = SERIAL.lock().await;
    let Some(env) = Env::from_env(env!("CARGO_BIN_EXE_tollgate")) else {
        return;
    };
    let db = ScratchDb::create(&env.server_url).await.expect("scratch database");
    tollgate_cluster::cluster::migrate(&env.binary, db.url())
        .await
        .expect("migrate");
    let pool = pool(db.url()).await.expect("pool");
    let dec = |s: &str| s.parse::<Decimal>().expect("decimal");
    let ids: Vec<Uuid> = (0..6).map(|_| Uuid::new_v4()).collect();
    // (event, user, ip, fingerprint, cost)
    let ledger = [
        (0, Some("a"), None, None, "0.10"),
        (1, Some("a"), None, None, "0.20"),
        (2, Some("b"), None, None, "0.05"),
        (3, Some("c"), None, None, "0.02"),
        (4, None, Some("203.0.113.9"), Some("fp-x"), "0.30"),
    ];
    for (event, user, ip, fp, cost) in ledger {
        sqlx::query(
            "INSERT INTO model_usage (event_id, user_id, guest_ip, guest_fingerprint, model, input_tokens, \
             output_tokens, cost_usd, period) VALUES ($1, $2, $3, $4, 'm', 1, 1, $5, '2026-11')",
        )
        .bind(ids[event])
        .bind(user)
        .bind(ip)
        .bind(fp)
        .bind(dec(cost))
        .execute(&pool)
        .await
        .expect("ledger row");
    }
    for (entity, spent) in [
        ("user:a", "0.300"),
        ("user:b", "0.05"),
        ("user:c", "0.01"),
        ("ip:203.0.113.9", "0.30"),
        ("fp:fp-x", "0.25"),
        ("user:d", "0.10"),
    ] {
        sqlx::query("INSERT INTO entity_spend (entity, period, spent_usd) VALUES ($1, '2026-11', $2)")
            .bind(entity)
            .bind(dec(spent))
            .execute(&pool)
            .await
            .expect("spend row");
    }
    let acked = |event: usize, user: &str, cost: &str| AckedUsage {
        event_id: ids[event],
        entity: format!("user:{user}"),
        cost: dec(cost),
        node: "node-1".into(),
    };
    let now = Instant::now();
    let admitted = |user: &str| OpResult {
        op: 0,
        kind: OpKind::Check,
        entities: vec![format!("user:{user}")],
        started: now,
        last_attempt_started: now,
        finished: now,
        node: "node-1".into(),
        tries: 1,
        fin: Final::Admitted,
    };
    let load = LoadReport {
        // Event 2 acknowledged at another cost; event 5 acknowledged but
        // never written.
        acked: vec![
            acked(0, "a", "0.1"),
            acked(1, "a", "0.20"),
            acked(2, "b", "0.06"),
            acked(5, "e", "0.01"),
        ],
        // Event 3 was never sent by the harness.
        sent_events: vec![ids[0], ids[1], ids[2], ids[4], ids[5]],
        ops: vec![admitted("a"), admitted("a"), admitted("b"), admitted("b")],
        ..LoadReport::default()
    };
    let r = check_ledger(&pool, &load).await.expect("ledger check");
    assert_eq!(r.missing, vec![ids[5]], "{}", r.summary());
    assert_eq!(r.altered.len(), 1, "{}", r.summary());
    assert_eq!((r.unknown, r.duplicates, r.ledger_rows), (1, 0, 5), "{}", r.summary());
    let mut wrong: Vec<&str> = r.spend_mismatches.iter().map(|m| m.entity.as_str()).collect();
    wrong.sort();
    assert_eq!(wrong, vec!["fp:fp-x", "user:c", "user:d"], "{}", r.summary());
    assert!(!r.ok());

    for (entity, count) in [("user:a", 2), ("user:b", 1)] {
        sqlx::query("INSERT INTO entity_counters (entity, window_kind, window_start, count) VALUES ($1, 'day', 0, $2)")
            .bind(entity)
            .bind(count as i64)
            .execute(&pool)
            .await
            .expect("counter row");
    }
    let exact = check_counters(&pool, &load, |_| 0, Duration::ZERO)
        .await
        .expect("counters");
    assert_eq!(exact.differences, vec![("user:b".to_string(), 2, 1)]);
    let lossy = check_counters(&pool, &load, |_| 1, Duration::ZERO)
        .await
        .expect("counters");
    assert!(lossy.ok(), "{}", lossy.summary());
    pool.close().await;
}
