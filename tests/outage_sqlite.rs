//! SQLite on a full filesystem (issue 16): usage answers 503
//! `store_unavailable` with `Retry-After` (never a 500 or a panic), the
//! database stays intact, and the node recovers by itself when space
//! returns. The filesystem is a small tmpfs the test mounts (root only:
//! under CI a non-root run fails, locally it skips with a reason).

mod common;
mod outage_support;

use common::{TestDb, TestNode};
use outage_support::SmallDisk;
use serde_json::json;
use sqlx::Connection;
use uuid::Uuid;

/// Usage calls tried on the full disk before the test gives up on seeing
/// one refused. Each commit needs new pages sooner or later (the WAL cannot
/// be checkpointed into a file that cannot grow), so this is generous.
const MAX_TRIES: usize = 5000;

fn usage_body(event: Uuid) -> serde_json::Value {
    json!({"event_id": event, "user_id": "disk", "model": "m1",
           "input_tokens": 1, "output_tokens": 1, "cost_usd": "0.01"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_keeps_the_database_intact_and_recovers() {
    let Some(disk) = SmallDisk::mount("8m") else { return };
    let file = disk.path().join("tollgate.db");
    let db = TestDb::at(format!("sqlite://{}", file.display()));
    let node = TestNode::start_with(&db, |c| {
        c.database.db_timeout_ms = 1000;
        c.flush_interval_ms = 100;
        c.admin_token_file = Some(disk.path().join("admin-token"));
    })
    .await;

    let mut acknowledged = Vec::new();
    let first = Uuid::new_v4();
    assert_eq!(node.usage(usage_body(first)).await.status, 200);
    acknowledged.push(first);
    assert_eq!(node.check(json!({"user_id": "disk"})).await.status, 200);

    disk.fill();
    let mut refused = None;
    for _ in 0..MAX_TRIES {
        let event = Uuid::new_v4();
        let r = node.usage(usage_body(event)).await;
        match r.status.as_u16() {
            200 => acknowledged.push(event),
            503 => {
                assert_eq!(r.json["error"], "store_unavailable", "{}", r.json);
                assert!(r.header("retry-after").is_some(), "no Retry-After");
                refused = Some(event);
                break;
            }
            other => panic!("usage on a full disk answered {other}: {}", r.json),
        }
    }
    let refused = refused.expect("no usage was refused on the full disk");
    // Still full: refused again, and warm checks are still served.
    let r = node.usage(usage_body(refused)).await;
    assert_eq!(r.status, 503, "{}", r.json);
    let r = node.check(json!({"user_id": "disk"})).await;
    assert_eq!(r.status, 200, "a warm check on the full disk: {}", r.json);

    disk.free();
    // The client's retry of the refused event succeeds without a restart
    // (a retry or two while the pool's connections see the space).
    let mut recovered = false;
    for _ in 0..50 {
        let r = node.usage(usage_body(refused)).await;
        if r.status == 200 {
            recovered = true;
            break;
        }
        assert_eq!(r.status, 503, "{}", r.json);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "usage never succeeded again after space was freed");
    acknowledged.push(refused);
    let last = Uuid::new_v4();
    let r = node.usage(usage_body(last)).await;
    assert_eq!(r.status, 200, "usage after recovery: {}", r.json);
    acknowledged.push(last);
    node.stop().await;

    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("open the database");
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .expect("integrity_check");
    assert_eq!(check, "ok");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM model_usage WHERE user_id = 'disk'")
        .fetch_one(&mut conn)
        .await
        .expect("ledger");
    assert_eq!(rows as usize, acknowledged.len(), "every acknowledged usage once");
    for event in &acknowledged {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM model_usage WHERE event_id = ?")
            .bind(event.to_string())
            .fetch_one(&mut conn)
            .await
            .expect("event");
        assert_eq!(n, 1, "event {event}");
    }
}
