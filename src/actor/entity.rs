//! The entity actor: a thin shell around [`EntityLimits`].

use super::ActorDeps;
use super::load;
use super::messages::{AdmitReply, EntityMsg, EntitySnapshot, EntityView, Settlement};
use crate::entity::EntityKey;
use crate::limits::calendar::{Period, now_ms};
use crate::limits::entity::EntityLimits;
use crate::limits::tier::Tier;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;

/// The actor's behaviour (stateless; state lives in [`EntityState`]).
pub struct EntityActor;

/// Start-up arguments.
pub struct EntityArgs {
    pub key: EntityKey,
    pub deps: ActorDeps,
}

/// Live state of one entity.
pub struct EntityState {
    key: EntityKey,
    tier_name: Arc<str>,
    /// Cached from the catalogue; re-read when `tier_version` moves.
    tier: Arc<Tier>,
    tier_version: u64,
    limits: EntityLimits,
    /// Ownership epoch in a cluster (0 on a single node): the counter
    /// deltas this actor adds are written only while it is current.
    epoch: u64,
    deps: ActorDeps,
}

impl EntityState {
    fn refresh_tier(&mut self) {
        let version = self.deps.catalog.tier_version();
        if version != self.tier_version {
            self.tier = self.deps.catalog.tier_or_default(&self.tier_name);
            self.tier_version = version;
        }
    }

    fn view(&self, now_ms: i64) -> EntityView {
        EntityView {
            key: self.key.clone(),
            tier: self.tier.clone(),
            limits: self.limits.limit_views(&self.tier, now_ms).collect(),
            budget: self.limits.budget_view(now_ms),
        }
    }

    fn settle(&mut self, settlement: Settlement) {
        if let Some(id) = &settlement.hold {
            self.limits.budget_mut().release(id);
        }
        if let Some((period, total)) = settlement.committed {
            self.limits.budget_mut().observe_committed(period, total);
        }
    }
}

impl Actor for EntityActor {
    type Msg = EntityMsg;
    type State = EntityState;
    type Arguments = EntityArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<EntityMsg>,
        args: EntityArgs,
    ) -> Result<EntityState, ActorProcessingErr> {
        let EntityArgs { key, deps } = args;
        let (snapshot, epoch) = match &deps.takeover {
            // The previous owner hands over first (writing its own deltas
            // under its epoch), then this node claims the next epoch.
            Some(takeover) => {
                let snapshot = takeover.previous_state(&key).await;
                let epoch = deps.store.claim_entity(&key, takeover.node_id()).await?;
                (snapshot, epoch)
            }
            None => (None, 0),
        };
        let now = now_ms();
        let (tier_name, limits): (Arc<str>, EntityLimits) = match snapshot {
            // Live state from the previous owner is newer than the store.
            Some(snapshot) => (snapshot.tier_name.into(), snapshot.limits),
            None => {
                // Hold the flush lock while reading so that no delta is in
                // flight between the accumulator and the store: each is
                // counted once. Waiting for the lock counts against the
                // store's deadline (a flush may be stuck on a dead database).
                let (record, pending) = deps
                    .store
                    .health()
                    .within(async {
                        let _guard = deps.flusher.read_guard().await;
                        let record = deps.store.load_entity(&key, Period::containing(now), now).await?;
                        Ok((record, deps.deltas.pending(&key)))
                    })
                    .await?;
                (
                    load::tier_name(&key, &record).into(),
                    load::restore(&record, &pending, now),
                )
            }
        };
        let tier_version = deps.catalog.tier_version();
        Ok(EntityState {
            tier: deps.catalog.tier_or_default(&tier_name),
            tier_name,
            tier_version,
            limits,
            epoch,
            key,
            deps,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<EntityMsg>,
        msg: EntityMsg,
        state: &mut EntityState,
    ) -> Result<(), ActorProcessingErr> {
        let now = now_ms();
        state.refresh_tier();
        // A reply port whose caller gave up returns an error on send; that
        // is the caller's business, never a reason to fail the actor.
        match msg {
            EntityMsg::Admit(ask, reply) => {
                let result = state.limits.admit(&state.tier, &ask, now);
                if let Ok(admitted) = &result {
                    state
                        .deps
                        .deltas
                        .add_admission(&state.key, admitted, admitted.requests as i64, state.epoch);
                }
                let _ = reply.send(AdmitReply {
                    result,
                    view: state.view(now),
                });
            }
            EntityMsg::Undo(admitted, reply) => {
                state.limits.undo(&state.tier, &admitted, now);
                state
                    .deps
                    .deltas
                    .add_admission(&state.key, &admitted, -(admitted.requests as i64), state.epoch);
                let _ = reply.send(state.view(now));
            }
            EntityMsg::View(reply) => {
                state.limits.budget_mut().advance(now);
                let _ = reply.send(state.view(now));
            }
            EntityMsg::Settle(settlement, reply) => {
                state.limits.budget_mut().advance(now);
                state.settle(settlement);
                let _ = reply.send(state.view(now));
            }
            EntityMsg::Release(id, reply) => {
                state.limits.budget_mut().advance(now);
                let _ = reply.send(state.limits.budget_mut().release(&id));
            }
            EntityMsg::SetTier(name, reply) => {
                state.tier_name = name;
                state.tier = state.deps.catalog.tier_or_default(&state.tier_name);
                let _ = reply.send(());
            }
            EntityMsg::SetBudget(limit, reply) => {
                state.limits.budget_mut().set_limit(limit);
                let _ = reply.send(());
            }
            EntityMsg::Passivate(reply) => {
                state.limits.budget_mut().advance(now);
                // Holds live only in memory: an entity holding a
                // reservation stays resident until it is settled or expires.
                let idle = !state.limits.budget().has_holds();
                let _ = reply.send(idle);
                if idle {
                    myself.stop(Some("passivated".into()));
                }
            }
            EntityMsg::Surrender(reply) => {
                state.limits.budget_mut().advance(now);
                let _ = reply.send(EntitySnapshot {
                    tier_name: state.tier_name.to_string(),
                    limits: state.limits.clone(),
                });
                myself.stop(Some("surrendered".into()));
            }
            EntityMsg::CrashForTest => panic!("entity {} was asked to crash", state.key),
        }
        Ok(())
    }
}
