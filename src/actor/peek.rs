//! A read-only view of an entity that is not resident, without starting
//! its actor.
//!
//! `GET /v1/status` only reads. Starting an actor for it would let anyone
//! fill memory with actors by asking about made-up fingerprints, so a
//! non-resident entity is answered from the store (plus counter deltas not
//! yet flushed), exactly as its actor would start — an entity with no
//! stored state reads as its tier's defaults with nothing used. No holds
//! are seen: holds live only in resident actors, and an entity with holds
//! is never passivated.

use super::ActorDeps;
use super::load;
use super::messages::EntityView;
use crate::entity::EntityKey;
use crate::limits::calendar::{Period, now_ms};
use crate::store::StoreError;

/// The entity's state as the store (and pending deltas) say, now.
pub async fn peek(key: &EntityKey, deps: &ActorDeps) -> Result<EntityView, StoreError> {
    let now = now_ms();
    // Unlike an actor's start, this does not take the flusher's lock: a
    // flood of views must not queue behind (or hold up) counter flushes.
    // A view may therefore miss or double the counts of one flush in
    // flight; nothing is admitted on it, and a non-resident entity rarely
    // has pending deltas (it was flushed when it passivated).
    let pending = deps.deltas.pending(key);
    let record = deps.store.load_entity(key, Period::containing(now), now).await?;
    let tier = deps.catalog.tier_or_default(&load::tier_name(key, &record));
    let limits = load::restore(&record, &pending, now);
    Ok(EntityView {
        key: key.clone(),
        limits: limits.limit_views(&tier, now).collect(),
        budget: limits.budget_view(now),
        tier,
    })
}
