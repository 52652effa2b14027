//! Who may write money: only a service credential records usage, settles
//! a reservation or releases one. Guests get 401, end users 403 (even for
//! themselves), and no refused call changes the ledger, the spend row or a
//! hold. On SQLite and Postgres.

mod common;

use common::{ADMIN, Backend, Reply, TestDb, TestNode, user_token};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::str::FromStr;
use tollgate::entity::EntityKey;
use tollgate::limits::calendar::{Period, now_ms};

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal")
}

fn usage(user: Option<&str>, cost: &str, reservation: Option<&str>) -> Value {
    let mut body = json!({
        "event_id": uuid::Uuid::new_v4(), "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": cost,
    });
    if let Some(user) = user {
        body["user_id"] = json!(user);
    }
    if let Some(reservation) = reservation {
        body["reservation_id"] = json!(reservation);
    }
    body
}

fn refused(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status.as_u16(), status, "{what}: {}", reply.json);
    assert!(reply.json["error"].is_string(), "{what}: {}", reply.json);
}

/// (spend row, ledger sum) of `key` this month.
async fn money(n: &TestNode, key: &EntityKey) -> (Decimal, Decimal) {
    let period = Period::containing(now_ms());
    let spend = n.state.store.entity_spend(key, period).await.expect("spend");
    let ledger = n.state.store.ledger_sum(key, period).await.expect("ledger");
    (spend, ledger)
}

async fn only_service_credentials_write_money(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let n = TestNode::start_with_jwt(&db).await;
    let user = "u_writer";
    let jwt = user_token(user);
    let victim = EntityKey::user(user).expect("key");

    // The user's own `check` key, and a service key.
    let r = n
        .post("/v1/api-keys", Some(&jwt), json!({"name": "mine", "scopes": ["check"]}))
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let check_key = r.json["secret"].as_str().expect("secret").to_string();
    let r = n
        .post(
            "/v1/api-keys",
            Some(ADMIN),
            json!({"name": "backend", "scopes": ["service"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let service_key = r.json["secret"].as_str().expect("secret").to_string();

    // A $1 budget and a reservation the user's own check took.
    let r = n
        .put(
            &format!("/v1/users/{user}/budget"),
            json!({"monthly_budget_usd": "1.00"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let r = n
        .post("/v1/check", Some(&jwt), json!({"estimate": {"cost_usd": "0.40"}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let reservation = r.json["reservation_id"].as_str().expect("reservation").to_string();

    // Anonymous: 401, whatever it names.
    for body in [
        usage(None, "1000000000", None),
        usage(Some(user), "1000000000", None),
        usage(Some(user), "0", Some(&reservation)),
    ] {
        refused(&n.post("/v1/usage", None, body).await, 401, "anonymous usage");
    }
    refused(
        &n.delete(&format!("/v1/reservations/{reservation}"), None).await,
        401,
        "anonymous release",
    );

    // The end user, by JWT or by their own check key: 403, even for themselves.
    for token in [jwt.as_str(), check_key.as_str()] {
        for body in [
            usage(None, "1000000000", None),
            usage(Some(user), "0.000001", None),
            usage(None, "0", Some(&reservation)),
            usage(Some(user), "0", Some(&reservation)),
        ] {
            refused(&n.post("/v1/usage", Some(token), body).await, 403, "user usage");
        }
        refused(
            &n.delete(&format!("/v1/reservations/{reservation}"), Some(token)).await,
            403,
            "user release",
        );
    }

    // Nothing moved: no spend, no ledger row, the hold still held.
    assert_eq!(money(&n, &victim).await, (Decimal::ZERO, Decimal::ZERO));
    let status = n.get("/v1/status", Some(&jwt)).await;
    assert_eq!(status.status, 200, "{}", status.json);
    assert_eq!(
        dec(status.budget("user:u_writer")["held_usd"].as_str().expect("held")),
        dec("0.40")
    );

    // The backend's service key settles the reservation at its real cost.
    let r = n
        .post(
            "/v1/usage",
            Some(&service_key),
            usage(Some(user), "0.25", Some(&reservation)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["recorded"], true);
    let budget = r.json["budgets"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["entity"] == "user:u_writer"))
        .cloned()
        .expect("user budget");
    assert_eq!(dec(budget["held_usd"].as_str().expect("held")), Decimal::ZERO);
    assert_eq!(dec(budget["spent_usd"].as_str().expect("spent")), dec("0.25"));

    // And releases another; the admin token records too.
    let r = n
        .post("/v1/check", Some(&jwt), json!({"estimate": {"cost_usd": "0.10"}}))
        .await;
    let second = r.json["reservation_id"].as_str().expect("reservation").to_string();
    let r = n
        .delete(&format!("/v1/reservations/{second}"), Some(&service_key))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(dec(r.json["amount_usd"].as_str().expect("amount")), dec("0.10"));
    let r = n.post("/v1/usage", Some(ADMIN), usage(Some(user), "0.05", None)).await;
    assert_eq!(r.status, 200, "{}", r.json);

    assert_eq!(money(&n, &victim).await, (dec("0.30"), dec("0.30")));
    n.stop().await;
}
on_both_backends!(only_service_credentials_write_money);

/// An organisation's service key writes money for its own members only:
/// another user's usage or reservation is hidden (404) and untouched.
async fn an_org_service_key_writes_only_for_its_members(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let n = TestNode::start_with_jwt(&db).await;
    let owner = "u_org_owner";
    let r = n
        .post("/v1/orgs", Some(&user_token(owner)), json!({"name": "Acme"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let org = r.json["id"].as_str().expect("org id").to_string();
    let r = n
        .post(
            "/v1/api-keys",
            Some(ADMIN),
            json!({"name": "acme-backend", "scopes": ["service"], "org_id": org}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let org_service = r.json["secret"].as_str().expect("secret").to_string();

    let stranger = "u_stranger";
    let r = n
        .post(
            "/v1/check",
            Some(ADMIN),
            json!({"user_id": stranger, "estimate": {"cost_usd": "0.10"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let reservation = r.json["reservation_id"].as_str().expect("reservation").to_string();

    refused(
        &n.post("/v1/usage", Some(&org_service), usage(Some(stranger), "5", None))
            .await,
        404,
        "usage for a non-member",
    );
    refused(
        &n.delete(&format!("/v1/reservations/{reservation}"), Some(&org_service))
            .await,
        404,
        "release of a non-member's hold",
    );
    let stranger_key = EntityKey::user(stranger).expect("key");
    assert_eq!(money(&n, &stranger_key).await, (Decimal::ZERO, Decimal::ZERO));

    // Its own member's usage is recorded.
    let r = n
        .post("/v1/usage", Some(&org_service), usage(Some(owner), "0.5", None))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    n.stop().await;
}
on_both_backends!(an_org_service_key_writes_only_for_its_members);
