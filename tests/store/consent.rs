//! Membership by consent in the store, on both backends: invitations are
//! answered once and only by their user, at most one of many concurrent
//! acceptances joins, and a removal undoes everything the organisation did.

use super::*;
use tollgate::store::{AcceptOutcome, ApiKeyRecord, InvitationRecord, KeyListing, OrgRecord, OrgRole};

both!(
    check_invitations_are_answered_once_by_their_user,
    check_concurrent_acceptances_join_one_org,
    check_removal_undoes_what_the_org_did,
);

const NOW: i64 = 1_795_838_400_000;
const WEEK: i64 = 7 * DAY_MS;

fn org(id: &str, owner: &str) -> OrgRecord {
    OrgRecord {
        id: id.into(),
        name: format!("Org {id}"),
        billing_email: None,
        tier: "free".into(),
        owner_user_id: owner.into(),
        created_at_ms: NOW,
    }
}

fn invitation(id: &str, org_id: &str, user_id: &str) -> InvitationRecord {
    InvitationRecord {
        id: id.into(),
        org_id: org_id.into(),
        user_id: user_id.into(),
        role: OrgRole::Member,
        invited_by: Some("user:owner".into()),
        created_at_ms: NOW,
        expires_at_ms: NOW + WEEK,
        answered_at_ms: None,
    }
}

fn key(id: &str, org_id: Option<&str>, user_id: Option<&str>) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        name: id.into(),
        scopes: vec!["check".into()],
        org_id: org_id.map(Into::into),
        user_id: user_id.map(Into::into),
        created_by: None,
        created_at_ms: NOW,
        revoked_at_ms: None,
        last_used_at_ms: None,
    }
}

fn hash(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn usd(s: &str) -> Usd {
    Usd::new(s.parse().unwrap()).unwrap()
}

async fn check_invitations_are_answered_once_by_their_user(store: Store) {
    let o = Uuid::new_v4().to_string();
    store.create_org(&org(&o, "owner")).await.unwrap();
    assert!(
        !store
            .create_invitation(&invitation("inv_x", "no-such-org", "u"))
            .await
            .unwrap()
    );
    assert!(store.create_invitation(&invitation("inv_1", &o, "u")).await.unwrap());
    assert_eq!(store.pending_invitations("u", NOW).await.unwrap().len(), 1);
    // Re-inviting replaces the open invitation rather than piling up.
    assert!(store.create_invitation(&invitation("inv_2", &o, "u")).await.unwrap());
    let pending = store.pending_invitations("u", NOW).await.unwrap();
    assert_eq!(pending, vec![invitation("inv_2", &o, "u")]);
    assert_eq!(
        store.accept_invitation("inv_1", "u", NOW).await.unwrap(),
        AcceptOutcome::NotFound
    );
    // Someone else, or too late: not found, and nothing changes.
    assert_eq!(
        store.accept_invitation("inv_2", "v", NOW).await.unwrap(),
        AcceptOutcome::NotFound
    );
    assert!(!store.decline_invitation("inv_2", "v", NOW).await.unwrap());
    assert_eq!(
        store.accept_invitation("inv_2", "u", NOW + WEEK).await.unwrap(),
        AcceptOutcome::NotFound
    );
    assert!(store.load_memberships().await.unwrap().iter().all(|m| m.user_id != "u"));
    // The user accepts, once.
    let joined = store.accept_invitation("inv_2", "u", NOW + 1).await.unwrap();
    let AcceptOutcome::Joined(m) = joined else {
        panic!("{joined:?}")
    };
    assert_eq!(
        (m.org_id.as_str(), m.user_id.as_str(), m.role),
        (o.as_str(), "u", OrgRole::Member)
    );
    assert_eq!(
        store.accept_invitation("inv_2", "u", NOW + 2).await.unwrap(),
        AcceptOutcome::NotFound
    );
    assert!(store.pending_invitations("u", NOW).await.unwrap().is_empty());
    // Declined is answered too.
    assert!(store.create_invitation(&invitation("inv_3", &o, "w")).await.unwrap());
    assert!(store.decline_invitation("inv_3", "w", NOW).await.unwrap());
    assert!(!store.decline_invitation("inv_3", "w", NOW).await.unwrap());
    assert_eq!(
        store.accept_invitation("inv_3", "w", NOW).await.unwrap(),
        AcceptOutcome::NotFound
    );
}

/// One user accepting invitations from several organisations at once (as
/// on several nodes) ends up in exactly one; the others wait, open.
async fn check_concurrent_acceptances_join_one_org(store: Store) {
    let orgs: Vec<String> = (0..6).map(|_| Uuid::new_v4().to_string()).collect();
    for (i, o) in orgs.iter().enumerate() {
        store.create_org(&org(o, &format!("owner-{i}"))).await.unwrap();
        let inv = invitation(&format!("inv_{i}"), o, "joiner");
        assert!(store.create_invitation(&inv).await.unwrap());
    }
    let tasks: Vec<_> = (0..orgs.len())
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .accept_invitation(&format!("inv_{i}"), "joiner", NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut joined = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            AcceptOutcome::Joined(m) => joined.push(m.org_id),
            AcceptOutcome::InAnotherOrg => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(joined.len(), 1, "{joined:?}");
    let memberships: Vec<_> = store
        .load_memberships()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.user_id == "joiner")
        .collect();
    assert_eq!(memberships.len(), 1);
    assert_eq!(memberships[0].org_id, joined[0]);
    assert_eq!(
        store.pending_invitations("joiner", NOW).await.unwrap().len(),
        orgs.len() - 1
    );
}

async fn check_removal_undoes_what_the_org_did(store: Store) {
    let (o, other) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    store.create_org(&org(&o, "owner")).await.unwrap();
    store.create_org(&org(&other, "other-owner")).await.unwrap();
    let user = EntityKey::user("m").unwrap();
    store.put_budget(&user, Some(usd("5"))).await.unwrap();
    assert!(
        !store.put_member_cap(&o, "m", Some(usd("1"))).await.unwrap(),
        "not a member yet"
    );
    assert!(store.create_invitation(&invitation("inv_m", &o, "m")).await.unwrap());
    assert!(matches!(
        store.accept_invitation("inv_m", "m", NOW).await.unwrap(),
        AcceptOutcome::Joined(_)
    ));
    assert!(
        !store.put_member_cap(&other, "m", Some(usd("1"))).await.unwrap(),
        "another org's member"
    );
    assert!(store.put_member_cap(&o, "m", Some(usd("0.5"))).await.unwrap());
    assert_eq!(
        store.user_budgets("m").await.unwrap(),
        (Some(usd("5")), Some(usd("0.5")))
    );
    let period = Period::containing(NOW);
    let loaded = store.load_entity(&user, period, NOW).await.unwrap();
    assert_eq!(loaded.budget_usd, Some(usd("0.5")), "the lower of own budget and cap");

    // Keys: two the org bound to m, m's personal one, one bound to the owner.
    let keys = [
        key("key_bound1", Some(&o), Some("m")),
        key("key_bound2", Some(&o), Some("m")),
        key("key_personal", None, Some("m")),
        key("key_owner", Some(&o), Some("owner")),
    ];
    for (i, k) in keys.iter().enumerate() {
        assert!(store.create_api_key(k, &hash(i as u8)).await.unwrap());
    }
    // A key bound to someone who is not a member is never stored.
    let stray = key("key_stray", Some(&other), Some("m"));
    assert!(!store.create_api_key(&stray, &hash(9)).await.unwrap());
    assert_eq!(store.get_api_key("key_stray").await.unwrap(), None);
    let mine = KeyListing::Reach {
        org_id: None,
        user_id: Some("m".into()),
    };
    let ids = |v: Vec<ApiKeyRecord>| v.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_api_keys(&mine, None, 10).await.unwrap()),
        vec!["key_bound1", "key_bound2", "key_personal"]
    );
    assert_eq!(
        ids(store.list_api_keys(&mine, Some("key_bound1"), 1).await.unwrap()),
        vec!["key_bound2"]
    );
    let removal = store
        .remove_member(&o, "m", NOW + 5)
        .await
        .unwrap()
        .expect("was a member");
    let mut revoked = removal.revoked_keys.clone();
    revoked.sort();
    assert_eq!(revoked, vec!["key_bound1", "key_bound2"]);
    let bound = store.get_api_key("key_bound1").await.unwrap().unwrap();
    assert_eq!(bound.revoked_at_ms, Some(NOW + 5));
    let live: HashSet<String> = store
        .load_api_keys(NOW)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k.id)
        .collect();
    assert_eq!(
        live,
        HashSet::from(["key_personal".to_string(), "key_owner".to_string()])
    );
    assert_eq!(
        ids(store.list_api_keys(&mine, None, 10).await.unwrap()),
        vec!["key_personal"]
    );
    // The cap is gone; the user's own budget is untouched.
    assert_eq!(store.user_budgets("m").await.unwrap(), (Some(usd("5")), None));
    let loaded = store.load_entity(&user, period, NOW).await.unwrap();
    assert_eq!(loaded.budget_usd, Some(usd("5")));
    assert!(store.remove_member(&o, "m", NOW).await.unwrap().is_none());
    // Nor can the organisation bind a new key to them afterwards.
    assert!(
        !store
            .create_api_key(&key("key_late", Some(&o), Some("m")), &hash(10))
            .await
            .unwrap()
    );
}
