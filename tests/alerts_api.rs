//! Alerts through the API of a real node: channels (who may manage them,
//! which targets are refused), alerts read back with their deliveries,
//! organisation isolation, and the end-to-end path — usage acknowledged →
//! alert and deliveries committed with it → signed webhook and email at
//! receivers on loopback started by the test.

mod common;
mod receivers;

use common::{ADMIN, Backend, TestDb, TestNode, user_token};
use receivers::{Receiver, SmtpSink, until};
use serde_json::{Value, json};
use tollgate::alerts::signature;

on_both_backends!(channels_are_managed_per_tenant_and_targets_checked);
on_both_backends!(alerts_reach_every_channel_once_per_threshold);
on_both_backends!(org_channels_hear_only_their_own_org);
on_both_backends!(bad_alert_input_gets_a_named_4xx_and_changes_nothing);
on_both_backends!(names_that_resolve_inside_are_refused_and_never_called);

async fn create_org(n: &TestNode, owner: &str) -> String {
    let r = n
        .post(
            "/v1/orgs",
            Some(&user_token(owner)),
            json!({"name": format!("{owner}'s org")}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    r.json["id"].as_str().expect("org id").to_string()
}

/// Makes `user` a member of `org` directly (a platform admin does not
/// need the member's consent).
async fn add_member(n: &TestNode, org: &str, user: &str) {
    let r = n
        .post(
            &format!("/v1/orgs/{org}/members/{user}"),
            Some(ADMIN),
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
}

fn ids(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect();
    out.sort();
    out
}

async fn channels_are_managed_per_tenant_and_targets_checked(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let n = TestNode::start_with_jwt(&db).await;
    let org_a = create_org(&n, "alice").await;
    let org_b = create_org(&n, "bob").await;
    add_member(&n, &org_a, "amy").await;
    let alice = user_token("alice");
    let amy = user_token("amy");

    // Refused at creation, with a 400 naming the target: plain http, a
    // loopback literal, the metadata address (also v4-mapped v6), a name
    // resolving to loopback, a non-address email.
    for (kind, target) in [
        ("webhook", "http://127.0.0.1/hook"),
        ("webhook", "https://127.0.0.1/hook"),
        ("webhook", "https://169.254.169.254/latest/meta-data"),
        ("slack", "https://[::ffff:169.254.169.254]/x"),
        ("webhook", "https://[fd00:ec2::254]/x"),
        ("webhook", "https://localhost/hook"),
        ("webhook", "not a url"),
        ("email", "not-an-address"),
    ] {
        let r = n
            .post(
                "/v1/alert-channels",
                Some(ADMIN),
                json!({"kind": kind, "target": target}),
            )
            .await;
        assert_eq!(r.status, 400, "{kind} {target}: {}", r.json);
        assert!(r.json["message"].as_str().unwrap().contains("target"), "{}", r.json);
    }
    let r = n
        .post(
            "/v1/alert-channels",
            Some(ADMIN),
            json!({"kind": "pager", "target": "x"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.json);

    // A platform webhook (by IP literal: no DNS in tests): secret once.
    let r = n
        .post(
            "/v1/alert-channels",
            Some(ADMIN),
            json!({"kind": "webhook", "target": "https://93.184.215.14/hook"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let platform = r.json["id"].as_str().unwrap().to_string();
    assert!(r.json["secret"].as_str().unwrap().starts_with("whsec_"), "{}", r.json);
    assert_eq!(r.json["org_id"], Value::Null);

    // Org A's admin: its own org only.
    let r = n
        .post(
            "/v1/alert-channels",
            Some(&alice),
            json!({"kind": "email", "target": "ops@a.example", "org_id": org_a}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    assert!(
        r.json.get("secret").is_none(),
        "email channels have no secret: {}",
        r.json
    );
    let a_mail = r.json["id"].as_str().unwrap().to_string();
    let r = n
        .post(
            "/v1/alert-channels",
            Some(&alice),
            json!({"kind": "email", "target": "x@b.example", "org_id": org_b}),
        )
        .await;
    assert_eq!(
        r.status, 404,
        "another org's channels do not exist for alice: {}",
        r.json
    );
    let r = n
        .post(
            "/v1/alert-channels",
            Some(&alice),
            json!({"kind": "email", "target": "x@a.example"}),
        )
        .await;
    assert_eq!(r.status, 403, "platform channels are for platform admins: {}", r.json);
    // A plain member may not; a guest must sign in.
    let r = n
        .post(
            "/v1/alert-channels",
            Some(&amy),
            json!({"kind": "email", "target": "x@a.example", "org_id": org_a}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.json);
    let r = n
        .post(
            "/v1/alert-channels",
            None,
            json!({"kind": "email", "target": "x@a.example", "org_id": org_a}),
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.json);
    let r = n
        .post(
            "/v1/alert-channels",
            Some(ADMIN),
            json!({"kind": "webhook", "target": "https://93.184.215.14/b", "org_id": org_b}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let b_hook = r.json["id"].as_str().unwrap().to_string();

    // Listings: never a secret; each sees its own.
    let all = n.get("/v1/alert-channels", Some(ADMIN)).await;
    assert_eq!(all.status, 200, "{}", all.json);
    let mut expect = vec![platform.clone(), a_mail.clone(), b_hook.clone()];
    expect.sort();
    assert_eq!(ids(&all.json), expect);
    assert_eq!(all.json["next_cursor"], Value::Null);
    assert!(!all.json.to_string().contains("whsec_"), "{}", all.json);
    // A URL may itself be the credential (Slack): listings show scheme and host only.
    assert!(!all.json.to_string().contains("93.184.215.14/b"), "{}", all.json);
    assert!(all.json.to_string().contains("https://93.184.215.14/…"), "{}", all.json);
    let page = n.get("/v1/alert-channels?limit=2", Some(ADMIN)).await;
    assert_eq!(ids(&page.json).len(), 2);
    let cursor = page.json["next_cursor"].as_str().expect("a next page").to_string();
    let rest = n
        .get(&format!("/v1/alert-channels?limit=2&cursor={cursor}"), Some(ADMIN))
        .await;
    assert_eq!(ids(&rest.json).len(), 1);
    let mine = n.get("/v1/alert-channels", Some(&alice)).await;
    assert_eq!(ids(&mine.json), vec![a_mail.clone()]);
    let r = n.get(&format!("/v1/alert-channels?org_id={org_b}"), Some(&alice)).await;
    assert_eq!(r.status, 404, "{}", r.json);
    assert_eq!(n.get("/v1/alert-channels", Some(&amy)).await.status, 403);
    assert_eq!(n.get("/v1/alert-channels", None).await.status, 401);

    // Deleting: another org's or a platform channel is a 404 for alice.
    for id in [&b_hook, &platform] {
        let r = n.delete(&format!("/v1/alert-channels/{id}"), Some(&alice)).await;
        assert_eq!(r.status, 404, "{id}: {}", r.json);
    }
    assert_eq!(
        n.delete(&format!("/v1/alert-channels/{a_mail}"), Some(&amy))
            .await
            .status,
        403
    );
    let gone = n.delete(&format!("/v1/alert-channels/{a_mail}"), Some(&alice)).await;
    assert_eq!(gone.status, 200, "{}", gone.json);
    assert_eq!(gone.json["id"], json!(a_mail));
    assert_eq!(
        n.delete(&format!("/v1/alert-channels/{a_mail}"), Some(&alice))
            .await
            .status,
        404
    );
    assert_eq!(
        n.delete(&format!("/v1/alert-channels/{b_hook}"), Some(ADMIN))
            .await
            .status,
        200
    );
    assert_eq!(n.delete("/v1/alert-channels/ach_nope", Some(ADMIN)).await.status, 404);
    n.stop().await;
}

/// A node whose alerts may go to loopback, with an SMTP sink.
async fn alerting_node(db: &TestDb, smtp: &SmtpSink) -> TestNode {
    let smtp_url = smtp.url();
    TestNode::start_with(db, move |c| {
        c.alerts.alerts_allow_private = true;
        c.alerts.alert_retry_base_ms = 200;
        c.alerts.smtp_url = Some(smtp_url);
        c.jwt.jwt_issuer = Some(common::JWT_ISSUER.to_string());
        c.jwt.jwt_audience = Some(common::JWT_AUDIENCE.to_string());
        c.jwt.jwt_hs256_secret = Some(common::JWT_SECRET.to_string());
    })
    .await
}

async fn spend(n: &TestNode, user: &str, cost: &str) {
    let r = n
        .usage(json!({
            "event_id": uuid::Uuid::new_v4(), "user_id": user, "model": "m1",
            "input_tokens": 1, "output_tokens": 1, "cost_usd": cost,
        }))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
}

async fn alerts_reach_every_channel_once_per_threshold(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let receiver = Receiver::start(vec![]).await;
    let smtp = SmtpSink::start().await;
    let n = alerting_node(&db, &smtp).await;

    let r = n
        .post(
            "/v1/alert-channels",
            Some(ADMIN),
            json!({"kind": "webhook", "target": receiver.url("/hook")}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let secret = r.json["secret"].as_str().unwrap().to_string();
    let r = n
        .post(
            "/v1/alert-channels",
            Some(ADMIN),
            json!({"kind": "email", "target": "ops@example.com"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let r = n
        .put("/v1/users/alice/budget", json!({"monthly_budget_usd": "10"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["alert_thresholds"], json!([50, 75, 90, 100]));

    // $10 budget; spend crosses 50, 75, 90 and reaches 100 %.
    for cost in ["4", "1.5", "2", "1.5", "0.5", "0.5"] {
        spend(&n, "alice", cost).await;
    }
    until(20, "4 webhooks and 4 emails", || {
        receiver.received().len() >= 4 && smtp.mails().len() >= 4
    })
    .await;

    // Spending on past the limit raises the overage alert, once; the
    // thresholds never fire again this month.
    for cost in ["1", "2", "3"] {
        spend(&n, "alice", cost).await;
    }
    until(20, "the overage webhook and email", || {
        receiver.received().len() >= 5 && smtp.mails().len() >= 5
    })
    .await;
    let alice = user_token("alice");
    until(20, "every delivery recorded as delivered", || {
        let n = &n;
        let alice = alice.clone();
        futures::executor::block_on(async move {
            let r = n.get("/v1/alerts", Some(&alice)).await;
            r.json["alerts"].as_array().is_some_and(|a| {
                a.len() == 5
                    && a.iter().all(|x| {
                        x["deliveries"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .all(|d| d["status"] == "delivered")
                    })
            })
        })
    })
    .await;
    n.stop().await;

    let got = receiver.received();
    let mut kinds: Vec<(String, u64)> = Vec::new();
    for r in &got {
        assert!(
            signature::verify(
                &secret,
                r.header("webhook-id"),
                r.header("webhook-timestamp"),
                &r.body,
                r.header("webhook-signature")
            ),
            "a valid signature on {:?}",
            r.headers
        );
        let body = r.json();
        assert_eq!(body["entity"], "user:alice");
        assert_eq!(body["limit_usd"], "10");
        kinds.push((
            body["type"].as_str().unwrap().to_string(),
            body["threshold_pct"].as_u64().unwrap(),
        ));
    }
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            ("budget.overage".to_string(), 100),
            ("budget.threshold".to_string(), 50),
            ("budget.threshold".to_string(), 75),
            ("budget.threshold".to_string(), 90),
            ("budget.threshold".to_string(), 100),
        ],
        "each threshold once, and one overage"
    );
    assert_eq!(smtp.mails().len(), 5, "one email per alert");
}

async fn org_channels_hear_only_their_own_org(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let hook_a = Receiver::start(vec![]).await;
    let hook_b = Receiver::start(vec![]).await;
    let smtp = SmtpSink::start().await;
    let n = alerting_node(&db, &smtp).await;
    let org_a = create_org(&n, "alice").await;
    let org_b = create_org(&n, "bob").await;
    add_member(&n, &org_a, "amy").await;
    add_member(&n, &org_b, "ben").await;
    let alice = user_token("alice");
    let bob = user_token("bob");

    let mut channel_of = std::collections::HashMap::new();
    for (org, token, hook) in [(&org_a, &alice, &hook_a), (&org_b, &bob, &hook_b)] {
        let r = n
            .post(
                "/v1/alert-channels",
                Some(token),
                json!({"kind": "webhook", "target": hook.url("/"), "org_id": org}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json);
        channel_of.insert(org.clone(), r.json["id"].as_str().unwrap().to_string());
    }
    for user in ["amy", "ben"] {
        let r = n
            .put(&format!("/v1/users/{user}/budget"), json!({"monthly_budget_usd": "1"}))
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
    }
    let r = n
        .call(
            "PUT",
            &format!("/v1/orgs/{org_b}/budget"),
            Some(&bob),
            Some(json!({"monthly_budget_usd": "50", "alert_thresholds": [1]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["alert_thresholds"], json!([1]));
    let r = n
        .call(
            "PUT",
            &format!("/v1/orgs/{org_b}/budget"),
            Some(&bob),
            Some(json!({"monthly_budget_usd": "100", "alert_thresholds": [0, 50]})),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.json);
    assert!(
        r.json["message"].as_str().unwrap().contains("alert_thresholds"),
        "{}",
        r.json
    );

    spend(&n, "amy", "0.6").await; // amy: 50 %
    spend(&n, "ben", "0.8").await; // ben: 50 and 75 %, org B ($50): 1 %
    until(20, "org A's one alert and org B's three", || {
        !hook_a.received().is_empty() && hook_b.received().len() >= 3
    })
    .await;

    // Org A's receiver heard only amy; org B's only ben and org B.
    let entities = |hook: &Receiver| -> Vec<String> {
        let mut v: Vec<String> = hook
            .received()
            .iter()
            .map(|r| format!("{} {}", r.json()["entity"].as_str().unwrap(), r.json()["threshold_pct"]))
            .collect();
        v.sort();
        v
    };
    assert_eq!(entities(&hook_a), vec!["user:amy 50".to_string()]);
    assert_eq!(
        entities(&hook_b),
        vec![
            format!("org:{org_b} 1"),
            "user:ben 50".to_string(),
            "user:ben 75".to_string()
        ]
    );

    // Reading alerts: each org admin sees their org's and members' only.
    let read = |token: String, query: String| {
        let n = &n;
        async move { n.get(&format!("/v1/alerts{query}"), Some(&token)).await }
    };
    let a = read(alice.clone(), String::new()).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let a_alerts = a.json["alerts"].as_array().unwrap();
    assert_eq!(a_alerts.len(), 1, "{}", a.json);
    assert_eq!(a_alerts[0]["entity"], "user:amy");
    assert_eq!(a_alerts[0]["kind"], "threshold");
    assert_eq!(a_alerts[0]["spent_usd"], "0.6");
    assert_eq!(a_alerts[0]["deliveries"][0]["channel_id"], json!(channel_of[&org_a]));
    let b = read(bob.clone(), String::new()).await;
    assert_eq!(b.json["alerts"].as_array().unwrap().len(), 3, "{}", b.json);
    for d in b.json["alerts"].as_array().unwrap() {
        for delivery in d["deliveries"].as_array().unwrap() {
            assert_eq!(delivery["channel_id"], json!(channel_of[&org_b]), "{}", b.json);
        }
    }
    // Another org's entity is a 404; a member reads only their own.
    assert_eq!(read(alice.clone(), "?entity=user:ben".into()).await.status, 404);
    assert_eq!(read(alice.clone(), format!("?entity=org:{org_b}")).await.status, 404);
    let amy = read(user_token("amy"), String::new()).await;
    assert_eq!(amy.json["alerts"].as_array().unwrap().len(), 1, "{}", amy.json);
    assert_eq!(read(user_token("amy"), "?entity=user:ben".into()).await.status, 404);
    assert_eq!(
        read(user_token("amy"), format!("?entity=org:{org_a}")).await.status,
        403
    );
    let admin = read(ADMIN.to_string(), "?entity=user:ben&since=2000-01-01T00:00:00Z".into()).await;
    assert_eq!(admin.json["alerts"].as_array().unwrap().len(), 2, "{}", admin.json);
    let future = read(ADMIN.to_string(), "?since=2999-01-01T00:00:00Z".into()).await;
    assert_eq!(future.json["alerts"], json!([]));
    assert_eq!(read(ADMIN.to_string(), "?since=yesterday".into()).await.status, 400);
    assert_eq!(read(ADMIN.to_string(), "?entity=nobody".into()).await.status, 400);
    assert_eq!(n.get("/v1/alerts", None).await.status, 401);

    // Org A's admin cannot delete org B's channel.
    let r = n
        .delete(&format!("/v1/alert-channels/{}", channel_of[&org_b]), Some(&alice))
        .await;
    assert_eq!(r.status, 404, "{}", r.json);
    n.stop().await;
}

async fn bad_alert_input_gets_a_named_4xx_and_changes_nothing(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let n = TestNode::start(&db).await;
    let long = format!("https://93.184.215.14/{}", "a".repeat(3000));
    for (body, field) in [
        (
            json!({"kind": "webhook", "target": "https://93.184.215.14/", "extra": 1}),
            "extra",
        ),
        (json!({"kind": 7, "target": "https://93.184.215.14/"}), "kind"),
        (json!({"kind": "webhook"}), "target"),
        (json!({"kind": "webhook", "target": long}), "target"),
        (
            json!({"kind": "webhook", "target": "https://93.184.215.14/", "org_id": 5}),
            "org_id",
        ),
    ] {
        let r = n.post("/v1/alert-channels", Some(ADMIN), body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.json);
        assert!(
            r.json["message"].as_str().unwrap().contains(field),
            "{body}: {}",
            r.json
        );
    }
    let huge = json!({"kind": "webhook", "target": "x".repeat(70_000)});
    assert_eq!(n.post("/v1/alert-channels", Some(ADMIN), huge).await.status, 413);
    let r = n.get("/v1/alert-channels", Some(ADMIN)).await;
    assert_eq!(r.json["items"], json!([]), "nothing was created");

    for (body, field) in [
        (
            json!({"monthly_budget_usd": "10", "alert_thresholds": []}),
            "alert_thresholds",
        ),
        (
            json!({"monthly_budget_usd": "10", "alert_thresholds": [101]}),
            "alert_thresholds",
        ),
        (
            json!({"monthly_budget_usd": "10", "alert_thresholds": (1..=11).collect::<Vec<i32>>()}),
            "alert_thresholds",
        ),
        (
            json!({"monthly_budget_usd": "10", "alert_thresholds": ["50"]}),
            "alert_thresholds",
        ),
    ] {
        let r = n.put("/v1/users/u1/budget", body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.json);
        assert!(
            r.json["message"].as_str().unwrap().contains(field),
            "{body}: {}",
            r.json
        );
    }
    let r = n
        .put(
            "/v1/users/u1/budget",
            json!({"monthly_budget_usd": "10", "alert_thresholds": [90, 10, 90]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["alert_thresholds"], json!([10, 90]), "sorted, duplicates folded");

    for query in ["?limit=0", "?limit=1001", "?since=soon", "?entity=", "?bogus=1"] {
        let r = n.get(&format!("/v1/alerts{query}"), Some(ADMIN)).await;
        assert_eq!(r.status, 400, "{query}: {}", r.json);
    }
    assert_eq!(n.get("/v1/alert-channels?cursor=key_1", Some(ADMIN)).await.status, 400);
    n.stop().await;
}

/// A host *name* that resolves to the metadata address or to loopback is
/// refused at creation like the literal would be, and the service behind
/// it never hears from the node. `--alerts-resolve` pins the names (no DNS
/// server in tests); pinned addresses go through the same policy as
/// looked-up ones.
async fn names_that_resolve_inside_are_refused_and_never_called(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let receiver = Receiver::start(vec![]).await;
    let port = receiver
        .url("/")
        .split(':')
        .nth(2)
        .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok());
    let port = port.expect("receiver port");
    let n = TestNode::start_with(&db, |c| {
        c.alerts.alerts_resolve = ["metadata.evil.test=169.254.169.254", "inside.evil.test=127.0.0.1"]
            .iter()
            .map(|p| p.parse().expect("pin"))
            .collect();
    })
    .await;

    for (target, addr) in [
        (
            "https://metadata.evil.test/latest/meta-data/".to_string(),
            "169.254.169.254",
        ),
        ("https://METADATA.evil.test./x".to_string(), "169.254.169.254"),
        (format!("https://inside.evil.test:{port}/hook"), "127.0.0.1"),
    ] {
        for kind in ["webhook", "slack"] {
            let r = n
                .post(
                    "/v1/alert-channels",
                    Some(ADMIN),
                    json!({"kind": kind, "target": target}),
                )
                .await;
            assert_eq!(r.status, 400, "{kind} {target}: {}", r.json);
            assert_eq!(r.json["error"], "invalid_target", "{}", r.json);
            let message = r.json["message"].as_str().unwrap();
            assert!(message.contains(addr), "the 400 names the address: {message}");
        }
    }
    let r = n.get("/v1/alert-channels", Some(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["items"], json!([]), "nothing was created");

    // A user crossing every threshold: no channel, so nothing is sent.
    let r = n
        .put("/v1/users/mallory/budget", json!({"monthly_budget_usd": "1"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    spend(&n, "mallory", "2").await;
    let r = n.get("/v1/alerts?entity=user:mallory", Some(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let alerts = r.json["alerts"].as_array().expect("alerts");
    assert_eq!(alerts.len(), 5, "4 thresholds and the overage: {}", r.json);
    for alert in alerts {
        assert_eq!(alert["deliveries"], json!([]), "no delivery was made: {alert}");
    }
    assert_eq!(receiver.received().len(), 0, "the service inside was never called");
}
