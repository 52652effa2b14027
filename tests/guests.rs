//! Guests cannot evade their limits or flood the node: X-Forwarded-For is
//! walked from the right, IPv6 guests share their /64, read-only views
//! start no actors, new entities are bounded per client and in total, and
//! a zero estimate is no estimate.

mod common;

use common::{ADMIN, Backend, Reply, TestDb, TestNode};
use serde_json::{Value, json};

async fn node_with(
    backend: Backend,
    tweak: impl FnOnce(&mut tollgate::config::ServeConfig),
) -> Option<(TestDb, TestNode)> {
    let db = TestDb::new(backend).await?;
    let node = TestNode::start_with(&db, tweak).await;
    Some((db, node))
}

/// An anonymous request through the "proxy" on loopback.
async fn anonymous(
    n: &TestNode,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let mut req = n.client.request(method, format!("{}{path}", n.base));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("sent");
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, headers, json }
}

fn behind_loopback_proxy(c: &mut tollgate::config::ServeConfig) {
    c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
}

// --- acceptance 3: the proxy's address, not the client's story ---------

async fn spoofed_forwarded_for_changes_nothing(backend: Backend) {
    let Some((_db, n)) = node_with(backend, behind_loopback_proxy).await else {
        return;
    };
    let mut admitted = 0;
    for i in 0..20 {
        let xff = format!("10.66.0.{i}, 198.51.100.77");
        let r = anonymous(
            &n,
            reqwest::Method::POST,
            "/v1/check",
            &[("x-forwarded-for", &xff)],
            Some(json!({})),
        )
        .await;
        assert!(r.status == 200 || r.status == 429, "{} {}", r.status, r.json);
        if r.status == 200 {
            admitted += 1;
            assert_eq!(r.json["limits"][0]["entity"], "ip:198.51.100.77");
        }
    }
    assert_eq!(
        admitted, 10,
        "the guest tier allows 10 a day to the proxy-appended address"
    );
    n.stop().await;
}
on_both_backends!(spoofed_forwarded_for_changes_nothing);

async fn one_ipv6_network_is_one_guest(backend: Backend) {
    let Some((_db, n)) = node_with(backend, behind_loopback_proxy).await else {
        return;
    };
    let mut admitted = 0;
    for i in 0..20 {
        let xff = format!("2001:db8:7:1:{i:x}::{:x}", 1000 + i);
        let r = anonymous(
            &n,
            reqwest::Method::POST,
            "/v1/check",
            &[("x-forwarded-for", &xff)],
            Some(json!({})),
        )
        .await;
        assert!(r.status == 200 || r.status == 429, "{} {}", r.status, r.json);
        if r.status == 200 {
            admitted += 1;
            assert_eq!(r.json["limits"][0]["entity"], "ip:2001:db8:7:1::/64");
        }
    }
    assert_eq!(admitted, 10, "20 addresses of one /64 share one guest allowance");

    // A service naming a guest in the same /64 names the same entity, and
    // the ledger records the network.
    let r = n.check(json!({"guest": {"ip": "2001:db8:7:1::ffff"}})).await;
    assert_eq!(r.status, 429, "{}", r.json);
    assert_eq!(r.json["limits"][0]["entity"], "ip:2001:db8:7:1::/64");
    let r = n
        .usage(
            json!({"event_id": uuid::Uuid::new_v4(), "guest": {"ip": "2001:db8:7:1:abcd::1"},
                      "model": "m", "input_tokens": 1, "output_tokens": 1, "cost_usd": "0.25"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let r = n.get("/v1/status?ip=2001:db8:7:1::5", Some(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.budget("ip:2001:db8:7:1::/64")["spent_usd"], "0.25");
    n.stop().await;
}
on_both_backends!(one_ipv6_network_is_one_guest);

// --- acceptance 4: bounded memory ---------------------------------------

async fn status_probes_start_no_actors(backend: Backend) {
    // A generous per-IP cap, so every probe is answered: none may start an
    // actor.
    let Some((_db, n)) = node_with(backend, |c| c.max_new_entities_per_ip = 100_000).await else {
        return;
    };
    let before = n.entities.resident();
    for i in 0..2000 {
        let fp = format!("probe-{i}");
        let r = anonymous(
            &n,
            reqwest::Method::GET,
            "/v1/status",
            &[("x-tollgate-fingerprint", &fp)],
            None,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.json);
        if i == 0 {
            // The tier's defaults, nothing used.
            assert_eq!(r.json["tier"], "guest");
            assert_eq!(r.used(&format!("fp:{fp}"), "day"), 0);
        }
    }
    let new = n.entities.resident() - before;
    assert!(new < 100, "2000 status probes left {new} new resident actors");
    n.stop().await;
}
on_both_backends!(status_probes_start_no_actors);

/// A guest's status still shows what its checks counted once its actor
/// has passivated (the view is read from the store).
async fn status_reads_a_passivated_guest(backend: Backend) {
    let Some((_db, n)) = node_with(backend, |_| {}).await else {
        return;
    };
    let fp = [("x-tollgate-fingerprint", "fp-kept")];
    for _ in 0..3 {
        let r = anonymous(&n, reqwest::Method::POST, "/v1/check", &fp, Some(json!({}))).await;
        assert_eq!(r.status, 200, "{}", r.json);
    }
    // Flush and stop every actor, as passivation would.
    n.state.router.local().stop_all();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = anonymous(&n, reqwest::Method::GET, "/v1/status", &fp, None).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.used("fp:fp-kept", "day"), 3);
    assert_eq!(n.entities.resident(), 0);
    n.stop().await;
}
on_both_backends!(status_reads_a_passivated_guest);

/// One client asking about fresh fingerprints is refused once it brings
/// more than its share of new entities into memory in a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_entities_per_ip_are_capped() {
    let Some((_db, n)) = node_with(Backend::Sqlite, |c| c.max_new_entities_per_ip = 2).await else {
        return;
    };
    let mut refused = None;
    for i in 0..60 {
        let fp = format!("fresh-{i}");
        let r = anonymous(
            &n,
            reqwest::Method::GET,
            "/v1/status",
            &[("x-tollgate-fingerprint", &fp)],
            None,
        )
        .await;
        assert!(r.status == 200 || r.status == 429, "{} {}", r.status, r.json);
        if r.status == 429 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("60 fresh fingerprints at 2 a second were never refused");
    assert_eq!(r.json["error"], "rate_limited");
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=2).contains(&retry), "{retry}");
    // A credential is not bounded per IP.
    let r = n.get("/v1/status?ip=192.0.2.1&fingerprint=fresh-x", Some(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.json);
    n.stop().await;
}

/// A flood of new guests named by a service, each taking a hold (which
/// keeps it resident), stops at `--max-entities`: new entities are
/// refused with 503 and Retry-After instead of growing memory.
async fn holds_cannot_push_past_max_entities(backend: Backend) {
    let Some((_db, n)) = node_with(backend, |c| c.max_entities = 200).await else {
        return;
    };
    let mut admitted = 0;
    let mut unavailable = 0;
    for i in 0..300 {
        let ip = format!("192.0.{}.{}", i / 200, i % 200 + 1);
        let r = n
            .check(json!({"guest": {"ip": ip}, "estimate": {"cost_usd": "0.01"}}))
            .await;
        match r.status.as_u16() {
            200 => {
                admitted += 1;
                assert!(r.json["reservation_id"].is_string(), "{}", r.json);
            }
            503 => {
                unavailable += 1;
                assert_eq!(r.header("retry-after"), Some("1"));
            }
            other => panic!("{other}: {}", r.json),
        }
        assert!(n.entities.resident() <= 200, "resident {}", n.entities.resident());
    }
    assert_eq!(admitted, 200, "every place holds a reservation");
    assert_eq!(unavailable, 100);
    n.stop().await;
}
on_both_backends!(holds_cannot_push_past_max_entities);

/// Without holds, a flood of new guests is still never more than the
/// cap resident, and the sweeper keeps making room.
async fn a_guest_flood_stays_under_max_entities(backend: Backend) {
    let Some((_db, n)) = node_with(backend, |c| {
        c.max_entities = 200;
        c.idle_timeout_s = 1;
    })
    .await
    else {
        return;
    };
    let mut admitted = 0;
    for i in 0..800 {
        let ip = format!("198.18.{}.{}", i / 250, i % 250 + 1);
        let r = n
            .check(json!({"guest": {"ip": ip, "fingerprint": format!("flood-{i}")}}))
            .await;
        assert!(r.status == 200 || r.status == 503, "{} {}", r.status, r.json);
        if r.status == 200 {
            admitted += 1;
        }
        assert!(n.entities.resident() <= 200, "resident {}", n.entities.resident());
    }
    assert!(admitted >= 100, "only {admitted} of 800 admitted");
    n.stop().await;
}
on_both_backends!(a_guest_flood_stays_under_max_entities);

// --- estimates ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_may_not_reserve() {
    let Some((_db, n)) = node_with(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let r = n
        .post("/v1/check", None, json!({"estimate": {"cost_usd": "0.01"}}))
        .await;
    assert_eq!(r.status, 403, "{}", r.json);
    assert!(
        r.json["message"].as_str().unwrap_or("").starts_with("estimate"),
        "{}",
        r.json
    );
    // Nothing was counted.
    let r = n.get("/v1/status", None).await;
    assert_eq!(r.used("ip:127.0.0.1", "day"), 0);
    n.stop().await;
}

async fn a_zero_estimate_is_no_estimate(backend: Backend) {
    let Some((_db, n)) = node_with(backend, |_| {}).await else {
        return;
    };
    // An exhausted budget refuses a zero estimate as it refuses none.
    let r = n.put("/v1/users/z0/budget", json!({"monthly_budget_usd": "0"})).await;
    assert_eq!(r.status, 200, "{}", r.json);
    for body in [
        json!({"user_id": "z0"}),
        json!({"user_id": "z0", "estimate": {"cost_usd": "0"}}),
    ] {
        let r = n.check(body).await;
        assert_eq!(r.status, 429, "{}", r.json);
        assert_eq!(r.json["reason"], "budget_exceeded");
        assert!(r.json.get("reservation_id").is_none(), "{}", r.json);
    }
    // Where the budget allows, a zero estimate takes no hold and gets no
    // reservation id.
    let r = n.put("/v1/users/z1/budget", json!({"monthly_budget_usd": "1"})).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let r = n.check(json!({"user_id": "z1", "estimate": {"cost_usd": "0"}})).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(r.json.get("reservation_id").is_none(), "{}", r.json);
    assert_eq!(r.budget("user:z1")["held_usd"], "0");
    n.stop().await;
}
on_both_backends!(a_zero_estimate_is_no_estimate);
