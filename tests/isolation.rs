//! The isolation matrix: every route × every credential kind × resources
//! of tenant A, of tenant B, and of a tenant that does not exist.
//!
//! Credentials belong to tenant A (an organisation): its `org_admin` key,
//! its `service` key, one of its members by JWT and by `check` key; plus the
//! admin token and a guest. The test asserts that
//! - what the policy allows on A succeeds (2xx);
//! - everything else is refused with 401, 403 or 404 and changes nothing
//!   (the tenant's state is read before and after, as admin);
//! - on B, every non-admin credential gets exactly the answer it gets for a
//!   tenant that does not exist: B's existence does not leak;
//! - routes that name no tenant (lists) never mention B.
//!
//! Covered besides the org routes: invitations (accept and decline by
//! anyone but the invitee, listing), key listing and revocation of a key
//! that acts as the user, and member removal.

mod common;

use common::{ADMIN, Backend, Reply, TestDb, TestNode, user_token};
use serde_json::{Value, json};
use tollgate::entity::EntityKey;
use tollgate::service::reservation::ReservationId;

/// One tenant's resources.
#[derive(Clone)]
struct Tenant {
    org: String,
    owner: String,
    member: String,
    /// A key of the tenant's (for key routes).
    key_id: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cred {
    Admin,
    OrgAdminA,
    ServiceA,
    UserAJwt,
    UserAKey,
    Guest,
}

const CREDS: [Cred; 6] = [
    Cred::Admin,
    Cred::OrgAdminA,
    Cred::ServiceA,
    Cred::UserAJwt,
    Cred::UserAKey,
    Cred::Guest,
];

#[derive(Clone, Copy, Debug)]
enum Op {
    Check,
    Usage,
    Status,
    ReleaseReservation,
    GetOrg,
    RenameOrg,
    SetOrgTier,
    AddMember,
    RemoveMember,
    PutOrgBudget,
    DeleteOrgBudget,
    PutUserBudget,
    DeleteUserBudget,
    SetUserTier,
    CreateKeyInOrg,
    GetKey,
    RotateKey,
    RevokeKey,
    SummaryOrg,
    SummaryUser,
    ListTiers,
    PutTier,
    GetPrice,
    PutPrice,
    FaultInjection,
    AcceptInvitation,
    DeclineInvitation,
    ListInvitations,
    ListKeys,
    RevokeOwnKey,
}

const OPS: [Op; 30] = [
    Op::Check,
    Op::Usage,
    Op::Status,
    Op::ReleaseReservation,
    Op::GetOrg,
    Op::RenameOrg,
    Op::SetOrgTier,
    Op::AddMember,
    Op::RemoveMember,
    Op::PutOrgBudget,
    Op::DeleteOrgBudget,
    Op::PutUserBudget,
    Op::DeleteUserBudget,
    Op::SetUserTier,
    Op::CreateKeyInOrg,
    Op::GetKey,
    Op::RotateKey,
    Op::RevokeKey,
    Op::SummaryOrg,
    Op::SummaryUser,
    Op::ListTiers,
    Op::PutTier,
    Op::GetPrice,
    Op::PutPrice,
    Op::FaultInjection,
    Op::AcceptInvitation,
    Op::DeclineInvitation,
    Op::ListInvitations,
    Op::ListKeys,
    Op::RevokeOwnKey,
];

/// Routes that name no tenant: they answer from the caller's own reach,
/// so instead of comparing B with a missing tenant, the answer must not
/// mention B at all.
fn tenant_free(op: Op) -> bool {
    matches!(op, Op::ListInvitations | Op::ListKeys)
}

/// Who may do `op` on tenant A's resources.
fn allowed_on_a(op: Op, cred: Cred) -> bool {
    use Cred::*;
    match op {
        Op::Check | Op::Status => matches!(cred, Admin | ServiceA | UserAJwt | UserAKey),
        // Money is written by the backend that made the model call only.
        Op::Usage | Op::ReleaseReservation => matches!(cred, Admin | ServiceA),
        Op::GetOrg | Op::SummaryOrg | Op::SummaryUser => {
            matches!(cred, Admin | OrgAdminA | ServiceA | UserAJwt | UserAKey)
        }
        Op::RenameOrg
        | Op::AddMember
        | Op::RemoveMember
        | Op::PutOrgBudget
        | Op::DeleteOrgBudget
        | Op::PutUserBudget
        | Op::DeleteUserBudget
        | Op::CreateKeyInOrg
        | Op::GetKey
        | Op::RotateKey
        | Op::RevokeKey => matches!(cred, Admin | OrgAdminA),
        Op::SetOrgTier | Op::SetUserTier | Op::ListTiers | Op::PutTier | Op::GetPrice | Op::PutPrice => cred == Admin,
        // Only on nodes started with --enable-fault-injection; elsewhere a
        // 404 for everyone, and never a change.
        Op::FaultInjection => false,
        // The invitations are to a fresh user none of these credentials
        // speaks for: nobody else may answer them, admins included.
        Op::AcceptInvitation | Op::DeclineInvitation => false,
        // Only a user, as themselves, has invitations to list.
        Op::ListInvitations => cred == UserAJwt,
        // Admins, the org's managers, and the user a key acts as (under
        // their own credential, not the org's key for them).
        Op::ListKeys | Op::RevokeOwnKey => matches!(cred, Admin | OrgAdminA | UserAJwt),
    }
}

struct World {
    n: TestNode,
    a: Tenant,
    b: Tenant,
    ghost: Tenant,
    tokens: Vec<(Cred, Option<String>)>,
    counter: std::sync::atomic::AtomicU64,
}

impl World {
    fn token(&self, cred: Cred) -> Option<&str> {
        self.tokens
            .iter()
            .find(|(c, _)| *c == cred)
            .and_then(|(_, t)| t.as_deref())
    }

    fn fresh(&self, prefix: &str) -> String {
        let i = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}-{i}")
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let r = self.n.call(method, path, Some(ADMIN), body).await;
        assert!(r.status.is_success(), "setup {method} {path}: {} {}", r.status, r.json);
        r
    }

    /// A fresh key of `t` (the ghost tenant gets a made-up id).
    async fn fresh_key(&self, t: &Tenant, is_ghost: bool) -> String {
        if is_ghost {
            return format!("key_{}", self.fresh("ghost"));
        }
        let r = self
            .admin(
                "POST",
                "/v1/api-keys",
                Some(json!({"name": "spare", "scopes": ["service"], "org_id": t.org})),
            )
            .await;
        r.json["id"].as_str().expect("id").to_string()
    }

    /// Prepares what `op` needs on `t` and returns the request to send.
    async fn request(&self, op: Op, t: &Tenant, is_ghost: bool) -> (String, String, Option<Value>) {
        let org = &t.org;
        let member = &t.member;
        let post = |p: String, b: Value| ("POST".to_string(), p, Some(b));
        let put = |p: String, b: Value| ("PUT".to_string(), p, Some(b));
        let get = |p: String| ("GET".to_string(), p, None);
        let delete = |p: String| ("DELETE".to_string(), p, None);
        match op {
            Op::Check => post("/v1/check".into(), json!({"user_id": member})),
            Op::Usage => post(
                "/v1/usage".into(),
                json!({"event_id": uuid::Uuid::new_v4(), "user_id": member, "model": "m",
                    "input_tokens": 1, "output_tokens": 1, "cost_usd": "0.001"}),
            ),
            Op::Status => get(format!("/v1/status?user_id={member}")),
            Op::ReleaseReservation => {
                let rsv = if is_ghost {
                    let keys = vec![EntityKey::user(member).expect("key"), EntityKey::org(org).expect("key")];
                    ReservationId::new(keys).to_string()
                } else {
                    let r = self
                        .admin(
                            "POST",
                            "/v1/check",
                            Some(json!({"user_id": member, "estimate": {"cost_usd": "0.01"}})),
                        )
                        .await;
                    r.json["reservation_id"].as_str().expect("rsv").to_string()
                };
                delete(format!("/v1/reservations/{rsv}"))
            }
            Op::GetOrg => get(format!("/v1/orgs/{org}")),
            Op::RenameOrg => put(format!("/v1/orgs/{org}"), json!({"name": self.fresh("renamed")})),
            Op::SetOrgTier => put(format!("/v1/orgs/{org}"), json!({"subscription_tier": "enterprise"})),
            Op::AddMember => post(format!("/v1/orgs/{org}/members/{}", self.fresh("new")), json!({})),
            Op::RemoveMember => {
                let user = self.fresh("leaver");
                if !is_ghost {
                    self.admin("POST", &format!("/v1/orgs/{org}/members/{user}"), Some(json!({})))
                        .await;
                }
                delete(format!("/v1/orgs/{org}/members/{user}"))
            }
            Op::PutOrgBudget => put(format!("/v1/orgs/{org}/budget"), json!({"monthly_budget_usd": "100"})),
            Op::DeleteOrgBudget => delete(format!("/v1/orgs/{org}/budget")),
            Op::PutUserBudget => put(
                format!("/v1/users/{member}/budget"),
                json!({"monthly_budget_usd": "50"}),
            ),
            Op::DeleteUserBudget => delete(format!("/v1/users/{member}/budget")),
            Op::SetUserTier => put(format!("/v1/users/{member}"), json!({"tier": "enterprise"})),
            Op::CreateKeyInOrg => post(
                "/v1/api-keys".into(),
                json!({"name": "new", "scopes": ["service"], "org_id": org}),
            ),
            Op::GetKey => get(format!("/v1/api-keys/{}", t.key_id)),
            Op::RotateKey => {
                let id = self.fresh_key(t, is_ghost).await;
                post(format!("/v1/api-keys/{id}/rotate"), json!({"grace_period_s": 0}))
            }
            Op::RevokeKey => {
                let id = self.fresh_key(t, is_ghost).await;
                delete(format!("/v1/api-keys/{id}"))
            }
            Op::ListTiers => get("/v1/tiers".into()),
            Op::PutTier => put(
                "/v1/tiers/enterprise".into(),
                json!({"daily_limit": 1000, "monthly_limit": 100000, "price_monthly_usd": "99.99"}),
            ),
            Op::GetPrice => get("/v1/prices/m".into()),
            Op::PutPrice => put(
                "/v1/prices/m".into(),
                json!({"input_per_mtok_usd": "1", "output_per_mtok_usd": "2"}),
            ),
            Op::FaultInjection => put("/v1/cluster/faults".into(), json!({"isolate_from": [org]})),
            Op::AcceptInvitation | Op::DeclineInvitation => {
                let invitation = if is_ghost {
                    format!("inv_{}", uuid::Uuid::new_v4().simple())
                } else {
                    let user = self.fresh("invitee");
                    let r = self
                        .n
                        .post(
                            &format!("/v1/orgs/{org}/members/{user}"),
                            Some(&user_token(&t.owner)),
                            json!({}),
                        )
                        .await;
                    assert_eq!(r.status, 202, "setup invite: {}", r.json);
                    r.json["invitation_id"].as_str().expect("invitation").to_string()
                };
                let path = format!("/v1/invitations/{invitation}/accept");
                match op {
                    Op::AcceptInvitation => post(path, json!({})),
                    _ => delete(path),
                }
            }
            Op::ListInvitations => get("/v1/invitations".into()),
            Op::ListKeys => get("/v1/api-keys?limit=1000".into()),
            Op::RevokeOwnKey => {
                let id = if is_ghost {
                    format!("key_{}", uuid::Uuid::new_v4().simple())
                } else {
                    let body = json!({"name": "bound", "scopes": ["check"], "org_id": org, "user_id": member});
                    let r = self.admin("POST", "/v1/api-keys", Some(body)).await;
                    r.json["id"].as_str().expect("id").to_string()
                };
                delete(format!("/v1/api-keys/{id}"))
            }
            Op::SummaryOrg => get(format!(
                "/v1/usage/summary?org_id={org}&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"
            )),
            Op::SummaryUser => get(format!(
                "/v1/usage/summary?user_id={member}&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"
            )),
        }
    }

    /// Everything about `t` that a request could change, read as admin.
    async fn snapshot(&self, t: &Tenant) -> Value {
        let org = self.admin("GET", &format!("/v1/orgs/{}", t.org), None).await.json;
        let mut statuses = Vec::new();
        for user in [&t.owner, &t.member] {
            let mut status = self
                .admin("GET", &format!("/v1/status?user_id={user}"), None)
                .await
                .json;
            // A window nothing has counted in yet would reset 24 h from now:
            // that moves with the clock, not with anything a request did.
            if let Some(limits) = status["limits"].as_array_mut() {
                for limit in limits.iter_mut().filter(|l| l["used"] == 0) {
                    limit["resets_at"] = Value::Null;
                }
            }
            statuses.push(status);
        }
        let mut key = self
            .admin("GET", &format!("/v1/api-keys/{}", t.key_id), None)
            .await
            .json;
        key["last_used_at"] = Value::Null;
        let summary = self
            .admin(
                "GET",
                &format!(
                    "/v1/usage/summary?org_id={}&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
                    t.org
                ),
                None,
            )
            .await
            .json;
        json!({"org": org, "statuses": statuses, "key": key, "summary": summary})
    }
}

async fn setup(db: &TestDb) -> World {
    let n = TestNode::start_with_jwt(db).await;
    let r = n
        .put(
            "/v1/prices/m",
            json!({"input_per_mtok_usd": "1", "output_per_mtok_usd": "2"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let mut tenants = Vec::new();
    for name in ["a", "b"] {
        let owner = format!("{name}-owner");
        let member = format!("{name}-member");
        let r = n
            .post("/v1/orgs", Some(&user_token(&owner)), json!({"name": name}))
            .await;
        assert_eq!(r.status, 201, "{}", r.json);
        let org = r.json["id"].as_str().expect("id").to_string();
        let r = n
            .put(&format!("/v1/orgs/{org}"), json!({"subscription_tier": "enterprise"}))
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        // The owner invites; the member joins by accepting.
        let r = n
            .post(
                &format!("/v1/orgs/{org}/members/{member}"),
                Some(&user_token(&owner)),
                json!({}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", r.json);
        let invitation = r.json["invitation_id"].as_str().expect("invitation");
        let r = n
            .post(
                &format!("/v1/invitations/{invitation}/accept"),
                Some(&user_token(&member)),
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.json);
        let r = n
            .post(
                "/v1/api-keys",
                Some(ADMIN),
                json!({"name": "k", "scopes": ["service"], "org_id": org}),
            )
            .await;
        let key_id = r.json["id"].as_str().expect("id").to_string();
        tenants.push(Tenant {
            org,
            owner,
            member,
            key_id,
        });
    }
    let b = tenants.pop().expect("b");
    let a = tenants.pop().expect("a");
    let mut tokens = vec![(Cred::Admin, Some(ADMIN.to_string())), (Cred::Guest, None)];
    for (cred, body) in [
        (
            Cred::OrgAdminA,
            json!({"name": "oa", "scopes": ["org_admin"], "org_id": a.org}),
        ),
        (
            Cred::ServiceA,
            json!({"name": "sa", "scopes": ["service"], "org_id": a.org}),
        ),
        (
            Cred::UserAKey,
            json!({"name": "ua", "scopes": ["check"], "org_id": a.org, "user_id": a.member}),
        ),
    ] {
        let r = n.post("/v1/api-keys", Some(ADMIN), body).await;
        assert_eq!(r.status, 201, "{}", r.json);
        tokens.push((cred, Some(r.json["secret"].as_str().expect("secret").to_string())));
    }
    tokens.push((Cred::UserAJwt, Some(user_token(&a.member))));
    let ghost = Tenant {
        org: uuid::Uuid::new_v4().to_string(),
        owner: "ghost-owner".into(),
        member: "ghost-member".into(),
        key_id: "key_ghost".into(),
    };
    World {
        n,
        a,
        b,
        ghost,
        tokens,
        counter: Default::default(),
    }
}

fn is_refusal(r: &Reply) -> bool {
    matches!(r.status.as_u16(), 401 | 403 | 404)
}

async fn isolation_matrix(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else { return };
    let w = setup(&db).await;
    let (mut allowed, mut refused, mut leaks) = (0, 0, Vec::new());
    for op in OPS {
        for cred in CREDS {
            let token = w.token(cred);
            // Tenant A: the policy decides.
            let (method, path, body) = w.request(op, &w.a, false).await;
            let before = w.snapshot(&w.a).await;
            let r = w.n.call(&method, &path, token, body).await;
            if allowed_on_a(op, cred) {
                assert!(
                    r.status.is_success(),
                    "{op:?} by {cred:?} on A should succeed: {} {}",
                    r.status,
                    r.json
                );
                allowed += 1;
            } else {
                assert!(
                    is_refusal(&r),
                    "{op:?} by {cred:?} on A should be refused: {} {}",
                    r.status,
                    r.json
                );
                assert_eq!(w.snapshot(&w.a).await, before, "{op:?} by {cred:?} changed A");
                refused += 1;
            }
            if cred == Cred::Admin {
                continue;
            }
            if tenant_free(op) {
                let text = r.json.to_string();
                for b in [&w.b.org, &w.b.owner, &w.b.member, &w.b.key_id] {
                    if text.contains(b.as_str()) {
                        leaks.push(format!("{op:?} by {cred:?} mentions B's {b}: {text}"));
                    }
                }
                continue;
            }
            // Tenant B: always refused, exactly as for a tenant that does not exist.
            let (method, path, body) = w.request(op, &w.b, false).await;
            let before = w.snapshot(&w.b).await;
            let r = w.n.call(&method, &path, token, body).await;
            assert!(
                is_refusal(&r),
                "{op:?} by {cred:?} on B must be refused: {} {}",
                r.status,
                r.json
            );
            assert_eq!(w.snapshot(&w.b).await, before, "{op:?} by {cred:?} changed B");
            refused += 1;
            let (method, path, body) = w.request(op, &w.ghost, true).await;
            let ghost = w.n.call(&method, &path, token, body).await;
            if (ghost.status, &ghost.json["error"]) != (r.status, &r.json["error"]) {
                leaks.push(format!(
                    "{op:?} by {cred:?}: B answers {} {}, a missing tenant {} {}",
                    r.status, r.json["error"], ghost.status, ghost.json["error"]
                ));
            }
        }
    }
    assert!(leaks.is_empty(), "existence leaks:\n{}", leaks.join("\n"));
    // B's own credential still works after all that.
    let r = w.n.post("/v1/check", Some(ADMIN), json!({"user_id": w.b.member})).await;
    assert_eq!(r.status, 200);
    eprintln!("isolation matrix: {allowed} allowed, {refused} refused, 0 leaks");
    assert!(allowed > 30 && refused > 100);
    w.n.stop().await;
}
on_both_backends!(isolation_matrix);
