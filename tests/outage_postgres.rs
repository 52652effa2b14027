//! Postgres goes away under a running node (issue 16): warm checks go on,
//! cold checks and usage answer 503 `store_unavailable` with `Retry-After`
//! at once, `/readyz` keeps answering, and when the server returns the node
//! recovers by itself with every acknowledged usage in the ledger once and
//! the outage's counts flushed.
//!
//! Each test owns its Postgres server (initdb + pg_ctl on a free port) and
//! stops it; the shared server other tests use is never touched.

mod common;
mod outage_support;

use common::{ADMIN, Reply, TestDb, TestNode};
use outage_support::OwnedPostgres;
use serde_json::{Value, json};
use sqlx::Connection;
use std::time::Duration;
use uuid::Uuid;

/// Polls for the store state `/readyz` reports. Bounded: a node that
/// never notices fails the test (this asserts behaviour, not speed).
async fn wait_store(node: &TestNode, want: &str) {
    for _ in 0..300 {
        let r = node.get("/readyz", None).await;
        assert_eq!(
            r.status, 200,
            "readyz must answer while the store is {want}: {}",
            r.json
        );
        if r.json["store"] == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz never reported the store {want}");
}

fn assert_store_unavailable(r: &Reply, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.json);
    assert_eq!(r.json["error"], "store_unavailable", "{what}: {}", r.json);
    assert!(r.header("retry-after").is_some(), "{what}: no Retry-After");
}

fn usage_body(event: Uuid, user: &str, cost: &str) -> Value {
    json!({"event_id": event, "user_id": user, "model": "m1",
           "input_tokens": 1, "output_tokens": 1, "cost_usd": cost})
}

async fn start_node(pg: &OwnedPostgres, tweak: impl FnOnce(&mut tollgate::config::ServeConfig)) -> TestNode {
    let db = TestDb::at(pg.url());
    TestNode::start_with(&db, |c| {
        c.database.db_timeout_ms = 500;
        c.flush_interval_ms = 100;
        tweak(c);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_serves_warm_checks_and_recovers_exactly_once() {
    let Some(pg) = OwnedPostgres::start() else { return };
    let node = start_node(&pg, |_| {}).await;
    assert_eq!(node.put("/v1/users/warm", json!({"tier": "pro"})).await.status, 200);

    // Before: a warm entity, one usage acknowledged.
    let mut admitted = 0;
    for _ in 0..3 {
        assert_eq!(node.check(json!({"user_id": "warm"})).await.status, 200);
        admitted += 1;
    }
    let (before, during, after) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(node.usage(usage_body(before, "warm", "0.25")).await.status, 200);
    wait_store(&node, "up").await;

    pg.stop();
    // Warm checks never needed the database.
    for _ in 0..5 {
        let r = node.check(json!({"user_id": "warm"})).await;
        assert_eq!(r.status, 200, "warm check during the outage: {}", r.json);
        admitted += 1;
    }
    wait_store(&node, "down").await;
    for _ in 0..5 {
        let r = node.check(json!({"user_id": "warm"})).await;
        assert_eq!(r.status, 200, "warm check while known down: {}", r.json);
        admitted += 1;
    }
    let r = node.check(json!({"user_id": "cold"})).await;
    assert_store_unavailable(&r, "cold check");
    let r = node.usage(usage_body(during, "warm", "0.5")).await;
    assert_store_unavailable(&r, "usage");
    let r = node.get("/v1/status?user_id=cold2", Some(ADMIN)).await;
    assert_store_unavailable(&r, "status of a cold entity");

    pg.start_again();
    wait_store(&node, "up").await;
    // No restart: cold checks and usage work again; the client's retry of
    // the refused usage is recorded, and a retry of the one acknowledged
    // before is a duplicate.
    assert_eq!(node.check(json!({"user_id": "cold"})).await.status, 200);
    let r = node.usage(usage_body(during, "warm", "0.5")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let r = node.usage(usage_body(after, "warm", "0.125")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let r = node.usage(usage_body(before, "warm", "0.25")).await;
    assert_eq!(r.status, 200, "{}", r.json);
    node.stop().await;

    let mut conn = sqlx::PgConnection::connect(&pg.url()).await.expect("connect");
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT event_id, COUNT(*) FROM model_usage WHERE user_id = 'warm' GROUP BY event_id ORDER BY event_id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("ledger");
    let mut expected = vec![(before, 1), (during, 1), (after, 1)];
    expected.sort();
    assert_eq!(rows, expected, "every acknowledged usage once, and nothing else");
    let spent: rust_decimal::Decimal =
        sqlx::query_scalar("SELECT COALESCE(SUM(spent_usd), 0) FROM entity_spend WHERE entity = 'user:warm'")
            .fetch_one(&mut conn)
            .await
            .expect("spend");
    assert_eq!(spent, rust_decimal::Decimal::new(875, 3));
    // The counts made while the database was down were flushed after.
    let counted: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(count), 0)::int8 FROM entity_counters WHERE entity = 'user:warm' AND window_kind = 'day'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("counters");
    assert_eq!(counted, admitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_can_take_a_node_out_while_its_database_is_down() {
    let Some(pg) = OwnedPostgres::start() else { return };
    let node = start_node(&pg, |c| c.unready_when_store_down = true).await;
    assert_eq!(node.get("/readyz", None).await.status, 200);
    pg.stop();
    let mut refused = None;
    for _ in 0..300 {
        let r = node.get("/readyz", None).await;
        if r.status != 200 {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = refused.expect("/readyz never turned unready");
    assert_store_unavailable(&r, "readyz");
    pg.start_again();
    let mut ready = false;
    for _ in 0..300 {
        if node.get("/readyz", None).await.status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "/readyz never turned ready again");
    node.stop().await;
}

/// A primary that dies without closing its sessions and comes back at the
/// same address (as after a failover): the pooled connections to the old
/// one are discarded, never used for a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_primary_leaves_no_stale_connection_in_the_pool() {
    let Some(pg) = OwnedPostgres::start() else { return };
    let node = start_node(&pg, |_| {}).await;
    // Open several pooled connections: concurrent usage and cold loads.
    let calls = (0..12).map(|i| {
        let node = &node;
        async move {
            let r = node
                .usage(usage_body(Uuid::new_v4(), &format!("pool{i}"), "0.01"))
                .await;
            assert_eq!(r.status, 200, "{}", r.json);
        }
    });
    futures::future::join_all(calls).await;

    pg.crash();
    pg.start_again();
    wait_store(&node, "up").await;
    for i in 0..12 {
        let r = node
            .usage(usage_body(Uuid::new_v4(), &format!("pool{i}"), "0.01"))
            .await;
        assert_eq!(r.status, 200, "usage {i} after the restart: {}", r.json);
        let r = node.check(json!({"user_id": format!("fresh{i}")})).await;
        assert_eq!(r.status, 200, "cold check {i} after the restart: {}", r.json);
    }
    node.stop().await;
}
