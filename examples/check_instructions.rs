//! Runs warm in-process checks for the callgrind guard (`.ci/callgrind`):
//! the instruction count of one warm check through its entity actor is
//! deterministic where wall-clock time is not, so CI can hold it to a
//! baseline without flaking.
//!
//! `check_instructions <n>` starts a node's actor layer on a throw-away
//! SQLite file on a current-thread runtime (everything on one thread, so a
//! callgrind `--toggle-collect` on [`measured_checks`] sees the actor's work
//! too), warms one entity, then makes `n` admitted checks inside
//! `measured_checks`. Timers that would add noise (counter flush, alert
//! poll, passivation) are set far beyond the run.

use std::hint::black_box;
use tollgate::config::ServeConfig;
use tollgate::entity::EntityKey;
use tollgate::limits::entity::Ask;
use tollgate::limits::tier::Tier;
use tollgate::money::Usd;
use tollgate::router::EntityRouter;

const ASK: Ask = Ask {
    requests: 1,
    estimate: None,
    hold: None,
};

fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::args().nth(1).map_or(Ok(1000), |a| a.parse())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let mut config = ServeConfig::for_database(&format!("sqlite://{}", dir.path().join("c.db").display()));
    config.flush_interval_ms = 3_600_000;
    config.idle_timeout_s = 3_600;
    config.alerts.alert_poll_ms = 60_000;
    let node = runtime.block_on(tollgate::node::Node::start(&config))?;
    let router = node.state().router.clone();
    let key = EntityKey::user("callgrind")?;
    runtime.block_on(async {
        let tier = Tier {
            name: "unlimited".into(),
            daily_limit: 1_000_000_000,
            monthly_limit: None,
            rpm: None,
            price_monthly_usd: Usd::ZERO,
        };
        let state = node.state();
        state.store.put_tier(&tier).await?;
        state.catalog.put_tier(tier);
        state.store.put_user("callgrind", "unlimited").await?;
        // The first call loads the entity; a few more warm every path.
        for _ in 0..10 {
            router.admit(&key, ASK).await?;
        }
        anyhow::Ok(())
    })?;
    let admitted = measured_checks(&runtime, &router, &key, n);
    anyhow::ensure!(admitted == n, "only {admitted} of {n} checks were admitted");
    println!("{n} warm checks admitted");
    runtime.block_on(node.shutdown())?;
    Ok(())
}

/// The measured part: `n` warm checks of one entity.
#[inline(never)]
fn measured_checks(runtime: &tokio::runtime::Runtime, router: &EntityRouter, key: &EntityKey, n: u64) -> u64 {
    runtime.block_on(async {
        let mut admitted = 0;
        for _ in 0..n {
            if let Ok(reply) = router.admit(black_box(key), ASK).await {
                admitted += u64::from(reply.result.is_ok());
            }
        }
        admitted
    })
}
