//! Ownership epochs: a flush carrying a superseded epoch is refused.

use super::*;

both!(check_stale_owner_writes_are_fenced);

async fn check_stale_owner_writes_are_fenced(store: Store) {
    let key = user("fenced");
    let other = user("unclaimed");
    let day = NOW - 1_000;
    let delta = |entity: &EntityKey, count, epoch| CounterDelta {
        entity: entity.clone(),
        window: WindowKind::Day,
        window_start_ms: day,
        delta: count,
        epoch,
    };
    let first = store.claim_entity(&key, "node-a").await.unwrap();
    assert_eq!(first, 1);
    assert!(store.flush_counters(&[delta(&key, 3, first)]).await.unwrap().is_empty());
    assert_eq!(store.counter(&key, WindowKind::Day, day).await.unwrap(), 3);

    // Another node takes over: the old epoch is refused, the new accepted,
    // and unfenced deltas (a single node) are untouched by all of it.
    let second = store.claim_entity(&key, "node-b").await.unwrap();
    assert_eq!(second, 2);
    let refused = store
        .flush_counters(&[delta(&key, 5, first), delta(&other, 1, 0)])
        .await
        .unwrap();
    assert_eq!(refused, vec![key.clone()]);
    assert_eq!(store.counter(&key, WindowKind::Day, day).await.unwrap(), 3);
    assert_eq!(store.counter(&other, WindowKind::Day, day).await.unwrap(), 1);
    assert!(
        store
            .flush_counters(&[delta(&key, 2, second)])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.counter(&key, WindowKind::Day, day).await.unwrap(), 5);

    // An entity nobody claimed refuses any epoch.
    let refused = store.flush_counters(&[delta(&other, 1, 7)]).await.unwrap();
    assert_eq!(refused, vec![other.clone()]);
}
