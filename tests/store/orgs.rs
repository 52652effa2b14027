//! Organisations and members on both backends, the org tier in
//! `load_entity`, and the 0002 migration applied to a database an older
//! release left behind.

use super::*;
use tollgate::store::testing::{fresh_postgres_at, fresh_sqlite_at, insert_legacy_usage, user_organization_id};
use tollgate::store::{
    CreateOrgOutcome, MemberOutcome, Membership, OrgRecord, OrgRole, OrgUpdate, SummaryFilter, SummaryGroup, SummaryRow,
};

both!(
    check_orgs_and_members,
    check_one_org_per_user_under_concurrency,
    check_load_entity_reads_org_tier,
);

const ORG_A: &str = "0b9c1a52-5a43-4c38-9d7e-2f1f7e1b6a01";
const ORG_B: &str = "0b9c1a52-5a43-4c38-9d7e-2f1f7e1b6a02";

fn org(id: &str, owner: &str, tier: &str) -> OrgRecord {
    OrgRecord {
        id: id.into(),
        name: format!("Org {id}"),
        billing_email: Some("billing@example.com".into()),
        tier: tier.into(),
        owner_user_id: owner.into(),
        created_at_ms: NOW + 123,
    }
}

fn member(org_id: &str, user_id: &str, role: OrgRole) -> Membership {
    Membership {
        org_id: org_id.into(),
        user_id: user_id.into(),
        role,
    }
}

async fn check_orgs_and_members(store: Store) {
    // An existing user keeps their own tier when they join.
    store.put_user("bob", "enterprise").await.unwrap();

    let a = org(ORG_A, "alice", "pro");
    assert_eq!(store.create_org(&a).await.unwrap(), CreateOrgOutcome::Created);
    assert_eq!(store.get_org(ORG_A).await.unwrap(), Some(a.clone()));
    assert_eq!(store.org_tier(ORG_A).await.unwrap().as_deref(), Some("pro"));
    assert_eq!(
        store.list_members(ORG_A).await.unwrap(),
        vec![member(ORG_A, "alice", OrgRole::Owner)]
    );
    // The owner got a users row (default tier) pointing at the organisation.
    assert_eq!(store.user_tier("alice").await.unwrap().as_deref(), Some("free"));
    assert_eq!(user_organization_id(&store, "alice").await.as_deref(), Some(ORG_A));

    // One organisation per user: a second one for the same owner, or the
    // same one retried, creates nothing.
    let in_a = CreateOrgOutcome::OwnerInAnotherOrg { org_id: ORG_A.into() };
    assert_eq!(store.create_org(&org(ORG_B, "alice", "free")).await.unwrap(), in_a);
    assert_eq!(store.create_org(&a).await.unwrap(), in_a);
    assert_eq!(store.get_org(ORG_B).await.unwrap(), None);
    assert_eq!(store.org_tier(ORG_B).await.unwrap(), None);

    // An unknown tier fails the whole transaction.
    assert!(store.create_org(&org(ORG_B, "carol", "no-such-tier")).await.is_err());
    assert_eq!(store.get_org(ORG_B).await.unwrap(), None);
    assert_eq!(store.user_tier("carol").await.unwrap(), None);

    let b = OrgRecord {
        billing_email: None,
        ..org(ORG_B, "carol", "free")
    };
    assert_eq!(store.create_org(&b).await.unwrap(), CreateOrgOutcome::Created);
    assert_eq!(store.get_org(ORG_B).await.unwrap(), Some(b));

    // Members: add, change role, refuse another organisation's member and
    // an unknown organisation.
    assert_eq!(
        store.put_member(ORG_A, "bob", OrgRole::Member).await.unwrap(),
        MemberOutcome::Added
    );
    assert_eq!(store.user_tier("bob").await.unwrap().as_deref(), Some("enterprise"));
    assert_eq!(user_organization_id(&store, "bob").await.as_deref(), Some(ORG_A));
    assert_eq!(
        store.put_member(ORG_A, "bob", OrgRole::Admin).await.unwrap(),
        MemberOutcome::RoleChanged
    );
    assert_eq!(
        store.put_member(ORG_B, "bob", OrgRole::Member).await.unwrap(),
        MemberOutcome::InAnotherOrg { org_id: ORG_A.into() }
    );
    assert_eq!(
        store.put_member("no-such-org", "dave", OrgRole::Member).await.unwrap(),
        MemberOutcome::NoSuchOrg
    );
    assert_eq!(store.user_tier("dave").await.unwrap(), None);
    assert_eq!(
        store.list_members(ORG_A).await.unwrap(),
        vec![
            member(ORG_A, "alice", OrgRole::Owner),
            member(ORG_A, "bob", OrgRole::Admin)
        ]
    );

    // Removal: only from the organisation the user is in.
    assert!(store.remove_member(ORG_B, "bob", 1).await.unwrap().is_none());
    assert!(store.remove_member(ORG_A, "nobody", 1).await.unwrap().is_none());
    assert!(store.remove_member(ORG_A, "bob", 1).await.unwrap().is_some());
    assert!(store.remove_member(ORG_A, "bob", 1).await.unwrap().is_none());
    assert_eq!(user_organization_id(&store, "bob").await, None);
    assert_eq!(store.user_tier("bob").await.unwrap().as_deref(), Some("enterprise"));
    assert_eq!(
        store.put_member(ORG_B, "bob", OrgRole::Member).await.unwrap(),
        MemberOutcome::Added
    );
    assert_eq!(user_organization_id(&store, "bob").await.as_deref(), Some(ORG_B));
    assert_eq!(
        store.load_memberships().await.unwrap(),
        vec![
            member(ORG_A, "alice", OrgRole::Owner),
            member(ORG_B, "bob", OrgRole::Member),
            member(ORG_B, "carol", OrgRole::Owner),
        ]
    );
    assert!(store.list_members("no-such-org").await.unwrap().is_empty());

    // Updates: each field alone, clearing the e-mail, and nothing at all.
    let update = OrgUpdate {
        name: Some("Renamed".into()),
        billing_email: Some(None),
        tier: Some("enterprise".into()),
    };
    assert!(store.update_org(ORG_A, &update).await.unwrap());
    let expected = OrgRecord {
        name: "Renamed".into(),
        billing_email: None,
        tier: "enterprise".into(),
        ..a.clone()
    };
    assert_eq!(store.get_org(ORG_A).await.unwrap(), Some(expected.clone()));
    let email = OrgUpdate {
        billing_email: Some(Some("new@example.com".into())),
        ..OrgUpdate::default()
    };
    assert!(store.update_org(ORG_A, &email).await.unwrap());
    assert!(store.update_org(ORG_A, &OrgUpdate::default()).await.unwrap());
    let expected = OrgRecord {
        billing_email: Some("new@example.com".into()),
        ..expected
    };
    assert_eq!(store.get_org(ORG_A).await.unwrap(), Some(expected.clone()));
    let bad_tier = OrgUpdate {
        tier: Some("no-such-tier".into()),
        ..OrgUpdate::default()
    };
    assert!(store.update_org(ORG_A, &bad_tier).await.is_err());
    assert_eq!(store.get_org(ORG_A).await.unwrap(), Some(expected));
    assert!(!store.update_org("no-such-org", &update).await.unwrap());

    // The owner can be removed (whether to allow it is the caller's call).
    assert!(store.remove_member(ORG_A, "alice", 1).await.unwrap().is_some());
    assert!(store.list_members(ORG_A).await.unwrap().is_empty());
    assert_eq!(user_organization_id(&store, "alice").await, None);
}

/// Writers on several connections at once (as several nodes might): a user
/// still ends up in exactly one organisation.
async fn check_one_org_per_user_under_concurrency(store: Store) {
    let ids: Vec<String> = (0..6).map(|_| Uuid::new_v4().to_string()).collect();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, record) = (store.clone(), org(id, "racer", "free"));
            tokio::spawn(async move { store.create_org(&record).await.unwrap() })
        })
        .collect();
    let mut created = Vec::new();
    let mut refused = Vec::new();
    for (id, task) in ids.iter().zip(tasks) {
        match task.await.unwrap() {
            CreateOrgOutcome::Created => created.push(id.clone()),
            CreateOrgOutcome::OwnerInAnotherOrg { org_id } => refused.push(org_id),
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(refused.iter().all(|org_id| *org_id == created[0]), "{refused:?}");
    assert_eq!(user_organization_id(&store, "racer").await, Some(created[0].clone()));

    // Every organisation but the winner's is absent; one user joins them
    // all at once and gets into exactly one.
    for (i, id) in ids.iter().filter(|id| **id != created[0]).enumerate() {
        assert_eq!(store.get_org(id).await.unwrap(), None);
        let owner = format!("owner-{i}");
        assert_eq!(
            store.create_org(&org(id, &owner, "free")).await.unwrap(),
            CreateOrgOutcome::Created
        );
    }
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let (store, id) = (store.clone(), id.clone());
            tokio::spawn(async move { store.put_member(&id, "joiner", OrgRole::Member).await.unwrap() })
        })
        .collect();
    let mut added = Vec::new();
    for (id, task) in ids.iter().zip(tasks) {
        match task.await.unwrap() {
            MemberOutcome::Added => added.push(id.clone()),
            MemberOutcome::InAnotherOrg { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(user_organization_id(&store, "joiner").await, Some(added[0].clone()));
    let joined: Vec<_> = store
        .load_memberships()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.user_id == "joiner")
        .collect();
    assert_eq!(joined, vec![member(&added[0], "joiner", OrgRole::Member)]);
}

async fn check_load_entity_reads_org_tier(store: Store) {
    let period = Period::containing(NOW);
    let key = EntityKey::org(ORG_A).unwrap();
    assert_eq!(store.load_entity(&key, period, NOW).await.unwrap().tier, None);

    store.put_user("alice", "pro").await.unwrap();
    store.create_org(&org(ORG_A, "alice", "enterprise")).await.unwrap();
    let record = store.load_entity(&key, period, NOW).await.unwrap();
    assert_eq!(record.tier.as_deref(), Some("enterprise"));
    // A member's user key follows the organisation's tier...
    let alice = store.load_entity(&user("alice"), period, NOW).await.unwrap();
    assert_eq!(alice.tier.as_deref(), Some("enterprise"));
    // ...and a user in no organisation reads their own.
    store.put_user("bob", "pro").await.unwrap();
    let bob = store.load_entity(&user("bob"), period, NOW).await.unwrap();
    assert_eq!(bob.tier.as_deref(), Some("pro"));
    // An org id that happens to be a user id does not borrow the user's tier.
    let not_an_org = store
        .load_entity(&EntityKey::org("alice").unwrap(), period, NOW)
        .await
        .unwrap();
    assert_eq!(not_an_org.tier, None);

    let update = OrgUpdate {
        tier: Some("free".into()),
        ..OrgUpdate::default()
    };
    store.update_org(ORG_A, &update).await.unwrap();
    let record = store.load_entity(&key, period, NOW).await.unwrap();
    assert_eq!(record.tier.as_deref(), Some("free"));
}

/// A database at 0001 with data in it takes 0002, keeps its data, and the
/// new tables work on it.
async fn check_identity_migration_on_old_database(store: Store) {
    let period = Period::containing(NOW);
    store.put_user("alice", "pro").await.unwrap();
    // As a 0001 release wrote it (today's ledger reads later columns).
    insert_legacy_usage(&store, "alice", "0.25", NOW).await;
    store.migrate().await.unwrap();

    assert_eq!(store.user_tier("alice").await.unwrap().as_deref(), Some("pro"));
    assert_eq!(store.entity_spend(&user("alice"), period).await.unwrap(), d("0.25"));
    assert_eq!(
        store.create_org(&org(ORG_A, "alice", "pro")).await.unwrap(),
        CreateOrgOutcome::Created
    );
    assert_eq!(store.user_tier("alice").await.unwrap().as_deref(), Some("pro"));
    let summary = store
        .usage_summary(
            &SummaryFilter {
                org_id: None,
                user_id: Some("alice".into()),
                from_ms: NOW,
                to_ms: NOW + 1,
            },
            SummaryGroup::User,
        )
        .await
        .unwrap();
    assert_eq!(
        summary,
        vec![SummaryRow {
            group: "alice".into(),
            events: 1,
            input_tokens: 1234,
            output_tokens: 567,
            cost_usd: d("0.25"),
        }]
    );
    // Migrating again changes nothing.
    store.migrate().await.unwrap();
}

mod check_identity_migration_on_old_database {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let (store, _dir) = fresh_sqlite_at(1).await;
        super::check_identity_migration_on_old_database(store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        if let Some(store) = fresh_postgres_at(1).await {
            super::check_identity_migration_on_old_database(store.clone()).await;
            drop_postgres(store).await;
        }
    }
}
