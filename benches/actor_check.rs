//! In-process cost of one entity's check through its actor (no HTTP).
//!
//! DESIGN.md §7: "one entity's check through its actor (no HTTP): median
//! < 10 µs". A node's actor layer is started directly (`Node::start` on a
//! throw-away SQLite file, no listener) and `router.admit` is timed on warm
//! entities whose tier allows effectively unlimited checks, so every call is
//! an admitted check that counts one request (the counter delta is flushed
//! to SQLite in the background every 500 ms, as in production).
//!
//! Benchmarks (group `actor_check`):
//! - `one_warm_entity`: the same entity every time.
//! - `10k_warm_entities`: 10 000 distinct warm users, cycled in order.
//! - `*_from_task`: the same two, but the calls are made in a loop from a
//!   task spawned on a runtime worker, as an HTTP handler makes them.
//!
//! The plain variants' futures are driven by criterion's tokio executor
//! (`block_on` on the bench thread, so each call also wakes that thread) over
//! a multi-thread runtime with 2 workers, where the actors run. Run with `cargo bench --bench actor_check`; medians are printed after
//! criterion's own report.

use criterion::Criterion;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate::config::ServeConfig;
use tollgate::entity::EntityKey;
use tollgate::limits::entity::Ask;
use tollgate::limits::tier::Tier;
use tollgate::money::Usd;
use tollgate::node::Node;
use tollgate::router::EntityRouter;

const GROUP: &str = "actor_check";
const TIER: &str = "bench";
const MANY: usize = 10_000;

const ASK: Ask = Ask {
    requests: 1,
    estimate: None,
    hold: None,
};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("b.db").display());
    let node = runtime.block_on(setup(&url));
    let router = node.state().router.clone();

    let single = EntityKey::user("bench-user").expect("a valid user key");
    let many: Vec<EntityKey> = (0..MANY)
        .map(|i| EntityKey::user(&format!("bench-{i}")).expect("a valid user key"))
        .collect();

    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .sample_size(50)
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group(GROUP);
        group.bench_function("one_warm_entity", |b| {
            b.to_async(&runtime).iter(|| {
                let router = router.clone();
                let key = single.clone();
                async move { black_box(admit(&router, &key).await) }
            })
        });
        let mut next = 0usize;
        group.bench_function("10k_warm_entities", |b| {
            b.to_async(&runtime).iter(|| {
                let router = router.clone();
                let key = many[next % MANY].clone();
                next = next.wrapping_add(1);
                async move { black_box(admit(&router, &key).await) }
            })
        });
        // The same calls made from a task on a runtime worker, as an HTTP
        // handler makes them (no wake-up of the bench thread per call).
        group.bench_function("one_warm_entity_from_task", |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let router = router.clone();
                let key = single.clone();
                async move {
                    tokio::spawn(async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            black_box(admit(&router, &key).await);
                        }
                        start.elapsed()
                    })
                    .await
                    .expect("the timing task panicked")
                }
            })
        });
        let many_shared = Arc::new(many.clone());
        group.bench_function("10k_warm_entities_from_task", |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let router = router.clone();
                let keys = many_shared.clone();
                async move {
                    tokio::spawn(async move {
                        let start = Instant::now();
                        for i in 0..iters as usize {
                            black_box(admit(&router, &keys[i % MANY]).await);
                        }
                        start.elapsed()
                    })
                    .await
                    .expect("the timing task panicked")
                }
            })
        });
        group.finish();
    }
    criterion.final_summary();

    println!();
    println!("Medians (criterion median point estimate):");
    for name in [
        "one_warm_entity",
        "10k_warm_entities",
        "one_warm_entity_from_task",
        "10k_warm_entities_from_task",
    ] {
        match median_ns(name) {
            Some(ns) => println!("  {GROUP}/{name:<28} median {:>8.3} µs", ns / 1000.0),
            None => println!("  {GROUP}/{name:<28} median not available (test mode, or criterion output not found)"),
        }
    }
    println!("  target (DESIGN.md §7): median < 10 µs");

    let resident = node.entities().resident();
    runtime
        .block_on(node.shutdown())
        .expect("shutting the node down (final flush)");
    println!("  resident entities at the end: {resident}");
    drop(dir);
}

/// Starts the node's actor layer and warms the benched entities.
async fn setup(url: &str) -> Node {
    let node = Node::start(&ServeConfig::for_database(url))
        .await
        .expect("starting the node");
    let tier = Tier {
        name: TIER.into(),
        daily_limit: 1_000_000_000,
        monthly_limit: None,
        rpm: None,
        price_monthly_usd: Usd::ZERO,
    };
    let state = node.state();
    state.store.put_tier(&tier).await.expect("storing the bench tier");
    state.catalog.put_tier(tier);
    state
        .store
        .put_user("bench-user", TIER)
        .await
        .expect("assigning the bench tier");
    for i in 0..MANY {
        state
            .store
            .put_user(&format!("bench-{i}"), TIER)
            .await
            .expect("assigning the bench tier");
    }

    // Warm every entity (the first call loads it from the store) and prove
    // the tier is the unlimited one, so every timed call is an admission.
    let router = &state.router;
    let key = EntityKey::user("bench-user").expect("a valid user key");
    let reply = router.admit(&key, ASK).await.expect("warming bench-user");
    assert_eq!(reply.view.tier.name, TIER, "bench-user must be on the bench tier");
    admit(router, &key).await;
    for i in 0..MANY {
        let key = EntityKey::user(&format!("bench-{i}")).expect("a valid user key");
        let reply = router.admit(&key, ASK).await.expect("warming a bench user");
        assert_eq!(reply.view.tier.name, TIER, "bench users must be on the bench tier");
    }
    assert_eq!(node.entities().resident(), MANY + 1, "every bench entity is resident");
    node
}

/// One admitted check; panics if the entity refused or was unreachable.
async fn admit(router: &EntityRouter, key: &EntityKey) -> u64 {
    let reply = router.admit(key, ASK).await.expect("the actor answered");
    match reply.result {
        Ok(admitted) => admitted.requests,
        Err(refusal) => panic!("the bench tier refused a check: {refusal:?}"),
    }
}

/// The median from criterion's saved estimates, in nanoseconds.
fn median_ns(bench: &str) -> Option<f64> {
    let path = criterion_home()?
        .join(GROUP)
        .join(bench)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// Where criterion writes (its own order of preference, minus `cargo
/// metadata`: the bench runs from the package root).
fn criterion_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    Some(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join("criterion"),
    )
}
