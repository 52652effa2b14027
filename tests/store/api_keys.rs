//! API keys and their secrets on both backends: create, rotate, revoke,
//! load, and batched last-use updates.

use super::*;
use tollgate::store::{ApiKeyRecord, KeySecret};

both!(check_api_keys_rotate_and_revoke, check_touch_keeps_latest_use);

const ORG: &str = "0b9c1a52-5a43-4c38-9d7e-2f1f7e1b6a01";

fn hash(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

fn api_key(id: &str) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.into(),
        name: format!("key {id}"),
        scopes: vec!["check".into(), "usage:write".into()],
        org_id: Some(ORG.into()),
        user_id: None,
        created_by: Some("alice".into()),
        created_at_ms: NOW + 7,
        revoked_at_ms: None,
        last_used_at_ms: None,
    }
}

fn secret(n: u8, key_id: &str, expires_at_ms: Option<i64>) -> KeySecret {
    KeySecret {
        secret_hash: hash(n),
        key_id: key_id.into(),
        expires_at_ms,
    }
}

async fn check_api_keys_rotate_and_revoke(store: Store) {
    let k1 = api_key("k1");
    let k2 = ApiKeyRecord {
        scopes: Vec::new(),
        org_id: None,
        user_id: Some("bob".into()),
        created_by: None,
        ..api_key("k2")
    };
    store.create_api_key(&k1, &hash(1)).await.unwrap();
    store.create_api_key(&k2, &hash(2)).await.unwrap();
    assert_eq!(store.get_api_key("k1").await.unwrap(), Some(k1.clone()));
    assert_eq!(store.get_api_key("k2").await.unwrap(), Some(k2.clone()));
    assert_eq!(store.get_api_key("nope").await.unwrap(), None);
    assert_eq!(
        store.load_api_keys(NOW).await.unwrap(),
        vec![
            (k1.clone(), vec![secret(1, "k1", None)]),
            (k2.clone(), vec![secret(2, "k2", None)])
        ]
    );

    // Refused before reaching the database: plaintext secrets, scopes that
    // would not read back, and a secret already in use.
    assert!(
        store
            .create_api_key(&api_key("k3"), "tg_plaintext_secret")
            .await
            .is_err()
    );
    let bad_scopes = ApiKeyRecord {
        scopes: vec!["a,b".into()],
        ..api_key("k3")
    };
    assert!(store.create_api_key(&bad_scopes, &hash(3)).await.is_err());
    assert!(store.create_api_key(&api_key("k3"), &hash(1)).await.is_err());
    assert_eq!(store.get_api_key("k3").await.unwrap(), None);

    // Rotation: the old secret stays valid until its expiry, the new one
    // has none.
    let hour = 3_600_000;
    assert!(store.rotate_api_key("k1", &hash(11), NOW + hour).await.unwrap());
    assert_eq!(
        store.load_api_keys(NOW).await.unwrap()[0],
        (
            k1.clone(),
            vec![secret(1, "k1", Some(NOW + hour)), secret(11, "k1", None)]
        )
    );
    assert_eq!(
        store.load_api_keys(NOW + hour).await.unwrap()[0],
        (k1.clone(), vec![secret(11, "k1", None)])
    );
    // A second rotation never extends a secret already expiring sooner...
    assert!(store.rotate_api_key("k1", &hash(12), NOW + 2 * hour).await.unwrap());
    assert_eq!(
        store.load_api_keys(NOW).await.unwrap()[0].1,
        vec![
            secret(1, "k1", Some(NOW + hour)),
            secret(11, "k1", Some(NOW + 2 * hour)),
            secret(12, "k1", None)
        ]
    );
    // ...and brings forward those expiring later.
    assert!(store.rotate_api_key("k1", &hash(13), NOW + hour / 2).await.unwrap());
    assert_eq!(
        store.load_api_keys(NOW).await.unwrap()[0].1,
        vec![
            secret(1, "k1", Some(NOW + hour / 2)),
            secret(11, "k1", Some(NOW + hour / 2)),
            secret(12, "k1", Some(NOW + hour / 2)),
            secret(13, "k1", None)
        ]
    );
    assert!(!store.rotate_api_key("nope", &hash(14), NOW).await.unwrap());
    assert!(store.rotate_api_key("k1", "not-a-hash", NOW).await.is_err());

    // Revocation: gone from the directory and its secrets deleted; the row
    // stays, with the first revocation time.
    assert!(store.revoke_api_key("k1", NOW + 5).await.unwrap());
    assert!(!store.revoke_api_key("k1", NOW + 6).await.unwrap());
    assert!(!store.revoke_api_key("nope", NOW).await.unwrap());
    let revoked = ApiKeyRecord {
        revoked_at_ms: Some(NOW + 5),
        ..k1.clone()
    };
    assert_eq!(store.get_api_key("k1").await.unwrap(), Some(revoked));
    assert_eq!(
        store.load_api_keys(NOW).await.unwrap(),
        vec![(k2, vec![secret(2, "k2", None)])]
    );
    assert!(!store.rotate_api_key("k1", &hash(15), NOW + hour).await.unwrap());
    // Its secret rows are really gone (the hash is free again).
    store.create_api_key(&api_key("k4"), &hash(13)).await.unwrap();
}

async fn check_touch_keeps_latest_use(store: Store) {
    for id in ["k1", "k2", "k3"] {
        store
            .create_api_key(&api_key(id), &hash(id.as_bytes()[1]))
            .await
            .unwrap();
    }
    let used = |pairs: &[(&str, i64)]| pairs.iter().map(|(id, at)| (id.to_string(), *at)).collect::<Vec<_>>();
    let last_used =
        |store: Store, id: &'static str| async move { store.get_api_key(id).await.unwrap().unwrap().last_used_at_ms };

    store.touch_api_keys(&[]).await.unwrap();
    store
        .touch_api_keys(&used(&[
            ("k1", NOW + 100),
            ("k1", NOW + 300),
            ("k2", NOW + 200),
            ("ghost", NOW),
            ("k1", NOW + 250),
        ]))
        .await
        .unwrap();
    assert_eq!(last_used(store.clone(), "k1").await, Some(NOW + 300));
    assert_eq!(last_used(store.clone(), "k2").await, Some(NOW + 200));
    assert_eq!(last_used(store.clone(), "k3").await, None);
    assert_eq!(store.get_api_key("ghost").await.unwrap(), None);

    // Older uses never move it back; newer ones move it forward.
    store
        .touch_api_keys(&used(&[("k1", NOW + 250), ("k2", NOW + 201)]))
        .await
        .unwrap();
    assert_eq!(last_used(store.clone(), "k1").await, Some(NOW + 300));
    assert_eq!(last_used(store.clone(), "k2").await, Some(NOW + 201));

    // More keys than one SQLite statement takes.
    let many: Vec<String> = (0..1200).map(|i| format!("many-{i:04}")).collect();
    for (i, id) in many.iter().enumerate() {
        let key = ApiKeyRecord {
            id: id.clone(),
            ..api_key("x")
        };
        let secret = format!("{:064x}", 1_000_000 + i);
        store.create_api_key(&key, &secret).await.unwrap();
    }
    let uses: Vec<(String, i64)> = many
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), NOW + i as i64))
        .collect();
    store.touch_api_keys(&uses).await.unwrap();
    for (i, id) in many.iter().enumerate().step_by(97) {
        let key = store.get_api_key(id).await.unwrap().unwrap();
        assert_eq!(key.last_used_at_ms, Some(NOW + i as i64), "{id}");
    }
}
