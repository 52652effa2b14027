//! Passivation: idle entities flush and stop; the resident count is
//! capped, least recently used first.
//!
//! The cap itself is enforced where an entity is added (a new entity
//! beyond it is refused, `RouteError::Full`). The sweeper keeps room below
//! it: whenever more than [`target`] entities are resident, the least
//! recently used beyond it passivate, so new entities are refused only
//! while nearly every resident one is in use or holds a reservation. A
//! refusal wakes the sweeper at once.

use super::LocalEntities;
use std::sync::Arc;
use std::time::Duration;

/// When entities leave memory.
#[derive(Debug, Clone, Copy)]
pub struct PassivationPolicy {
    /// An entity unused this long is passivated.
    pub idle_timeout: Duration,
    /// At most this many entities stay resident.
    pub max_entities: usize,
    /// How often the sweeper looks.
    pub sweep_every: Duration,
}

/// How many entities the sweeper leaves resident: a tenth below the cap,
/// so that new entities find room between sweeps.
pub fn target(max_entities: usize) -> usize {
    max_entities - max_entities / 10
}

/// Runs the sweeper until the task is aborted.
pub fn spawn_sweeper(local: Arc<LocalEntities>, policy: PassivationPolicy) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(policy.sweep_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = local.room_wanted() => {}
            }
            sweep(&local, policy).await;
            local.sweep_done();
        }
    })
}

/// One pass: passivates idle and over-cap entities. Returns how many stopped.
pub async fn sweep(local: &Arc<LocalEntities>, policy: PassivationPolicy) -> usize {
    // Walking a million slots is not work for an async worker.
    let walker = local.clone();
    let candidates = match tokio::task::spawn_blocking(move || {
        walker.passivation_candidates(policy.idle_timeout, target(policy.max_entities))
    })
    .await
    {
        Ok(candidates) => candidates,
        Err(_) => return 0,
    };
    // [idle, capacity]: whether each was idle decides the metric's cause.
    let mut stopped = [0u64; 2];
    for (key, slot) in candidates {
        let idle = local.unused_for(&slot) >= policy.idle_timeout;
        if local.passivate(&key, &slot).await {
            stopped[usize::from(!idle)] += 1;
        }
    }
    let total = stopped[0] + stopped[1];
    if total > 0 {
        for (cause, n) in ["idle", "capacity"].into_iter().zip(stopped) {
            if n > 0 {
                metrics::counter!("tollgate_entities_passivated_total", "cause" => cause).increment(n);
            }
        }
        tracing::debug!(stopped = total, resident = local.resident(), "passivated idle entities");
    }
    metrics::gauge!("tollgate_entities_resident").set(local.resident() as f64);
    total as usize
}
