//! Identity and tenancy over HTTP: API keys (create, rotate, revoke),
//! organisations and org-level enforcement, on SQLite and Postgres.

mod common;

use common::{ADMIN, Backend, TestDb, TestNode, user_token};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::str::FromStr;
use std::sync::Arc;
use tollgate::entity::EntityKey;
use tollgate::limits::calendar::{Period, now_ms};

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}"))).expect("decimal")
}

async fn node(backend: Backend) -> Option<(TestDb, TestNode)> {
    let db = TestDb::new(backend).await?;
    let node = TestNode::start_with_jwt(&db).await;
    Some((db, node))
}

async fn create_key(n: &TestNode, token: &str, body: Value) -> (String, String) {
    let r = n.post("/v1/api-keys", Some(token), body).await;
    assert_eq!(r.status, 201, "{}", r.json);
    let id = r.json["id"].as_str().expect("id").to_string();
    let secret = r.json["secret"].as_str().expect("secret").to_string();
    (id, secret)
}

/// Every stored text of the key tables, read with a raw connection, to
/// prove no secret is kept.
async fn stored_key_texts(db: &TestDb) -> Vec<String> {
    const KEYS: &str = "SELECT id, name, scopes, COALESCE(org_id, ''), COALESCE(user_id, ''), \
                        COALESCE(created_by, '') FROM api_keys";
    const SECRETS: &str = "SELECT secret_hash, key_id, '', '', '', '' FROM api_key_secrets";
    type Row = (String, String, String, String, String, String);
    let mut rows: Vec<Row> = Vec::new();
    if db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
        for q in [KEYS, SECRETS] {
            rows.extend(sqlx::query_as::<_, Row>(q).fetch_all(&pool).await.expect("rows"));
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
        for q in [KEYS, SECRETS] {
            rows.extend(sqlx::query_as::<_, Row>(q).fetch_all(&pool).await.expect("rows"));
        }
        pool.close().await;
    }
    rows.into_iter()
        .flat_map(|(a, b, c, d, e, f)| [a, b, c, d, e, f])
        .collect()
}

async fn api_keys_work_rotate_and_revoke(backend: Backend) {
    let Some((db, n)) = node(backend).await else { return };
    let (id, secret) = create_key(&n, ADMIN, json!({"name": "backend", "scopes": ["service"]})).await;
    assert!(secret.starts_with("tg_") && secret.len() >= 3 + 43, "{secret}");
    let check = |token: String| {
        let n = &n;
        async move { n.post("/v1/check", Some(&token), json!({"user_id": "k-user"})).await }
    };
    assert_eq!(check(secret.clone()).await.status, 200);

    // Only the hash is stored.
    let texts = stored_key_texts(&db).await;
    let hash: String = Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(texts.contains(&hash), "the secret's SHA-256 is stored");
    assert!(
        !texts.iter().any(|t| t.contains(&secret[3..])),
        "no secret in clear: {texts:?}"
    );

    // Metadata never shows the secret; last use is written in batches.
    n.state.keys.write_last_used().await.expect("write last use");
    let meta = n.get(&format!("/v1/api-keys/{id}"), Some(ADMIN)).await;
    assert_eq!(meta.status, 200, "{}", meta.json);
    assert!(meta.json.get("secret").is_none());
    assert!(meta.json["last_used_at"].is_string(), "{}", meta.json);
    assert_eq!(meta.json["scopes"], json!(["service"]));

    // Rotation: both secrets work during the grace period, then only the new.
    let r = n
        .post(
            &format!("/v1/api-keys/{id}/rotate"),
            Some(ADMIN),
            json!({"grace_period_s": 2}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let new_secret = r.json["secret"].as_str().expect("secret").to_string();
    assert_ne!(new_secret, secret);
    assert_eq!(check(new_secret.clone()).await.status, 200);
    assert_eq!(check(secret.clone()).await.status, 200, "old secret within grace");
    tokio::time::sleep(std::time::Duration::from_millis(2_300)).await;
    let old = check(secret.clone()).await;
    assert_eq!(
        (old.status.as_u16(), &old.json["error"]),
        (401, &json!("invalid_token"))
    );
    assert_eq!(check(new_secret.clone()).await.status, 200);

    // Revocation is immediate.
    let r = n.delete(&format!("/v1/api-keys/{id}"), Some(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(check(new_secret.clone()).await.status, 401);
    assert_eq!(n.delete(&format!("/v1/api-keys/{id}"), Some(ADMIN)).await.status, 404);
    assert!(!stored_key_texts(&db).await.iter().any(|t| t.contains(&new_secret[3..])));

    // Bad requests name the field.
    let r = n
        .post("/v1/api-keys", Some(ADMIN), json!({"name": "x", "scopes": ["root"]}))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json["message"].as_str().unwrap_or("").contains("scopes"),
        "{}",
        r.json
    );
    let r = n
        .post("/v1/api-keys", Some(ADMIN), json!({"name": "x", "scopes": ["check"]}))
        .await;
    assert_eq!(r.status, 400, "a check key needs its user: {}", r.json);
    n.stop().await;
}
on_both_backends!(api_keys_work_rotate_and_revoke);

async fn keys_survive_a_restart(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let n = TestNode::start_with_jwt(&db).await;
    let (id, secret) = create_key(&n, ADMIN, json!({"name": "k", "scopes": ["service"]})).await;
    let r = n
        .post(
            &format!("/v1/api-keys/{id}/rotate"),
            Some(ADMIN),
            json!({"grace_period_s": 3600}),
        )
        .await;
    let new_secret = r.json["secret"].as_str().expect("secret").to_string();
    n.stop().await;
    let n = TestNode::start_with_jwt(&db).await;
    for s in [&secret, &new_secret] {
        assert_eq!(n.post("/v1/check", Some(s), json!({"user_id": "u"})).await.status, 200);
    }
    n.stop().await;
}
on_both_backends!(keys_survive_a_restart);

/// Creates an org owned by `owner` (signed in by JWT) and returns its id.
/// The owner invites the user (202), who accepts under their own JWT.
async fn invite_and_accept(n: &TestNode, org: &str, owner: &str, user: &str, body: Value) {
    let r = n
        .post(
            &format!("/v1/orgs/{org}/members/{user}"),
            Some(&user_token(owner)),
            body,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.json);
    let invitation = r.json["invitation_id"].as_str().expect("invitation_id");
    let r = n
        .post(
            &format!("/v1/invitations/{invitation}/accept"),
            Some(&user_token(user)),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
}

async fn create_org(n: &TestNode, owner: &str, tier: &str) -> String {
    let r = n
        .post(
            "/v1/orgs",
            Some(&user_token(owner)),
            json!({"name": format!("{owner}'s org")}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let id = r.json["id"].as_str().expect("org id").to_string();
    let r = n
        .put(&format!("/v1/orgs/{id}"), json!({"subscription_tier": tier}))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    id
}

async fn orgs_are_created_by_signed_in_users(backend: Backend) {
    let Some((_db, n)) = node(backend).await else { return };
    let r = n.post("/v1/orgs", None, json!({"name": "anon"})).await;
    assert_eq!(r.status, 401, "{}", r.json);
    let org = create_org(&n, "founder", "pro").await;
    let r = n.get(&format!("/v1/orgs/{org}"), Some(&user_token("founder"))).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["owner_user_id"], "founder");
    assert_eq!(r.json["subscription_tier"], "pro");
    assert_eq!(r.json["members"], json!([{"user_id": "founder", "role": "owner"}]));
    // One organisation per user.
    let r = n
        .post("/v1/orgs", Some(&user_token("founder")), json!({"name": "second"}))
        .await;
    assert_eq!(r.status, 409, "{}", r.json);
    // A stranger learns nothing.
    let r = n.get(&format!("/v1/orgs/{org}"), Some(&user_token("stranger"))).await;
    assert_eq!(r.status, 404, "{}", r.json);
    n.stop().await;
}
on_both_backends!(orgs_are_created_by_signed_in_users);

async fn org_members_share_the_orgs_day_limit(backend: Backend) {
    let Some((_db, n)) = node(backend).await else { return };
    let org = create_org(&n, "owner-a", "pro").await;
    invite_and_accept(&n, &org, "owner-a", "member-a", json!({})).await;
    let mut admitted = 0;
    for i in 0..130 {
        let user = if i % 2 == 0 { "owner-a" } else { "member-a" };
        let r = n.check(json!({"user_id": user})).await;
        match r.status.as_u16() {
            200 => admitted += 1,
            429 => assert_eq!(r.json["reason"], "rate_limited"),
            s => panic!("check {i}: {s} {}", r.json),
        }
        if i == 0 {
            assert_eq!(r.json["tier"], "pro", "members follow the org's plan: {}", r.json);
            assert!(
                r.json["limits"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|x| x["entity"] == format!("org:{org}")))
            );
        }
    }
    assert_eq!(admitted, 100, "the members together are capped by the org's 100/day");
    let status = n.user_status("member-a").await;
    assert_eq!(status.used(&format!("org:{org}"), "day"), 100);
    // A member's own JWT checks count against the org too.
    let r = n.post("/v1/check", Some(&user_token("member-a")), json!({})).await;
    assert_eq!(r.status, 429, "{}", r.json);
    // Leaving the org puts the user back on their own plan: free, whose
    // 10/day the 50 messages sent as a member already exceed.
    let r = n
        .delete(
            &format!("/v1/orgs/{org}/members/member-a"),
            Some(&user_token("owner-a")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let r = n.check(json!({"user_id": "member-a"})).await;
    assert_eq!(r.status, 429, "{}", r.json);
    assert_eq!(r.json["tier"], "free");
    assert_eq!(r.used("user:member-a", "day"), 50);
    assert!(
        !r.json["limits"].to_string().contains("org:"),
        "no longer pooled: {}",
        r.json
    );
    n.stop().await;
}
on_both_backends!(org_members_share_the_orgs_day_limit);

async fn org_budget_holds_across_members(backend: Backend) {
    let Some((_db, n)) = node(backend).await else { return };
    let org = create_org(&n, "owner-b", "enterprise").await;
    invite_and_accept(&n, &org, "owner-b", "member-b", json!({"role": "admin"})).await;
    // The org's owner sets the org budget (an org manager may).
    let r = n
        .call(
            "PUT",
            &format!("/v1/orgs/{org}/budget"),
            Some(&user_token("owner-b")),
            Some(json!({"monthly_budget_usd": "1.00"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);

    let n = Arc::new(n);
    let mut tasks = Vec::new();
    for i in 0..200 {
        let n = n.clone();
        let user = if i % 2 == 0 { "owner-b" } else { "member-b" };
        tasks.push(tokio::spawn(async move {
            n.check(json!({"user_id": user, "estimate": {"cost_usd": "0.01"}}))
                .await
        }));
    }
    let mut admitted = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let r = t.await.expect("task");
        match r.status.as_u16() {
            200 => admitted.push(r.json["reservation_id"].as_str().expect("rsv").to_string()),
            429 => {
                assert_eq!(r.json["reason"], "budget_exceeded", "{}", r.json);
                refused += 1;
            }
            s => panic!("{s} {}", r.json),
        }
    }
    assert_eq!((admitted.len(), refused), (100, 100));
    let status = n.user_status("owner-b").await;
    assert_eq!(
        dec(&status.budget(&format!("org:{org}"))["held_usd"]),
        Decimal::new(100, 2)
    );

    // Settle some reservations with usage: user and org spend equal their ledger sums.
    for (i, rsv) in admitted.iter().take(30).enumerate() {
        let user = if rsv_names(rsv, "owner-b") {
            "owner-b"
        } else {
            "member-b"
        };
        let r = n
            .usage(json!({
                "event_id": uuid::Uuid::new_v4(), "reservation_id": rsv, "user_id": user,
                "model": "m", "input_tokens": 10, "output_tokens": 5, "cost_usd": format!("0.00{}", i % 9 + 1),
            }))
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
    }
    let store = &n.state.store;
    let period = Period::containing(now_ms());
    for key in [
        format!("org:{org}"),
        "user:owner-b".to_string(),
        "user:member-b".to_string(),
    ] {
        let key = EntityKey::parse(&key).expect("key");
        let spend = store.entity_spend(&key, period).await.expect("spend");
        let ledger = store.ledger_sum(&key, period).await.expect("ledger");
        assert_eq!(spend, ledger, "{key}");
    }
    let org_spend = store
        .entity_spend(&EntityKey::parse(&format!("org:{org}")).expect("key"), period)
        .await
        .expect("spend");
    let users: Decimal = [
        store
            .entity_spend(&EntityKey::parse("user:owner-b").expect("k"), period)
            .await
            .expect("s"),
        store
            .entity_spend(&EntityKey::parse("user:member-b").expect("k"), period)
            .await
            .expect("s"),
    ]
    .into_iter()
    .sum();
    assert_eq!(org_spend, users, "the org's spend is its members' spend");
    assert!(org_spend > Decimal::ZERO);

    // Usage rows carry the organisation.
    let r = n
        .get(
            &format!("/v1/usage/summary?org_id={org}&group_by=user"),
            Some(&user_token("owner-b")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(dec(&r.json["total_usd"]), org_spend);
    assert_eq!(r.json["events"], 30);
    if let Ok(n) = Arc::try_unwrap(n) {
        n.stop().await;
    }
}
on_both_backends!(org_budget_holds_across_members);

/// Does reservation id `rsv` name `user`? (Ids carry their entities.)
fn rsv_names(rsv: &str, user: &str) -> bool {
    tollgate::service::reservation::ReservationId::parse(rsv).is_some_and(|r| {
        r.entities
            .iter()
            .any(|e| e.id() == user && e.kind() == tollgate::entity::EntityKind::User)
    })
}

async fn usage_summary_is_exact_and_scoped(backend: Backend) {
    let Some((_db, n)) = node(backend).await else { return };
    let org = create_org(&n, "sum-owner", "enterprise").await;
    invite_and_accept(&n, &org, "sum-owner", "sum-member", json!({})).await;
    let costs = [
        ("sum-owner", "m1", "0.1"),
        ("sum-member", "m1", "0.2"),
        ("sum-member", "m2", "0.0000001"),
        ("loner", "m1", "5"),
    ];
    for (user, model, cost) in costs {
        let r = n
            .usage(
                json!({"event_id": uuid::Uuid::new_v4(), "user_id": user, "model": model,
                "input_tokens": 1, "output_tokens": 2, "cost_usd": cost}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
    }
    let r = n
        .get(&format!("/v1/usage/summary?org_id={org}&group_by=model"), Some(ADMIN))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(dec(&r.json["total_usd"]), Decimal::from_str("0.3000001").expect("d"));
    let groups = r.json["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2);
    assert_eq!(
        (groups[0]["key"].clone(), dec(&groups[0]["cost_usd"])),
        (json!("m1"), Decimal::from_str("0.3").expect("d"))
    );
    // A plain member sees only their own usage.
    let r = n
        .get(
            &format!("/v1/usage/summary?org_id={org}"),
            Some(&user_token("sum-member")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(dec(&r.json["total_usd"]), Decimal::from_str("0.2000001").expect("d"));
    // Someone else's usage is not theirs to see.
    let r = n
        .get("/v1/usage/summary?user_id=loner", Some(&user_token("sum-member")))
        .await;
    assert_eq!(r.status, 404, "{}", r.json);
    let r = n.get("/v1/usage/summary?group_by=day", Some(ADMIN)).await;
    assert_eq!(dec(&r.json["total_usd"]), Decimal::from_str("5.3000001").expect("d"));
    assert_eq!(r.json["groups"].as_array().map(Vec::len), Some(1));
    let r = n.get("/v1/usage/summary?group_by=week", Some(ADMIN)).await;
    assert_eq!(r.status, 400);
    let r = n.get("/v1/usage/summary?from=yesterday", Some(ADMIN)).await;
    assert_eq!(r.status, 400);
    assert_eq!(n.get("/v1/usage/summary", None).await.status, 401);
    n.stop().await;
}
on_both_backends!(usage_summary_is_exact_and_scoped);

/// A node that missed a change (another node made it) catches up when it
/// reloads from the store: what a cluster node does every 30 s.
async fn a_node_that_missed_a_change_catches_up(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let a = TestNode::start_with_jwt(&db).await;
    let b = TestNode::start_with_jwt(&db).await;
    let (id, secret) = create_key(&a, ADMIN, json!({"name": "k", "scopes": ["service"]})).await;
    let check = json!({"user_id": "u"});
    assert_eq!(b.post("/v1/check", Some(&secret), check.clone()).await.status, 401);
    b.state.keys.reload_all().await.expect("reload");
    assert_eq!(b.post("/v1/check", Some(&secret), check.clone()).await.status, 200);
    // Revoked on A: B stops accepting it once it reloads, and reloading
    // never leaves a live key briefly unknown.
    assert_eq!(a.delete(&format!("/v1/api-keys/{id}"), Some(ADMIN)).await.status, 200);
    b.state.keys.reload_all().await.expect("reload");
    assert_eq!(b.post("/v1/check", Some(&secret), check).await.status, 401);
    // Memberships too.
    let org = create_org(&a, "catch-up-owner", "pro").await;
    assert_eq!(b.state.directory.org_of("catch-up-owner"), None);
    b.state
        .directory
        .replace_all(b.state.store.load_memberships().await.expect("memberships"));
    assert_eq!(
        b.state.directory.org_of("catch-up-owner").as_deref(),
        Some(org.as_str())
    );
    a.stop().await;
    b.stop().await;
}
on_both_backends!(a_node_that_missed_a_change_catches_up);
