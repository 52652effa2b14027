//! The HTTP API on a real node over real databases (SQLite always,
//! Postgres when TOLLGATE_TEST_DATABASE_URL is set — CI always sets it).

mod common;

use common::{ADMIN, Backend, TestDb, TestNode};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::str::FromStr;
use tollgate::entity::EntityKey;
use tollgate::limits::calendar::{Period, now_ms};

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}"))).expect("decimal")
}

async fn node(backend: Backend) -> Option<(TestDb, TestNode)> {
    let db = TestDb::new(backend).await?;
    let node = TestNode::start(&db).await;
    Some((db, node))
}

// --- 1. guests ---------------------------------------------------------

async fn guests_are_limited_by_ip_or_fingerprint(backend: Backend) {
    let Some((_db, n)) = node(backend).await else { return };
    let guest = |ip: &str, fp: &str| json!({"guest": {"ip": ip, "fingerprint": fp}});
    for i in 0..10 {
        let r = n.check(guest("203.0.113.7", "fp-a")).await;
        assert_eq!(r.status, 200, "check {i}: {}", r.json);
        assert_eq!(r.json["allowed"], true);
        assert_eq!(r.json["tier"], "guest");
        assert!(r.header("ratelimit").is_some() && r.header("ratelimit-policy").is_some());
    }
    let r = n.check(guest("203.0.113.7", "fp-a")).await;
    assert_eq!(r.status, 429, "{}", r.json);
    assert_eq!(r.json["allowed"], false);
    assert_eq!(r.json["reason"], "rate_limited");
    assert_eq!(r.json["error"], "rate_limited");
    assert!(r.json["message"].as_str().is_some_and(|m| !m.is_empty()));
    let retry: i64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!(retry > 0 && retry <= 86_400);
    assert!(r.header("ratelimit").expect("RateLimit").contains("r=0"));
    assert!(r.header("ratelimit-policy").expect("policy").contains("q=10;w=86400"));

    // Changing one of the two does not reset the count.
    let r = n.check(guest("203.0.113.7", "fp-new")).await;
    assert_eq!((r.status.as_u16(), &r.json["reason"]), (429, &json!("rate_limited")));
    let r = n.check(guest("198.51.100.9", "fp-a")).await;
    assert_eq!((r.status.as_u16(), &r.json["reason"]), (429, &json!("rate_limited")));
    // The refusals counted nothing on the fresh side.
    assert_eq!(r.used("ip:198.51.100.9", "day"), 0);
    // A guest that is new on both counts is fine.
    assert_eq!(n.check(guest("198.51.100.9", "fp-b")).await.status, 200);
    n.stop().await;
}
on_both_backends!(guests_are_limited_by_ip_or_fingerprint);

/// Guests calling without a credential are identified by their
/// connection and fingerprint header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_guests_use_their_connection() {
    let Some((_db, n)) = node(Backend::Sqlite).await else {
        return;
    };
    let send = |fp: &'static str| {
        n.client
            .post(format!("{}/v1/check", n.base))
            .header("x-tollgate-fingerprint", fp)
            .json(&json!({}))
            .send()
    };
    for _ in 0..10 {
        assert_eq!(send("fp-z").await.expect("sent").status(), 200);
    }
    assert_eq!(send("fp-z").await.expect("sent").status(), 429);
    // Same IP (loopback), new fingerprint: still refused.
    assert_eq!(send("fp-y").await.expect("sent").status(), 429);
    // A guest may not name another subject.
    let r = n.post("/v1/check", None, json!({"user_id": "someone"})).await;
    assert_eq!(r.status, 401, "{}", r.json);
    n.stop().await;
}

// --- 2. tiers ----------------------------------------------------------

async fn tiers_set_the_limits(backend: Backend) {
    let Some((_db, n)) = node(backend).await else { return };
    for _ in 0..10 {
        assert_eq!(n.check(json!({"user_id": "u1"})).await.status, 200);
    }
    let r = n.check(json!({"user_id": "u1"})).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json["tier"], "free");

    let r = n.put("/v1/users/u1", json!({"tier": "pro"})).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let mut allowed = 10;
    loop {
        let r = n.check(json!({"user_id": "u1"})).await;
        if r.status != 200 {
            assert_eq!(r.json["reason"], "rate_limited");
            break;
        }
        assert_eq!(r.json["tier"], "pro");
        allowed += 1;
        assert!(allowed <= 100, "pro allowed more than 100 per day");
    }
    assert_eq!(allowed, 100);

    // The monthly limit binds too: a tier with room per day but 7 a month.
    let r = n
        .put(
            "/v1/tiers/tight",
            json!({"daily_limit": 100, "monthly_limit": 7, "price_monthly_usd": "1.50"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(n.put("/v1/users/u2", json!({"tier": "tight"})).await.status, 200);
    for _ in 0..7 {
        assert_eq!(n.check(json!({"user_id": "u2"})).await.status, 200);
    }
    let r = n.check(json!({"user_id": "u2"})).await;
    assert_eq!(r.status, 429);
    assert!(
        r.json["message"].as_str().is_some_and(|m| m.contains("monthly")),
        "{}",
        r.json
    );
    let retry: i64 = r.header("retry-after").expect("Retry-After").parse().expect("secs");
    assert!(retry <= 31 * 86_400);

    // Tier edits apply to resident entities at once.
    let r = n
        .put(
            "/v1/tiers/tight",
            json!({"daily_limit": 100, "monthly_limit": 8, "price_monthly_usd": "1.50"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(n.check(json!({"user_id": "u2"})).await.status, 200);
    assert_eq!(n.get("/v1/tiers/tight", Some(ADMIN)).await.json["monthly_limit"], 8);

    // Limits survive a restart (graceful stop flushes counters).
    n.stop().await;
    let n = TestNode::start(&_db).await;
    let r = n.check(json!({"user_id": "u2"})).await;
    assert_eq!(r.status, 429, "{}", r.json);
    assert_eq!(r.used("user:u2", "month"), 8);
    n.stop().await;
}
on_both_backends!(tiers_set_the_limits);

// --- 3. money ----------------------------------------------------------

async fn money_is_exact(backend: Backend) {
    let Some((_db, n)) = node(backend).await else { return };
    let r = n
        .put(
            "/v1/prices/m1",
            json!({"input_per_mtok_usd": "3", "output_per_mtok_usd": "15"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    // 1000 events, 50 at a time concurrently, so group commit batches them.
    for chunk in 0..20 {
        let calls = (0..50).map(|_| {
            n.usage(json!({
                "event_id": uuid::Uuid::new_v4(), "user_id": "payer", "model": "m1",
                "input_tokens": 1234, "output_tokens": 567,
            }))
        });
        for r in futures_join(calls).await {
            assert_eq!(r.status, 200, "chunk {chunk}: {}", r.json);
            assert_eq!(r.json["cost_usd"], "0.012207");
            assert_eq!(r.json["duplicate"], false);
        }
        let _ = chunk;
    }
    let status = n.user_status("payer").await;
    assert_eq!(
        dec(&status.budget("user:payer")["spent_usd"]),
        Decimal::from_str("12.207").unwrap()
    );
    assert_eq!(status.budget("user:payer")["spent_usd"], "12.207");

    let key = EntityKey::user("payer").unwrap();
    let period = Period::containing(now_ms());
    let spend = n.state.store.entity_spend(&key, period).await.expect("spend row");
    let ledger = n.state.store.ledger_sum(&key, period).await.expect("ledger sum");
    assert_eq!(spend, Decimal::from_str("12.207").unwrap());
    assert_eq!(spend, ledger);
    n.stop().await;
}
on_both_backends!(money_is_exact);

// --- 4. reservations ---------------------------------------------------

async fn reservations_hold_under_concurrency(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let n = TestNode::start_with(&db, |c| c.hold_ttl_s = 2).await;
    assert_eq!(
        n.put(
            "/v1/tiers/big",
            json!({"daily_limit": 100000, "price_monthly_usd": "0"})
        )
        .await
        .status,
        200
    );
    assert_eq!(n.put("/v1/users/b1", json!({"tier": "big"})).await.status, 200);
    let r = n
        .put("/v1/users/b1/budget", json!({"monthly_budget_usd": "1.00"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);

    let checks = (0..200).map(|_| n.check(json!({"user_id": "b1", "estimate": {"cost_usd": "0.01"}})));
    let replies = futures_join(checks).await;
    let admitted: Vec<&common::Reply> = replies.iter().filter(|r| r.status == 200).collect();
    let refused: Vec<&common::Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(admitted.len(), 100);
    assert_eq!(refused.len(), 100);
    assert!(refused.iter().all(|r| r.json["reason"] == "budget_exceeded"));
    let ids: Vec<String> = admitted
        .iter()
        .map(|r| r.json["reservation_id"].as_str().expect("reservation id").to_string())
        .collect();
    let held = |r: &common::Reply| dec(&r.budget("user:b1")["held_usd"]);
    let status = n.user_status("b1").await;
    assert_eq!(held(&status), Decimal::from_str("1.00").unwrap());

    // Releasing 10 frees exactly 0.10.
    for id in &ids[..10] {
        let r = n.delete(&format!("/v1/reservations/{id}"), Some(ADMIN)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["amount_usd"], "0.01");
    }
    assert_eq!(held(&n.user_status("b1").await), Decimal::from_str("0.90").unwrap());
    // Released twice: not found.
    assert_eq!(
        n.delete(&format!("/v1/reservations/{}", ids[0]), Some(ADMIN))
            .await
            .status,
        404
    );

    // Settling 10 at 0.004 each: holds drop by 0.10, spend rises by 0.04.
    for id in &ids[10..20] {
        let r = n
            .usage(
                json!({"event_id": uuid::Uuid::new_v4(), "reservation_id": id, "user_id": "b1",
                          "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": "0.004"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
    }
    let status = n.user_status("b1").await;
    assert_eq!(held(&status), Decimal::from_str("0.80").unwrap());
    assert_eq!(
        dec(&status.budget("user:b1")["spent_usd"]),
        Decimal::from_str("0.04").unwrap()
    );
    assert_eq!(
        dec(&status.budget("user:b1")["remaining_usd"]),
        Decimal::from_str("0.16").unwrap()
    );

    // Exactly 16 more fit now.
    let replies =
        futures_join((0..40).map(|_| n.check(json!({"user_id": "b1", "estimate": {"cost_usd": "0.01"}})))).await;
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 16);

    // Expired holds free themselves (hold TTL is 2 s here).
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let status = n.user_status("b1").await;
    assert_eq!(held(&status), Decimal::ZERO);
    assert_eq!(
        dec(&status.budget("user:b1")["remaining_usd"]),
        Decimal::from_str("0.96").unwrap()
    );
    n.stop().await;
}
on_both_backends!(reservations_hold_under_concurrency);

/// A guest check spans two entities: both hold or neither does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_entity_checks_are_all_or_nothing() {
    let Some((_db, n)) = node(Backend::Sqlite).await else {
        return;
    };
    // Exhaust the fingerprint alone (through a different IP each time).
    for i in 0..10 {
        let r = n
            .check(json!({"guest": {"ip": format!("192.0.2.{i}"), "fingerprint": "shared"}}))
            .await;
        assert_eq!(r.status, 200);
    }
    let r = n
        .check(json!({"guest": {"ip": "192.0.2.200", "fingerprint": "shared"}}))
        .await;
    assert_eq!(r.status, 429);
    // The IP admitted first (key order ip < fp), then was rolled back.
    assert_eq!(r.used("ip:192.0.2.200", "day"), 0);
    assert_eq!(r.used("fp:shared", "day"), 10);
    n.stop().await;
}

// --- 5. idempotency ----------------------------------------------------

async fn usage_is_idempotent(backend: Backend) {
    let Some((_db, n)) = node(backend).await else { return };
    let event = uuid::Uuid::new_v4();
    let body = json!({"event_id": event, "user_id": "i1", "model": "m", "input_tokens": 10, "output_tokens": 10, "cost_usd": "0.25"});
    let first = n.usage(body.clone()).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json["duplicate"], false);
    let second = n.usage(body.clone()).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.json["duplicate"], true);
    assert_eq!(second.json["cost_usd"], "0.25");

    // Concurrently: one new event sent 20 times at once counts once.
    let event = uuid::Uuid::new_v4();
    let body = json!({"event_id": event, "user_id": "i1", "model": "m", "input_tokens": 10, "output_tokens": 10, "cost_usd": "0.5"});
    let replies = futures_join((0..20).map(|_| n.usage(body.clone()))).await;
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(replies.iter().filter(|r| r.json["duplicate"] == false).count(), 1);
    let status = n.user_status("i1").await;
    assert_eq!(
        dec(&status.budget("user:i1")["spent_usd"]),
        Decimal::from_str("0.75").unwrap()
    );
    let key = EntityKey::user("i1").unwrap();
    let period = Period::containing(now_ms());
    assert_eq!(
        n.state.store.ledger_sum(&key, period).await.unwrap(),
        Decimal::from_str("0.75").unwrap()
    );
    assert_eq!(
        n.state.store.entity_spend(&key, period).await.unwrap(),
        Decimal::from_str("0.75").unwrap()
    );
    n.stop().await;
}
on_both_backends!(usage_is_idempotent);

// --- actors: supervision and passivation --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_actor_is_rebuilt_and_nobody_else_notices() {
    let Some((_db, n)) = node(Backend::Sqlite).await else {
        return;
    };
    for _ in 0..3 {
        assert_eq!(n.check(json!({"user_id": "victim"})).await.status, 200);
        assert_eq!(n.check(json!({"user_id": "bystander"})).await.status, 200);
    }
    let victim = EntityKey::user("victim").unwrap();
    let bystander = EntityKey::user("bystander").unwrap();
    let bystander_actor = n.entities.actor_id_for_test(&bystander).expect("resident");
    let crashed = n
        .entities
        .crash_for_test(&victim)
        .await
        .expect("the actor crashed and stopped");
    // The bystander keeps its in-memory state; the victim is rebuilt from
    // the store plus unflushed deltas, so its count is intact too.
    let r = n.check(json!({"user_id": "bystander"})).await;
    assert_eq!(r.used("user:bystander", "day"), 4);
    let r = n.check(json!({"user_id": "victim"})).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.used("user:victim", "day"), 4);
    // A fresh actor serves the victim; the bystander's actor never changed.
    let rebuilt = n.entities.actor_id_for_test(&victim).expect("resident again");
    assert_ne!(rebuilt, crashed, "the victim runs on a fresh actor");
    assert_eq!(n.entities.actor_id_for_test(&bystander), Some(bystander_actor));
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_entities_passivate_and_come_back_intact() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = TestNode::start_with(&db, |c| {
        c.idle_timeout_s = 1;
        c.max_entities = 50;
    })
    .await;
    for i in 0..120 {
        assert_eq!(n.check(json!({"user_id": format!("p{i}")})).await.status, 200);
    }
    assert_eq!(n.check(json!({"user_id": "p0"})).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(n.entities.resident(), 0, "idle entities passivated");
    let r = n.check(json!({"user_id": "p0"})).await;
    assert_eq!(r.used("user:p0", "day"), 3);
    let r = n.check(json!({"user_id": "p119"})).await;
    assert_eq!(r.used("user:p119", "day"), 2);
    n.stop().await;
}

/// Runs futures concurrently.
async fn futures_join<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    futures::future::join_all(futures).await
}

/// The optional per-minute burst limit (GCRA) applies over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_minute_burst_limit() {
    let Some((_db, n)) = node(Backend::Sqlite).await else {
        return;
    };
    let r = n
        .put(
            "/v1/tiers/bursty",
            json!({"daily_limit": 1000, "rpm": 3, "price_monthly_usd": "0"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(n.put("/v1/users/r1", json!({"tier": "bursty"})).await.status, 200);
    for _ in 0..3 {
        assert_eq!(n.check(json!({"user_id": "r1"})).await.status, 200);
    }
    let r = n.check(json!({"user_id": "r1"})).await;
    assert_eq!(r.status, 429);
    assert!(
        r.json["message"].as_str().is_some_and(|m| m.contains("per-minute")),
        "{}",
        r.json
    );
    let retry: i64 = r.header("retry-after").expect("Retry-After").parse().expect("secs");
    assert!((1..=20).contains(&retry), "one interval is 20 s: {retry}");
    assert!(
        r.header("ratelimit-policy")
            .is_some_and(|p| p.contains("\"user-minute\";q=3;w=60"))
    );
    n.stop().await;
}

/// With no admin token configured, the first start generates one (written
/// to a file only its owner reads, only its hash stored); later starts use
/// the stored hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_is_generated_once() {
    use std::os::unix::fs::PermissionsExt;
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let config = tollgate::config::ServeConfig::for_database(&db.url);
    let first = tollgate::node::Node::start(&config).await.expect("start");
    let file = first.generated_admin_token_file().expect("generated").to_path_buf();
    assert_eq!(
        file,
        config.admin_token_file(),
        "next to the SQLite database by default"
    );
    let mode = std::fs::metadata(&file).expect("token file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "owner-only");
    let token = std::fs::read_to_string(&file).expect("read token").trim().to_string();
    assert!(token.starts_with("tga_") && token.len() >= 40);
    first.shutdown().await.expect("stop");
    let stored = n_settings(&db).await;
    assert!(!stored.contains(&token), "the secret itself is not stored");

    let second = tollgate::node::Node::start(&config).await.expect("restart");
    assert!(second.generated_admin_token_file().is_none());
    let principal = second
        .state()
        .auth
        .authenticate(&auth_header(&token), "127.0.0.1:1".parse().expect("addr"))
        .await;
    assert!(matches!(principal, Ok(tollgate::identity::Principal::Admin)));
    assert!(
        second
            .state()
            .auth
            .authenticate(&auth_header("tga_wrong"), "127.0.0.1:1".parse().expect("addr"))
            .await
            .is_err()
    );
    second.shutdown().await.expect("stop");
}

/// A configured admin token shorter than 32 characters refuses to start,
/// saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_admin_token_refuses_to_start() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let mut config = tollgate::config::ServeConfig::for_database(&db.url);
    config.admin_token = Some("dev-admin".into());
    let Err(error) = tollgate::node::Node::start(&config).await else {
        panic!("a 9-character admin token started a node");
    };
    let message = error.to_string();
    assert!(message.contains("at least 32"), "{message}");
    assert!(
        !message.contains("dev-admin"),
        "the message must not echo the token: {message}"
    );
    config.admin_token = Some("x".repeat(32));
    let node = tollgate::node::Node::start(&config).await.expect("32 characters start");
    node.shutdown().await.expect("stop");
}

// --- ops surfaces ------------------------------------------------------

/// `/metrics` and `/v1/cluster*` refuse anonymous callers (401) and
/// non-admin credentials (403) on the public listener; the admin gets
/// them; `--ops-listen` serves them (and only the ops routes) without a
/// credential.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ops_surfaces_need_admin_or_the_ops_listener() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let n = TestNode::start_with(&db, |c| {
        c.ops_listen = Some("127.0.0.1:0".parse().expect("addr"));
        c.jwt.jwt_issuer = Some(common::JWT_ISSUER.to_string());
        c.jwt.jwt_audience = Some(common::JWT_AUDIENCE.to_string());
        c.jwt.jwt_hs256_secret = Some(common::JWT_SECRET.to_string());
    })
    .await;
    let user = common::user_token("ops-u1");
    let ops_routes = ["/metrics", "/v1/cluster", "/v1/cluster/owner?entity=user:u1"];
    for path in ops_routes {
        let anonymous = n.get(path, None).await;
        assert_eq!(anonymous.status, 401, "{path}: {}", anonymous.json);
        assert_eq!(anonymous.json["error"], "unauthorized", "{path}");
        let end_user = n.get(path, Some(&user)).await;
        assert_eq!(end_user.status, 403, "{path}: {}", end_user.json);
        let admin = n.get(path, Some(ADMIN)).await;
        assert_eq!(admin.status, 200, "{path}: {}", admin.json);
    }
    let faults = n.post("/v1/cluster/faults", None, json!({"isolate_from": []})).await;
    assert!(faults.status == 401 || faults.status == 405, "{}", faults.json);
    for path in ["/healthz", "/readyz"] {
        assert_eq!(n.get(path, None).await.status, 200, "{path} stays public");
    }

    let ops = n.ops_base.clone().expect("--ops-listen bound");
    let client = reqwest::Client::new();
    for path in ops_routes.iter().chain(&["/healthz", "/readyz"]) {
        let reply = client.get(format!("{ops}{path}")).send().await.expect("ops request");
        assert_eq!(reply.status(), 200, "{path} on --ops-listen");
    }
    let cluster: Value = client
        .get(format!("{ops}/v1/cluster"))
        .send()
        .await
        .expect("ops request")
        .json()
        .await
        .expect("json");
    assert!(cluster["nodes"].as_array().is_some_and(|n| n.len() == 1), "{cluster}");
    // The ops listener is not a second public API.
    let check = client
        .post(format!("{ops}/v1/check"))
        .bearer_auth(ADMIN)
        .json(&json!({"user_id": "u1"}))
        .send()
        .await
        .expect("ops request");
    assert_eq!(check.status(), 404);
    n.stop().await;
}

fn auth_header(token: &str) -> axum::http::HeaderMap {
    let mut h = axum::http::HeaderMap::new();
    h.insert("authorization", format!("Bearer {token}").parse().expect("header"));
    h
}

/// Every stored setting value, to prove no secret is kept in clear.
async fn n_settings(db: &TestDb) -> String {
    let store = tollgate::store::Store::connect(&db.url).await.expect("connect");
    let Some(hash) = store.get_setting("admin_token_sha256").await.expect("setting") else {
        panic!("no admin token hash stored");
    };
    assert_eq!(hash.len(), 64, "a SHA-256 in hex");
    hash
}
