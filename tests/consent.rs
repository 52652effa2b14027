//! Membership by consent, end to end on SQLite and Postgres: the org
//! hijack of issue 8 fails at every step, and nothing an organisation did
//! to a user outlives the membership.

mod common;

use common::{ADMIN, Backend, Reply, TestDb, TestNode, user_token};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::str::FromStr;
use tollgate::limits::calendar::now_ms;
use tollgate::store::AcceptOutcome;

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap_or_else(|| panic!("not a decimal string: {v}"))).expect("decimal")
}

async fn node(backend: Backend) -> Option<(TestDb, TestNode)> {
    let db = TestDb::new(backend).await?;
    let node = TestNode::start_with_jwt(&db).await;
    Some((db, node))
}

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

async fn invite(n: &TestNode, org: &str, by: &str, user: &str) -> String {
    let r = n
        .post(&format!("/v1/orgs/{org}/members/{user}"), Some(by), json!({}))
        .await;
    assert_eq!(r.status, 202, "an org admin only invites: {}", r.json);
    assert!(r.json["expires_at"].is_string(), "{}", r.json);
    r.json["invitation_id"].as_str().expect("invitation_id").to_string()
}

async fn accept(n: &TestNode, invitation: &str, token: &str) -> Reply {
    n.post(&format!("/v1/invitations/{invitation}/accept"), Some(token), json!({}))
        .await
}

/// A check with an estimate, by the service credential.
async fn check(n: &TestNode, user: &str) -> Reply {
    n.check(json!({"user_id": user, "estimate": {"cost_usd": "0.01"}}))
        .await
}

fn members(r: &Reply) -> Vec<String> {
    r.json["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["user_id"].as_str().expect("user_id").to_string())
        .collect()
}

/// The victim's own state as the service sees it: tier, own budget, spend.
async fn own_state(n: &TestNode, user: &str) -> (Value, Decimal, Decimal) {
    let r = n.user_status(user).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let entity = format!("user:{user}");
    let budget = r.budget(&entity);
    assert!(
        r.json["limits"]
            .as_array()
            .expect("limits")
            .iter()
            .all(|l| l["entity"] == entity),
        "only the user's own entity applies: {}",
        r.json
    );
    (
        r.json["tier"].clone(),
        dec(&budget["limit_usd"]),
        dec(&budget["spent_usd"]),
    )
}

async fn org_hijack_fails_at_every_step(backend: Backend) {
    let Some((_db, n)) = node(backend).await else { return };
    let (attacker, victim) = (user_token("attacker"), user_token("victim"));
    // The victim's own plan: pro, $5 a month, $0.25 spent.
    assert_eq!(n.put("/v1/users/victim", json!({"tier": "pro"})).await.status, 200);
    let r = n
        .put("/v1/users/victim/budget", json!({"monthly_budget_usd": "5"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let r = n
        .usage(
            json!({"event_id": uuid::Uuid::new_v4(), "user_id": "victim", "model": "m",
            "input_tokens": 1, "output_tokens": 1, "cost_usd": "0.25"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let before = own_state(&n, "victim").await;
    assert_eq!(
        before,
        (json!("pro"), Decimal::from(5), Decimal::from_str("0.25").expect("dec"))
    );

    // 1. The attacker's org "adds" the victim: only an invitation.
    let org = create_org(&n, "attacker").await;
    let invitation = invite(&n, &org, &attacker, "victim").await;
    let r = n.get(&format!("/v1/orgs/{org}"), Some(&attacker)).await;
    assert_eq!(members(&r), vec!["attacker"], "an invitee is not a member: {}", r.json);
    let r = check(&n, "victim").await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        r.json["tier"], "pro",
        "the victim is still on their own tier: {}",
        r.json
    );
    assert_eq!(own_state(&n, "victim").await.1, before.1);

    // 2. Nothing of the org applies before acceptance.
    let r = n
        .call(
            "PUT",
            "/v1/users/victim/budget",
            Some(&attacker),
            Some(json!({"monthly_budget_usd": "0"})),
        )
        .await;
    assert_eq!(r.status, 404, "no budget power over a non-member: {}", r.json);
    for body in [
        json!({"name": "x", "scopes": ["check"], "org_id": org, "user_id": "victim"}),
        json!({"name": "x", "scopes": ["check"], "user_id": "victim"}),
    ] {
        let r = n.post("/v1/api-keys", Some(&attacker), body).await;
        assert_eq!(r.status, 404, "no key acting as a non-member: {}", r.json);
    }

    // 3. Only the victim, as themselves, can accept; everyone else gets
    //    the answer an unknown invitation gets.
    let unknown = accept(&n, "inv_00000000000000000000000000000000", &victim).await;
    assert_eq!(unknown.status, 404);
    for token in [attacker.as_str(), ADMIN] {
        let r = accept(&n, &invitation, token).await;
        assert_eq!(
            (r.status, &r.json),
            (unknown.status, &unknown.json),
            "only the invitee accepts"
        );
    }
    let r = n
        .post(&format!("/v1/invitations/{invitation}/accept"), None, json!({}))
        .await;
    assert_eq!(r.status, 401, "{}", r.json);
    let r = n.get("/v1/invitations", Some(&victim)).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["items"][0]["id"], invitation.as_str(), "{}", r.json);
    assert_eq!(r.json["items"][0]["org_id"], org.as_str(), "{}", r.json);
    let r = accept(&n, &invitation, &victim).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["role"], "member");
    // Used: a second accept is like an unknown one.
    let r = accept(&n, &invitation, &victim).await;
    assert_eq!((r.status, &r.json), (unknown.status, &unknown.json));

    // 4. As a member, the org may cap the victim and bind keys to them.
    let r = n
        .call(
            "PUT",
            "/v1/users/victim/budget",
            Some(&attacker),
            Some(json!({"monthly_budget_usd": "0"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let r = check(&n, "victim").await;
    assert_eq!(r.status, 429, "the member cap applies while a member: {}", r.json);
    assert_eq!(r.json["reason"], "budget_exceeded");
    let mut bound = Vec::new();
    for name in ["bound-1", "bound-2"] {
        let r = n
            .post(
                "/v1/api-keys",
                Some(&attacker),
                json!({"name": name, "scopes": ["check"], "org_id": org, "user_id": "victim"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.json);
        bound.push((
            r.json["id"].as_str().expect("id").to_string(),
            r.json["secret"].as_str().expect("s").to_string(),
        ));
    }
    for (_, secret) in &bound {
        let r = n.post("/v1/check", Some(secret), json!({})).await;
        assert_ne!(r.status, 401, "the bound key works while a member: {}", r.json);
    }

    // 5. The victim sees every key acting as them, and may revoke one.
    let r = n.get("/v1/api-keys", Some(&victim)).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let listed: Vec<&str> = r.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|k| k["id"].as_str())
        .collect();
    for (id, _) in &bound {
        assert!(listed.contains(&id.as_str()), "{id} not listed: {}", r.json);
    }
    assert!(
        r.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|k| k.get("secret").is_none())
    );
    assert!(r.json["next_cursor"].is_null());
    let r = n.delete(&format!("/v1/api-keys/{}", bound[0].0), Some(&victim)).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let r = n.post("/v1/check", Some(&bound[0].1), json!({})).await;
    assert_eq!(r.status, 401, "revoked by the user: {}", r.json);
    // But the user cannot rotate (and so obtain) the org's key.
    let r = n
        .post(&format!("/v1/api-keys/{}/rotate", bound[1].0), Some(&victim), json!({}))
        .await;
    assert_eq!(r.status, 404, "{}", r.json);

    // 6. The victim leaves: the org's key stops at once, the cap is gone,
    //    their own tier, budget and spend are exactly as before.
    let r = n.delete(&format!("/v1/orgs/{org}/members/victim"), Some(&victim)).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let r = n.post("/v1/check", Some(&bound[1].1), json!({})).await;
    assert_eq!(r.status, 401, "an org-bound key dies with the membership: {}", r.json);
    let r = check(&n, "victim").await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["tier"], "pro", "{}", r.json);
    let hold = r.json["reservation_id"].as_str().expect("rsv").to_string();
    assert_eq!(
        n.delete(&format!("/v1/reservations/{hold}"), Some(ADMIN)).await.status,
        200
    );
    assert_eq!(own_state(&n, "victim").await, before);
    let store = &n.state.store;
    let (own, cap) = store.user_budgets("victim").await.expect("budgets");
    assert_eq!((own.map(|u| u.value()), cap), (Some(Decimal::from(5)), None));
    // And the org has no hold on them any more.
    let r = n
        .call(
            "PUT",
            "/v1/users/victim/budget",
            Some(&attacker),
            Some(json!({"monthly_budget_usd": "0"})),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.json);
    let r = n.get("/v1/api-keys", Some(&attacker)).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(
        r.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|k| k["user_id"] != "victim"),
        "revoked keys are not listed: {}",
        r.json
    );
    // A restarted node (keys and memberships read from the store) agrees.
    let keys = store.load_api_keys(now_ms()).await.expect("keys");
    assert!(keys.iter().all(|(k, _)| k.user_id.as_deref() != Some("victim")));
    n.stop().await;
}
on_both_backends!(org_hijack_fails_at_every_step);

async fn invitations_answer_alike_and_expire(backend: Backend) {
    let Some((_db, n)) = node(backend).await else { return };
    let org = create_org(&n, "inviter").await;
    let inviter = user_token("inviter");
    // A user who owns another organisation is invited like anyone else
    // (no oracle), and learns on accepting that they must leave first.
    let elsewhere = create_org(&n, "busy").await;
    let r_busy = n
        .post(&format!("/v1/orgs/{org}/members/busy"), Some(&inviter), json!({}))
        .await;
    let r_free = n
        .post(&format!("/v1/orgs/{org}/members/free"), Some(&inviter), json!({}))
        .await;
    assert_eq!((r_busy.status, r_free.status), (r_free.status, r_free.status));
    assert_eq!(r_busy.status, 202, "{}", r_busy.json);
    let shape = |r: &Reply| r.json.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(shape(&r_busy), shape(&r_free));
    let busy_inv = r_busy.json["invitation_id"].as_str().expect("id").to_string();
    let r = accept(&n, &busy_inv, &user_token("busy")).await;
    assert_eq!(r.status, 409, "{}", r.json);
    assert_eq!(r.json["error"], "in_another_org");
    assert!(
        r.json["message"].as_str().is_some_and(|m| m.contains("leave")),
        "{}",
        r.json
    );
    let r = n.get(&format!("/v1/orgs/{elsewhere}"), Some(&user_token("busy"))).await;
    assert_eq!(members(&r), vec!["busy"], "nothing changed: {}", r.json);

    // Declining closes it: accepting afterwards is like an unknown id.
    let free_inv = r_free.json["invitation_id"].as_str().expect("id").to_string();
    let r = n
        .delete(&format!("/v1/invitations/{free_inv}/accept"), Some(&inviter))
        .await;
    assert_eq!(r.status, 404, "only the invitee declines: {}", r.json);
    let r = n
        .delete(&format!("/v1/invitations/{free_inv}/accept"), Some(&user_token("free")))
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let r = accept(&n, &free_inv, &user_token("free")).await;
    assert_eq!(r.status, 404, "{}", r.json);
    let r = n.get("/v1/invitations", Some(&user_token("free"))).await;
    assert_eq!(r.json["items"], json!([]), "{}", r.json);

    // An invitation lapses after its time (asked of the store directly,
    // eight days on, rather than waiting).
    let inv = invite(&n, &org, &inviter, "late").await;
    let later = now_ms() + 8 * 24 * 3600 * 1000;
    let outcome = n
        .state
        .store
        .accept_invitation(&inv, "late", later)
        .await
        .expect("accept");
    assert_eq!(outcome, AcceptOutcome::NotFound);
    assert!(
        n.state
            .store
            .pending_invitations("late", later)
            .await
            .expect("pending")
            .is_empty()
    );
    // A personal key acting as the user may accept; the invitation is
    // still open now.
    let r = n
        .post(
            "/v1/api-keys",
            Some(&user_token("late")),
            json!({"name": "mine", "scopes": ["check"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let personal = r.json["secret"].as_str().expect("secret").to_string();
    let r = accept(&n, &inv, &personal).await;
    assert_eq!(r.status, 200, "{}", r.json);

    // A platform admin adds directly; a role change stays direct.
    let r = n
        .post(&format!("/v1/orgs/{org}/members/direct"), Some(ADMIN), json!({}))
        .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let r = n
        .post(
            &format!("/v1/orgs/{org}/members/direct"),
            Some(&inviter),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["role"], "admin");
    n.stop().await;
}
on_both_backends!(invitations_answer_alike_and_expire);
